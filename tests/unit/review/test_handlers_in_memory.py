"""The review service's allocation and change handlers on the in-memory event store: a review
started by an allocation, handed over by a reallocation, changed by a decision, with no database.
These handlers touch nothing but the event store; the same ones run on PostgreSQL behind the
consumers and the API in tests/integration/review.

(Handlers that seal or open free text, or destroy a case's key, also need the service's key table,
and the scheduler reads the reviews read model: those still need PostgreSQL.)"""

import asyncio
from datetime import date
from uuid import UUID, uuid4

import pytest

from events import Actor
from events.allocation import ReviewerAllocated
from events.review import (
    ReviewDeadlineApproaching,
    ReviewHandedOver,
    ReviewOverdue,
    ReviewPaused,
    ReviewStarted,
)
from infra.eventstore import Context
from infra.memory_store import MemoryEventStore
from services.review import domain, handlers

pytestmark = pytest.mark.fast

CTX = Context(actor=Actor(kind="system", id="allocation-consumer", role="system"))
NOTIFIED = date(2026, 1, 5)
DEADLINE = date(2026, 7, 5)


def allocated(case_id: UUID, reviewer: str, senior: str = "senior-1") -> ReviewerAllocated:
    return ReviewerAllocated(
        case_id=case_id,
        reviewer_id=uuid4(),
        reviewer_user_id=reviewer,
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id=senior,
        allocated_on=date(2026, 1, 20),
        notified_on=NOTIFIED,
        deadline=DEADLINE,
        review_type="initial",
        focused_reasons=[],
    )


async def _allocate(store: MemoryEventStore, event: ReviewerAllocated) -> None:
    """As the allocation consumer does: in its inbox's transaction."""
    async with store.transaction() as tx:
        await handlers.start_or_hand_over(store, tx, event, CTX)


async def test_an_allocation_starts_the_review_and_a_redelivery_changes_nothing() -> None:
    store = MemoryEventStore("review")
    case_id = uuid4()
    await _allocate(store, allocated(case_id, "reviewer-1"))
    await _allocate(store, allocated(case_id, "reviewer-1"))

    [started] = await store.read_stream(str(case_id))
    assert started.payload() == ReviewStarted(
        case_id=case_id,
        review_type="initial",
        focused_reasons=[],
        reviewer_user_id="reviewer-1",
        senior_reviewer_user_id="senior-1",
        notified_on=NOTIFIED,
        deadline=DEADLINE,
    )
    assert started.case_id == case_id


async def test_a_reallocation_hands_the_review_over_with_its_history() -> None:
    store = MemoryEventStore("review")
    case_id = uuid4()
    await _allocate(store, allocated(case_id, "reviewer-1"))
    await handlers.change_review(
        store,
        case_id,
        lambda r: domain.decide_pause(r, "reviewer-1", "police_investigation", date(2026, 2, 1)),
        CTX,
    )
    await _allocate(store, allocated(case_id, "reviewer-2"))

    payloads = [e.payload() for e in await store.read_stream(str(case_id))]
    assert isinstance(payloads[1], ReviewPaused)
    assert payloads[2] == ReviewHandedOver(
        case_id=case_id,
        from_reviewer_user_id="reviewer-1",
        reviewer_user_id="reviewer-2",
        senior_reviewer_user_id="senior-1",
    )
    async with store.transaction() as tx:
        review, version = await handlers.load_review(store, tx, case_id)
    assert (review.reviewer_user_id, review.status, version) == ("reviewer-2", "paused", 3)


async def test_a_decision_refused_writes_nothing_and_an_unknown_review_is_not_found() -> None:
    store = MemoryEventStore("review")
    case_id = uuid4()
    await _allocate(store, allocated(case_id, "reviewer-1"))

    with pytest.raises(domain.NotTheAllocatedReviewer):
        await handlers.change_review(
            store,
            case_id,
            lambda r: domain.decide_pause(r, "someone-else", "police_investigation", date(2026, 2, 1)),
            CTX,
        )
    with pytest.raises(handlers.ReviewNotFound):
        await handlers.change_review(store, uuid4(), lambda r: [], CTX)
    assert await store.last_sequence() == 1


async def test_deadline_milestones_are_recorded_once_each_even_by_two_schedulers_at_once() -> None:
    """Two scheduler passes at once: the loser of the race is decided again on the new state
    (infra.aggregates.Repository.change) and finds nothing left to record."""
    store = MemoryEventStore("review")
    case_id = uuid4()
    await _allocate(store, allocated(case_id, "reviewer-1"))
    today = date(2026, 7, 6)

    recorded = await asyncio.gather(
        *(
            handlers.change_review(store, case_id, lambda r: domain.decide_deadline_events(r, today), CTX)
            for _ in range(2)
        )
    )

    assert sorted(len(r) for r in recorded) == [0, 3]
    assert [e.payload() for e in await store.read_stream(str(case_id), after_version=1)] == [
        ReviewDeadlineApproaching(case_id=case_id, months=4, deadline=DEADLINE),
        ReviewDeadlineApproaching(case_id=case_id, months=5, deadline=DEADLINE),
        ReviewOverdue(case_id=case_id, deadline=DEADLINE),
    ]
