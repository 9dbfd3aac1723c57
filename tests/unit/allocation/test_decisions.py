"""The allocation decisions that moved into the domain (issue 17, item 1): queueing an opened case,
the LAC's commands about a reviewer, the conflict rule as an argument, organisation matching, and the
consumers' dispatch table. Pure: no database, no broker."""

import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path
from uuid import uuid4

import pytest

from events.allocation import (
    CaseAwaitingAllocation,
    ReviewerConflictRecorded,
    ReviewerReactivated,
    ReviewerTrainingRecorded,
)
from events.notification import CaseOpened
from services.allocation import consumers, domain, settings
from tests.support.payloads import complete

ROOT = Path(__file__).resolve().parents[3]


def _opened(notified_on: date | None, organisations: list[str]) -> CaseOpened:
    data = complete(
        "notification.CaseOpened",
        {
            "notified_on": notified_on.isoformat() if notified_on else None,
            "review_type": "focused",
            "focused_reasons": ["ethnicity"],
        },
    )
    data["facts"]["organisations_involved"] = organisations
    data["facts"]["place_of_death_organisation"] = None
    data["facts"]["notifier_organisation"] = "Pembroke Road Surgery"
    return CaseOpened.model_validate(data)


def _reviewer(active: bool = True) -> domain.Reviewer:
    return domain.Reviewer(uuid4(), "rae-sub", "Rae", ("Sirona Care",), False, 3, active)


def test_an_opened_case_waits_for_allocation_with_its_six_month_deadline() -> None:
    opened = _opened(date(2026, 8, 31), ["Southmead Hospital", "southmead  HOSPITAL"])
    [waiting] = domain.decide_queue(None, opened, occurred_on=date(2026, 9, 15))
    assert waiting == CaseAwaitingAllocation(
        case_id=opened.case_id,
        notified_on=date(2026, 8, 31),
        deadline=date(2027, 2, 28),  # no 31 February: the month's last day
        review_type="focused",
        focused_reasons=["ethnicity"],
        organisations_involved=["Southmead Hospital", "Pembroke Road Surgery"],
    )


def test_an_opened_case_without_a_notification_day_counts_from_the_event_and_is_queued_once() -> None:
    opened = _opened(None, [])
    [waiting] = domain.decide_queue(None, opened, occurred_on=date(2026, 3, 10))
    assert isinstance(waiting, CaseAwaitingAllocation)
    assert (waiting.notified_on, waiting.deadline) == (date(2026, 3, 10), date(2026, 9, 10))
    queued = domain.evolve_case(None, waiting)
    assert domain.decide_queue(queued, opened, occurred_on=date(2026, 3, 11)) == []


def test_the_lacs_commands_about_a_reviewer_are_values_decided_by_the_domain() -> None:
    rae = _reviewer()
    trained = domain.decide_reviewer(rae, domain.RecordTraining(date(2026, 5, 1)))
    assert trained == [ReviewerTrainingRecorded(reviewer_id=rae.reviewer_id, completed_on=date(2026, 5, 1))]
    conflict = domain.decide_reviewer(rae, domain.RecordConflict("organisation", "Southmead Hospital"))
    assert conflict == [
        ReviewerConflictRecorded(reviewer_id=rae.reviewer_id, kind="organisation", name="Southmead Hospital")
    ]
    assert domain.decide_reviewer(rae, domain.Reactivate()) == []
    inactive = _reviewer(active=False)
    assert domain.decide_reviewer(inactive, domain.Reactivate()) == [
        ReviewerReactivated(reviewer_id=inactive.reviewer_id)
    ]


def test_training_cannot_be_recorded_as_completed_after_today() -> None:
    domain.check_training(domain.RecordTraining(date(2026, 11, 26)), today=date(2026, 11, 26))
    with pytest.raises(domain.TrainingInFuture) as refused:
        domain.check_training(domain.RecordTraining(date(2026, 11, 27)), today=date(2026, 11, 26))
    assert (refused.value.status, refused.value.code) == (422, "training_in_future")


def test_the_training_rule_is_named_with_the_validity_the_expiry_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert domain.rule_name("training_expired") == "training expired (valid for 12 months)"
    monkeypatch.setattr(domain, "TRAINING_VALID_MONTHS", 18)
    assert domain.rule_name("training_expired") == "training expired (valid for 18 months)"
    assert domain.rule_name("at_capacity") == "at capacity"


def test_the_conflict_rule_is_configuration_read_at_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDER_CONFLICT_RULE", raising=False)
    assert settings.conflict_rule() == domain.DEFAULT_CONFLICT_RULE == "employing_organisation"
    monkeypatch.setenv("LEDER_CONFLICT_RULE", "standing_only")
    assert settings.conflict_rule() == "standing_only"


def test_no_domain_module_reads_the_environment() -> None:
    found = subprocess.run(
        ["git", "grep", "-n", r"os.environ\|getenv", "--", "services/*/domain.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert found.stdout == ""


def test_organisations_match_whatever_their_case_accents_or_spacing() -> None:
    assert domain.organisation_key("  Hôpital   St Mary's ") == domain.organisation_key("hopital st mary's")
    assert domain.organisation_key("Southmead") != domain.organisation_key("Southmead Hospital")


def test_every_event_the_consumer_handles_is_in_its_dispatch_table_versions_included() -> None:
    class CaseOpenedLater(CaseOpened):  # a later version's class subclasses the one it replaces
        pass

    opened = _opened(None, [])
    later = CaseOpenedLater.model_validate(opened.model_dump())
    assert consumers.handler_for(consumers.HANDLERS, later) is consumers.HANDLERS[CaseOpened]
    assert consumers.handler_for(consumers.HANDLERS, waiting_event()) is None


def waiting_event() -> CaseAwaitingAllocation:
    [waiting] = domain.decide_queue(None, _opened(None, []), occurred_on=date(2026, 1, 1))
    assert isinstance(waiting, CaseAwaitingAllocation)
    return waiting


def test_only_an_ended_allocation_is_there_for_a_reopening_to_restore() -> None:
    waiting = domain.evolve_case(None, waiting_event())
    assert waiting is not None and not domain.allocation_to_restore(waiting)
    held = replace(waiting, status="allocated", reviewer_id=uuid4(), senior_reviewer_id=uuid4())
    assert not domain.allocation_to_restore(held)
    assert domain.allocation_to_restore(replace(held, status="ended"))
    assert not domain.allocation_to_restore(replace(waiting, status="ended"))  # never allocated
