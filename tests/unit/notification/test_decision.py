"""The notification decision table: one test per rule and per boundary."""

from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from events.notification import (
    CaseClosureRecorded,
    CaseOpened,
    CaseReopeningRecorded,
    DuplicateNotificationLinked,
    EligibilityToConfirm,
    SealedPersonalData,
)
from events.partner import parse_notification
from services.notification import domain
from tests.support.notifications import born_and_died, notification

SEALED = SealedPersonalData(key_id="k", nonce="bm9uY2U=", ciphertext="Y2lwaGVy")


def decide(
    body: dict[str, Any], match: domain.Match | None = None, reference: str | None = "LDR-2026-00001"
) -> domain.Intake:
    return domain.decide_intake(parse_notification(body), match, uuid4(), SEALED, reference=reference)


@pytest.mark.parametrize(
    ("born", "died", "age"),
    [
        (date(1990, 6, 15), date(2008, 6, 14), 17),  # 17 years 364 days
        (date(1990, 6, 15), date(2008, 6, 15), 18),  # the 18th birthday counts as 18
        (date(2000, 2, 29), date(2018, 2, 28), 17),  # a 29 February birthday falls on 1 March...
        (date(2000, 2, 29), date(2018, 3, 1), 18),  # ...in other years
        (date(2004, 2, 29), date(2024, 2, 29), 20),  # and on 29 February in leap years
        (date(1961, 5, 14), date(2026, 10, 3), 65),
    ],
)
def test_age_at_death_counts_completed_years(born: date, died: date, age: int) -> None:
    assert domain.age_at(born, died) == age


def test_a_person_17_years_364_days_old_is_referred_to_the_child_death_overview_panel() -> None:
    intake = decide(born_and_died(date(1990, 6, 15), date(2008, 6, 14)))
    assert (intake.outcome, intake.case_id) == ("referred_to_cdop", None)


def test_a_person_who_died_on_their_18th_birthday_is_a_leder_case() -> None:
    assert decide(born_and_died(date(1990, 6, 15), date(2008, 6, 15))).outcome == "case_opened"


def test_a_29_february_birthday_is_reached_on_1_march_in_a_common_year() -> None:
    assert decide(born_and_died(date(2000, 2, 29), date(2018, 2, 28))).outcome == "referred_to_cdop"
    assert decide(born_and_died(date(2000, 2, 29), date(2018, 3, 1))).outcome == "case_opened"


def test_a_child_is_referred_even_when_the_same_person_has_a_case() -> None:
    match = domain.Match(uuid4(), "nhs_number")
    assert decide(born_and_died(date(2010, 1, 1), date(2026, 1, 1)), match).outcome == "referred_to_cdop"


def test_neither_diagnosis_is_not_eligible_with_the_reason() -> None:
    intake = decide(notification(**{"person.learning_disability": False, "person.autism": False}))
    assert intake.outcome == "not_eligible"
    assert intake.events[0].reason == "neither a learning disability nor autism"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("learning_disability", "autism", "unknown"),
    [
        (None, False, ["learning_disability"]),
        (False, None, ["autism"]),
        (None, None, ["learning_disability", "autism"]),
    ],
)
def test_an_unknown_diagnosis_is_for_the_lac_to_confirm(
    learning_disability: bool | None, autism: bool | None, unknown: list[str]
) -> None:
    intake = decide(
        notification(**{"person.learning_disability": learning_disability, "person.autism": autism})
    )
    assert intake.outcome == "eligibility_to_confirm"
    [event] = intake.events
    assert isinstance(event, EligibilityToConfirm) and event.unknown == unknown


def test_one_diagnosis_true_is_enough_whatever_the_other() -> None:
    assert (
        decide(notification(**{"person.learning_disability": True, "person.autism": None})).outcome
        == "case_opened"
    )
    assert (
        decide(notification(**{"person.learning_disability": None, "person.autism": True})).outcome
        == "case_opened"
    )


def test_a_white_british_adult_with_a_learning_disability_and_nothing_else_gets_an_initial_review() -> None:
    intake = decide(notification())
    assert (intake.outcome, intake.review_type, intake.focused_reasons, intake.flags) == (
        "case_opened",
        "initial",
        [],
        [],
    )


def test_autistic_without_a_learning_disability_gets_a_focused_review() -> None:
    intake = decide(notification(**{"person.learning_disability": False, "person.autism": True}))
    assert (intake.review_type, intake.focused_reasons) == (
        "focused",
        ["autistic_without_learning_disability"],
    )


def test_autistic_with_an_unknown_learning_disability_is_not_autism_only() -> None:
    intake = decide(notification(**{"person.learning_disability": None, "person.autism": True}))
    assert intake.review_type == "initial"


