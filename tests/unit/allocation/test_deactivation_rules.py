"""A deactivated reviewer holds no case: the rule, case by case."""

from dataclasses import replace

import pytest

from events.allocation import CaseReturnedToQueue, ReviewerDeactivated
from services.allocation import domain
from tests.unit.allocation.test_allocation_rules import case, opened, reviewer, sealing

RAE, SAM = reviewer("Rae"), reviewer("Sam", senior=True)


def allocated() -> domain.CaseAllocation:
    return case(status="allocated", reviewer_id=RAE.reviewer_id, senior_reviewer_id=SAM.reviewer_id)


@pytest.mark.parametrize(
    ("who", "said"),
    [
        (RAE, "the reviewer Rae was deactivated (left)"),
        (SAM, "the senior reviewer Sam was deactivated (left)"),
    ],
)
def test_a_case_held_as_reviewer_or_as_senior_goes_back_to_the_queue_leaving_the_reviewers_caseload(
    who: domain.Reviewer, said: str
) -> None:
    held = allocated()
    [returned] = domain.decide_return_on_deactivation(held, who, "left", seal=sealing)
    assert isinstance(returned, CaseReturnedToQueue)
    assert (returned.case_id, returned.reviewer_id, opened(returned.reason)) == (
        held.case_id,
        RAE.reviewer_id,
        said,
    )
    after = domain.evolve_case(held, returned)
    assert after is not None and (after.status, after.reviewer_id, after.senior_reviewer_id) == (
        "waiting",
        None,
        None,
    )


@pytest.mark.parametrize("status", ["waiting", "ended"])
def test_a_case_not_allocated_now_is_not_theirs_to_hand_back(status: domain.CaseStatus) -> None:
    not_now = replace(allocated(), status=status)
    assert domain.decide_return_on_deactivation(not_now, RAE, "left", seal=sealing) == []


def test_someone_elses_case_is_untouched_and_deactivating_twice_records_it_once() -> None:
    assert domain.decide_return_on_deactivation(allocated(), reviewer("Tia"), "left", seal=sealing) == []
    assert domain.decide_deactivation(RAE, "left") == [
        ReviewerDeactivated(reviewer_id=RAE.reviewer_id, reason="left")
    ]
    gone = domain.evolve_reviewer(RAE, ReviewerDeactivated(reviewer_id=RAE.reviewer_id, reason="left"))
    assert gone is not None and domain.decide_deactivation(gone, "again") == []
