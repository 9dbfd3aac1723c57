"""Who reads and writes a review follows the allocation (the domain's rules, without I/O); the end of a
case's retention is recorded once and stops every write."""

from datetime import date

import pytest

from events.review import NoteAdded, ReviewRead
from services.review import domain
from tests.unit.review.test_review_rules import CASE, apply, sealed, started


def test_the_allocated_pair_and_the_lac_read_and_each_read_is_recorded() -> None:
    review = started()
    for who, role in (("rae", "reviewer"), ("sam", "senior_reviewer"), ("lac-1", "lac")):
        assert domain.decide_read(review, who, role) == [ReviewRead(case_id=CASE, reader=who, role=role)]
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_read(review, "kit", "reviewer")
    with pytest.raises(domain.ReviewNotSubmitted):
        domain.decide_read(review, "qa-1", "qa_panel")


@pytest.mark.parametrize(
    "reason", ["conflict_declared", "returned_to_queue", "review_completed", "case_closed"]
)
def test_each_end_of_the_allocation_ends_reads_and_writes_for_the_pair_once(reason: str) -> None:
    [ended] = domain.decide_access_end(started(), reason)  # type: ignore[arg-type]
    review = apply(started(), ended)
    assert domain.decide_access_end(review, "returned_to_queue") == []  # ended already: nothing more
    for who, role in (("rae", "reviewer"), ("sam", "senior_reviewer")):
        with pytest.raises(domain.NotTheAllocatedReviewer) as refused:
            domain.decide_read(review, who, role)
        assert "the allocation ended" in refused.value.detail
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_record(review, "rae", NoteAdded(case_id=CASE, text=sealed("x")))
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_pause(review, "rae", "police_investigation", date(2026, 3, 1))
    assert domain.decide_read(review, "lac-1", "lac")  # the LAC keeps reading


def test_only_a_new_allocation_gives_access_back() -> None:
    review = apply(started(), *domain.decide_access_end(started(), "case_closed"))
    [restored] = domain.decide_allocation(review, "rae", "sam", restored=True)
    assert restored.event_type == "review.ReviewerAccessRestored"
    back = apply(review, restored)
    assert domain.decide_read(back, "rae", "reviewer")
    assert domain.decide_record(back, "rae", NoteAdded(case_id=CASE, text=sealed("x")))
    assert domain.decide_allocation(back, "rae", "sam") == []  # the allocation in force, told again

    [handed] = domain.decide_allocation(review, "kit", "sam")
    assert handed.event_type == "review.ReviewHandedOver"
    moved = apply(review, handed)
    assert domain.decide_read(moved, "kit", "reviewer") and domain.decide_read(moved, "sam", "reviewer")
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_read(moved, "rae", "reviewer")


def test_the_end_of_retention_is_recorded_once_and_stops_every_write() -> None:
    [destroyed] = domain.decide_personal_data_destruction(started())
    review = apply(started(), destroyed)
    assert review.personal_data_destroyed
    assert domain.decide_personal_data_destruction(review) == []
    with pytest.raises(domain.PersonalDataWasDestroyed):
        domain.decide_record(review, "rae", NoteAdded(case_id=CASE, text=sealed("x")))
    with pytest.raises(domain.PersonalDataWasDestroyed):
        domain.decide_escalation_for_learning(review, "lac-1", "lac", sealed("x"))