@pytest.mark.parametrize(
    ("ethnicity", "review_type", "reasons", "flags"),
    [
        ("A", "initial", [], []),
        ("B", "focused", ["ethnicity"], []),
        ("N", "focused", ["ethnicity"], []),
        ("Z", "initial", [], ["ethnicity_not_stated"]),
        ("99", "initial", [], ["ethnicity_not_stated"]),
    ],
)
def test_ethnicity_other_than_white_british_gets_a_focused_review_and_unstated_is_flagged(
    ethnicity: str, review_type: str, reasons: list[str], flags: list[str]
) -> None:
    intake = decide(notification(**{"person.ethnicity": ethnicity}))
    assert (intake.review_type, intake.focused_reasons, intake.flags) == (review_type, reasons, flags)


@pytest.mark.parametrize(
    ("circumstance", "reason"),
    [
        ("detained_mental_health_act_within_5_years", "detained_within_5_years"),
        ("detained_criminal_justice_within_5_years", "detained_within_5_years"),
        ("family_requested_focused_review", "family_request"),
        ("concerns_about_care", "concerns_about_care"),
        ("likely_learning", "likely_learning"),
    ],
)
def test_each_circumstance_gets_a_focused_review_naming_it(circumstance: str, reason: str) -> None:
    intake = decide(notification(**{f"circumstances.{circumstance}": True}))
    assert (intake.review_type, intake.focused_reasons) == ("focused", [reason])


def test_a_case_records_every_focused_reason() -> None:
    intake = decide(
        notification(
            **{
                "person.learning_disability": False,
                "person.autism": True,
                "person.ethnicity": "H",
                "circumstances.detained_criminal_justice_within_5_years": True,
                "circumstances.family_requested_focused_review": True,
                "circumstances.concerns_about_care": True,
                "circumstances.likely_learning": True,
            }
        )
    )
    assert intake.focused_reasons == [
        "autistic_without_learning_disability",
        "ethnicity",
        "detained_within_5_years",
        "family_request",
        "concerns_about_care",
        "likely_learning",
    ]


def test_the_same_person_again_links_to_the_existing_case_instead_of_opening_another() -> None:
    existing = uuid4()
    intake = decide(notification(), domain.Match(existing, "name_and_dates"))
    assert (intake.outcome, intake.case_id, intake.stream_id) == ("duplicate_linked", existing, str(existing))
    [event] = intake.events
    assert isinstance(event, DuplicateNotificationLinked) and event.matched_on == "name_and_dates"


def opened(body: dict[str, Any] | None = None) -> domain.Case:
    intake = decide(body or notification())
    state = None
    for event in intake.events:
        state = domain.evolve(state, event)
    assert state is not None
    return state


def test_recording_a_non_white_british_ethnicity_later_escalates_the_case() -> None:
    case = opened(notification(**{"person.ethnicity": "Z"}))
    assert case.flags == ("ethnicity_not_stated",)
    events = domain.decide_ethnicity(case, "M")
    assert [e.event_type for e in events] == [
        "notification.EthnicityRecorded",
        "notification.CaseEscalatedToFocused",
    ]
    for event in events:
        case = domain.evolve(case, event)  # type: ignore[assignment]
    assert (case.review_type, case.focused_reasons, case.flags) == ("focused", ("ethnicity",), ())


def test_recording_white_british_later_clears_the_flag_without_escalating() -> None:
    case = opened(notification(**{"person.ethnicity": "99"}))
    [event] = domain.decide_ethnicity(case, "A")
    case = domain.evolve(case, event)  # type: ignore[assignment]
    assert (case.review_type, case.flags) == ("initial", ())


def test_the_lac_confirms_eligibility_and_the_case_opens_keeping_earlier_reasons() -> None:
    case = opened(
        notification(
            **{
                "person.learning_disability": None,
                "person.autism": None,
                "circumstances.family_requested_focused_review": True,
            }
        )
    )
    assert case.status == "eligibility_to_confirm"
    events = domain.decide_eligibility(case, True, learning_disability=False, autism=True, reason=None)
    opened_event = events[-1]
    assert isinstance(opened_event, CaseOpened)
    assert opened_event.focused_reasons == ["autistic_without_learning_disability", "family_request"]
    assert opened_event.facts.autism is True


def test_confirming_eligibility_without_a_diagnosis_is_refused() -> None:
    case = opened(notification(**{"person.learning_disability": None}))
    with pytest.raises(domain.NoDiagnosisConfirmed):
        domain.decide_eligibility(case, True, learning_disability=False, autism=False, reason=None)


def test_an_eligibility_decision_on_an_open_case_is_refused() -> None:
    with pytest.raises(domain.NotAwaitingEligibility):
        domain.decide_eligibility(opened(), False, None, None, "no")


def test_a_review_escalation_makes_the_case_focused_once() -> None:
    case = opened()
    [event] = domain.decide_review_escalation(case, ["lapse_in_care"])
    case = domain.evolve(case, event)  # type: ignore[assignment]
    assert (case.review_type, case.focused_reasons) == ("focused", ("lapse_in_care",))
    assert domain.decide_review_escalation(case, ["lapse_in_care"]) == []


