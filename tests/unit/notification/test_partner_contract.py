"""The partner notification v1 contract: what is refused, each error naming its field."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.partner import InvalidNotification, nhs_number_is_valid, parse_notification
from tests.support.notifications import DELETE, notification


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidNotification) as refused:
        parse_notification(body)
    return {e.field: e.type for e in refused.value.errors}


def test_a_valid_notification_parses_and_normalises() -> None:
    parsed = parse_notification(notification(**{"person.postcode": "bs105nb"}))
    assert parsed.person.nhs_number == "9434765919"
    assert parsed.person.postcode == "BS10 5NB"


@pytest.mark.parametrize("number", ["9434765919", "4010232137", "943 476 5919"])
def test_nhs_numbers_with_a_valid_check_digit_are_accepted(number: str) -> None:
    assert parse_notification(notification(**{"person.nhs_number": number})).person.nhs_number


@pytest.mark.parametrize("number", ["9434765918", "943476591", "94347659190", "ABCDEFGHIJ", "1000000010"])
def test_nhs_numbers_with_a_bad_check_digit_or_shape_are_refused(number: str) -> None:
    assert "person.nhs_number" in errors_of(notification(**{"person.nhs_number": number}))


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_exactly_one_check_digit_makes_nine_digits_valid_unless_the_check_is_ten(nine: str) -> None:
    valid = [d for d in "0123456789" if nhs_number_is_valid(nine + d)]
    assert len(valid) <= 1


def test_an_nhs_number_is_optional() -> None:
    assert parse_notification(notification(**{"person.nhs_number": None})).person.nhs_number is None


def test_a_date_of_death_in_the_future_is_refused() -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert errors_of(notification(**{"death.date_of_death": tomorrow})) == {
        "death.date_of_death": "date_in_future"
    }


def test_a_date_of_death_before_the_date_of_birth_is_refused() -> None:
    body = notification(**{"death.date_of_death": "1960-01-01"})
    assert errors_of(body) == {"death.date_of_death": "date_order"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("person.ethnicity", "X"),
        ("person.sex", "f"),
        ("death.place_of_death", "street"),
        ("notifier.role", "police"),
        ("person.learning_disability_level", "high"),
        ("person.accommodation_type", "x"),
    ],
)
def test_unknown_codes_are_refused(path: str, value: str) -> None:
    assert path in errors_of(notification(**{path: value}))


@pytest.mark.parametrize("postcode", ["BS10", "12345", "QQ1 1QQ", "BS10 5NBX", ""])
def test_impossible_postcodes_are_refused(postcode: str) -> None:
    assert "person.postcode" in errors_of(notification(**{"person.postcode": postcode}))


@pytest.mark.parametrize(
    "path",
    [
        "person.given_name",
        "person.family_name",
        "notifier.organisation",
        "death.cause_of_death",
        "circumstances.concerns_details",
        "next_of_kin.relationship",
    ],
)
def test_oversized_text_is_refused(path: str) -> None:
    assert path in errors_of(notification(**{path: "x" * 5000}))


def test_unknown_fields_are_refused_and_named() -> None:
    assert errors_of(notification(**{"person.shoe_size": 9})) == {"person.shoe_size": "extra_forbidden"}


@pytest.mark.parametrize(
    "path",
    [
        "notification_id",
        "person.given_name",
        "person.date_of_birth",
        "death.date_of_death",
        "circumstances.likely_learning",
        "person.learning_disability",
    ],
)
def test_missing_required_fields_are_named(path: str) -> None:
    assert errors_of(notification(**{path: DELETE})) == {path: "missing"}


def test_a_notifier_needs_an_email_or_a_phone() -> None:
    body = notification(**{"notifier.email": DELETE})
    assert "notifier" in errors_of(body)


def test_every_error_is_reported_at_once() -> None:
    body = notification(**{"person.ethnicity": "X", "person.postcode": "nope", "person.nhs_number": "1"})
    assert set(errors_of(body)) == {"person.ethnicity", "person.postcode", "person.nhs_number"}


def test_a_birth_date_is_a_date() -> None:
    assert "person.date_of_birth" in errors_of(
        notification(**{"person.date_of_birth": date.today().isoformat() + "x"})
    )
