"""infra.projections' helpers for folds: a parser of a few fields of a model, as the model parses them,
and JSON text for jsonb columns."""

import json
from datetime import date

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.partner import NextOfKin
from infra.projections import fields_parser, json_text
from services.notification.personal import PersonalDetails


def _details(nhs_number: str | None, family_name: str) -> PersonalDetails:
    return PersonalDetails(
        nhs_number=nhs_number, given_name="Ann", family_name=family_name, date_of_birth=date(1961, 4, 2),
        postcode="BS1 4ND", notifier_name="Dr Lee", notifier_email=None, notifier_phone="0117 496 0000",
        next_of_kin=NextOfKin(name="Bo", relationship="son", email="bo@example.com", involve_family=True),
        cause_of_death=None, concerns_details="—",
    )  # fmt: skip


@pytest.mark.parametrize("details", [_details("9434765919", "Ünal-Smith"), _details(None, "  O'Brien ")])
def test_the_fields_parsed_are_the_models_and_the_others_are_left_out(details: PersonalDetails) -> None:
    parse = fields_parser(PersonalDetails, "nhs_number", "family_name", "date_of_birth")
    text = details.model_dump_json()
    whole = PersonalDetails.model_validate_json(text)
    assert parse(text) == {
        "nhs_number": whole.nhs_number,
        "family_name": whole.family_name,
        "date_of_birth": whole.date_of_birth,
    }
    assert parse(text.encode()) == parse(text)


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, str_strip_whitespace=True)

    count: int
    name: str = Field(alias="label")
    note: str | None = None


def test_the_models_config_and_aliases_apply_and_a_missing_field_with_a_default_is_not_required() -> None:
    parse = fields_parser(Strict, "count", "name", "note")
    assert parse('{"count": 2, "label": " x ", "other": [1]}') == {"count": 2, "name": "x", "note": None}
    with pytest.raises(ValidationError):
        parse('{"count": "2", "label": "x"}')  # strict, as the model


def test_json_text_is_the_same_value_as_json_dumps() -> None:
    value = [{"organisation": "Ünal & Co", "role": "gp", "notification_id": 'a"b'}, {"n": [1, None, True]}]
    assert json.loads(json_text(value)) == json.loads(json.dumps(value)) == value