def test_only_the_lac_or_the_allocated_reviewer_may_see_personal_details() -> None:
    case = opened()
    assert domain.decide_view(case, "lac-1", "lac", "allocation")
    with pytest.raises(domain.NotAllowedToSeePersonalDetails):
        domain.decide_view(case, "rev-1", "reviewer", "review")
    from events.notification import CaseAllocationRecorded

    case = domain.evolve(
        case,
        CaseAllocationRecorded(
            case_id=case.case_id, reviewer_user_id="rev-1", senior_reviewer_user_id="sen-1"
        ),
    )  # type: ignore[assignment]
    assert domain.decide_view(case, "rev-1", "reviewer", "contacting the family")
    assert domain.decide_view(case, "sen-1", "senior_reviewer", "supervision")


def test_destroyed_personal_data_cannot_be_seen() -> None:
    case = opened()
    [event] = domain.decide_destruction(case, 20)
    case = domain.evolve(case, event)  # type: ignore[assignment]
    with pytest.raises(domain.PersonalDataWasDestroyed):
        domain.decide_view(case, "lac-1", "lac", "x")
    assert domain.decide_destruction(case, 20) == []


def test_a_case_opened_carries_the_reference_the_handler_found_and_nothing_else_has_one() -> None:
    [opened_event] = decide(notification(), reference="LDR-2026-00042").events
    assert isinstance(opened_event, CaseOpened) and opened_event.reference == "LDR-2026-00042"
    [waiting] = decide(notification(**{"person.learning_disability": None})).events
    assert "reference" not in waiting.model_dump()
    case = domain.evolve(None, opened_event)
    assert case is not None and case.reference == "LDR-2026-00042"


def test_confirming_eligibility_opens_the_case_with_the_reference_given_and_rejecting_uses_none() -> None:
    case = opened(notification(**{"person.learning_disability": None}))
    events = domain.decide_eligibility(case, True, True, None, None, reference="LDR-2025-00007")
    assert isinstance(events[-1], CaseOpened) and events[-1].reference == "LDR-2025-00007"
    [rejected] = domain.decide_eligibility(case, False, None, None, "no", reference="LDR-2025-00007")
    assert "reference" not in rejected.model_dump()


@pytest.mark.parametrize(
    ("year", "number", "reference"),
    [(2026, 1, "LDR-2026-00001"), (2026, 42, "LDR-2026-00042"), (2031, 99_999, "LDR-2031-99999")],
)
def test_a_reference_is_the_year_and_a_five_digit_number(year: int, number: int, reference: str) -> None:
    assert domain.case_reference(year, number) == reference
    assert domain.reference_parts(reference) == (year, number)


def test_a_year_with_more_than_99999_cases_has_no_reference_left() -> None:
    with pytest.raises(domain.ReferencesExhausted):
        domain.case_reference(2026, 100_000)


def test_only_the_lac_or_someone_allocated_may_see_a_case() -> None:
    assert domain.may_see_case("lac", "lac-1", frozenset())
    assert domain.may_see_case("reviewer", "rev-1", frozenset({"rev-1", "sen-1"}))
    assert domain.may_see_case("senior_reviewer", "sen-1", frozenset({"rev-1", "sen-1"}))
    assert not domain.may_see_case("reviewer", "rev-2", frozenset({"rev-1", "sen-1"}))


def test_a_case_opened_carries_the_day_the_death_was_notified() -> None:
    intake = domain.decide_intake(
        parse_notification(notification()),
        None,
        uuid4(),
        SEALED,
        reference=None,
        notified_on=date(2026, 3, 2),
    )
    [event] = intake.events
    assert isinstance(event, CaseOpened) and event.notified_on == date(2026, 3, 2)


def test_confirming_eligibility_later_opens_the_case_from_the_day_it_was_notified_not_today() -> None:
    [waiting] = decide(notification(**{"person.learning_disability": None})).events
    case = domain.evolve(None, waiting)
    assert case is not None
    _, opened = domain.decide_eligibility(
        case, True, True, None, None, reference="LDR-2026-00003", notified_on=date(2026, 3, 2)
    )
    assert isinstance(opened, CaseOpened) and opened.notified_on == date(2026, 3, 2)


def test_a_case_the_qa_panel_closed_is_closed_here_and_reopening_opens_it_again() -> None:
    case = opened()
    [closed] = domain.decide_closure(case, date(2026, 11, 2))
    assert isinstance(closed, CaseClosureRecorded) and closed.closed_on == date(2026, 11, 2)
    shut = domain.evolve(case, closed)
    assert shut is not None and shut.status == "closed"
    assert domain.decide_closure(shut, date(2026, 11, 3)) == []  # told twice: once
    [reopened] = domain.decide_reopening(shut, "new evidence from the coroner")
    assert isinstance(reopened, CaseReopeningRecorded) and reopened.reason == "new evidence from the coroner"
    again = domain.evolve(shut, reopened)
    assert again is not None and again.status == "open"
    assert domain.decide_reopening(again, "twice") == []
