"""Agreeing an action: linked to cases by their ids or by the references people name them by (each
reference one the service has seen a case opened with), and due on or after the day it is agreed. The
QA panel's quality ratings read as words, on the ICB's configurable scale."""

from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from events.governance import ActionAgreed
from services.governance import domain

TODAY = date(2026, 11, 26)
KNOWN = {"LDR-2026-00042": uuid4(), "LDR-2026-00057": uuid4()}


def agree(**changes: Any) -> ActionAgreed:
    terms: dict[str, Any] = {
        "action_id": uuid4(),
        "what": "Sepsis screening on every ward",
        "organisation": "North Bristol NHS Trust",
        "lead": "Director of Nursing",
        "due_on": TODAY,
        "case_ids": [],
        "case_references": [],
        "known_references": KNOWN,
        "themes": ["sepsis"],
        "today": TODAY,
    }
    [agreed] = domain.decide_agree_action(**(terms | changes))
    assert isinstance(agreed, ActionAgreed)
    return agreed


def refusals(**changes: Any) -> domain.Refused:
    with pytest.raises(domain.Refused) as refused:
        agree(**changes)
    assert refused.value.status == 422
    return refused.value


def test_a_due_date_in_the_past_is_refused_on_its_field_and_today_is_not_past() -> None:
    refused = refusals(due_on=date(2026, 11, 25))
    assert refused.code == "date_in_past"
    assert [(r.field, r.code) for r in refused.refusals] == [("due_on", "date_in_past")]
    assert "2026-11-25" in refused.refusals[0].message
    assert agree(due_on=TODAY).due_on == TODAY
    assert agree(due_on=date(2027, 3, 31)).agreed_on == TODAY


def test_case_references_link_the_cases_they_name_alongside_case_ids_once_each() -> None:
    by_id = uuid4()
    agreed = agree(
        case_ids=[by_id, KNOWN["LDR-2026-00057"]],
        case_references=["LDR-2026-00042", " ldr-2026-00057 ", "LDR-2026-00042"],
    )
    assert agreed.case_ids == [by_id, KNOWN["LDR-2026-00057"], KNOWN["LDR-2026-00042"]]


def test_an_unknown_or_malformed_reference_is_refused_naming_each_on_case_references() -> None:
    refused = refusals(case_references=["LDR-2026-00042", "LDR-2026-99999", "not a reference"])
    assert refused.code == "unknown_case_reference"
    assert [(r.field, r.code) for r in refused.refusals] == [
        ("case_references", "unknown_case_reference"),
        ("case_references", "unknown_case_reference"),
    ]
    assert refused.refusals[0].message == "no case LDR-2026-99999"
    assert refused.refusals[1].message.startswith("no case not a reference")
    assert "LDR-2026-00042" in refused.refusals[1].message  # what a reference looks like


def test_every_refused_field_is_named_at_once() -> None:
    refused = refusals(due_on=date(2026, 1, 1), case_references=["LDR-2025-00001"])
    assert [r.field for r in refused.refusals] == ["due_on", "case_references"]
    assert refused.code == "fields_refused"


def test_references_are_known_by_their_normal_form() -> None:
    assert domain.reference_key("  ldr-2026-00042 ") == "LDR-2026-00042"


def test_quality_ratings_read_poor_to_excellent_unless_the_icb_configures_its_own_words() -> None:
    assert domain.quality_rating_labels(None) == ("Poor", "Fair", "Good", "Very good", "Excellent")
    assert domain.quality_rating_labels("") == domain.quality_rating_labels(None)
    configured = domain.quality_rating_labels("Inadequate, Weak ,Adequate,Strong,Outstanding")
    assert configured == ("Inadequate", "Weak", "Adequate", "Strong", "Outstanding")
    assert len(configured) == domain.HIGHEST_QUALITY_RATING
    with pytest.raises(ValueError, match="five"):
        domain.quality_rating_labels("Bad,Good")
