"""The review service's use cases: load the review, decide, append."""

from collections.abc import Callable, Sequence
from datetime import date
from uuid import UUID

from events import EventPayload
from events.allocation import ReviewerAllocated
from events.review import ReviewHandedOver, ReviewStarted
from infra import aggregates
from infra.db import Connection
from infra.eventstore import Context, EventStore
from services.review import domain


class ReviewNotFound(Exception):
    pass


async def load_review(conn: Connection, case_id: UUID) -> tuple[domain.Review, int]:
    state, version = await aggregates.load(conn, str(case_id), domain.evolve)
    if state is None:
        raise ReviewNotFound(str(case_id))
    return state, version


Decision = Callable[[domain.Review], Sequence[EventPayload]]


async def change_review(
    store: EventStore, case_id: UUID, decide: Decision, context: Context, conn: Connection | None = None
) -> list[EventPayload]:
    try:
        return await aggregates.change(
            store, str(case_id), domain.evolve, decide, context, case_id=case_id, conn=conn
        )
    except aggregates.StreamNotFound as missing:
        raise ReviewNotFound(str(case_id)) from missing


async def start_or_hand_over(
    store: EventStore, conn: Connection, allocated: ReviewerAllocated, context: Context
) -> None:
    """An allocation starts the review of the case's current type; a reallocation hands it over."""
    try:
        review, version = await load_review(conn, allocated.case_id)
    except ReviewNotFound:
        started = ReviewStarted(
            case_id=allocated.case_id,
            review_type=allocated.review_type,
            focused_reasons=allocated.focused_reasons,
            reviewer_user_id=allocated.reviewer_user_id,
            senior_reviewer_user_id=allocated.senior_reviewer_user_id,
            notified_on=allocated.notified_on,
            deadline=allocated.deadline,
        )
        await store.append(
            str(allocated.case_id), 0, [started], context, case_id=allocated.case_id, conn=conn
        )
        return
    if review.reviewer_user_id == allocated.reviewer_user_id:
        return
    handed = ReviewHandedOver(
        case_id=allocated.case_id,
        from_reviewer_user_id=review.reviewer_user_id,
        reviewer_user_id=allocated.reviewer_user_id,
        senior_reviewer_user_id=allocated.senior_reviewer_user_id,
    )
    await store.append(
        str(allocated.case_id), version, [handed], context, case_id=allocated.case_id, conn=conn
    )


async def record_deadlines(store: EventStore, today: date, context: Context) -> int:
    """The scheduler's pass: every milestone due and not yet recorded, once each."""
    due = await store.pool.fetch(
        "SELECT case_id FROM reviews WHERE status <> 'completed' AND notified_on <= $1 ORDER BY case_id",
        today,
    )
    recorded = 0
    for row in due:
        events = await change_review(
            store, row["case_id"], lambda r: domain.decide_deadline_events(r, today), context
        )
        recorded += len(events)
    return recorded
