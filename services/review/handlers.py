"""The review service's use cases: load the review, decide, append."""

from collections.abc import Callable, Sequence
from datetime import date
from uuid import UUID

from asyncpg import Pool

from events import EventPayload
from events.allocation import ReviewerAllocated
from infra.aggregates import Repository
from infra.db import Connection
from infra.eventstore import Context, EventLog, EventStore, Transaction
from infra.sealing import DataKeys
from services.review import domain, texts


class ReviewNotFound(Exception):
    pass


def _not_found(stream_id: str, _: Transaction) -> Exception:
    return ReviewNotFound(stream_id)


def reviews(store: EventLog) -> Repository[domain.Review]:
    """The case's review, on the case's stream."""
    return Repository(store, domain.evolve, _not_found)


# The review's load and change by case id, for callers outside the handlers (the API, the benches).


async def load_review(store: EventLog, conn: Transaction, case_id: UUID) -> tuple[domain.Review, int]:
    return await reviews(store).load(str(case_id), conn=conn)


Decision = Callable[[domain.Review], Sequence[EventPayload]]


async def change_review(
    store: EventLog, case_id: UUID, decide: Decision, context: Context, conn: Transaction | None = None
) -> list[EventPayload]:
    return await reviews(store).change(str(case_id), decide, context, case_id=case_id, conn=conn)


async def start_or_hand_over(
    store: EventLog, conn: Transaction, allocated: ReviewerAllocated, context: Context
) -> None:
    """An allocation starts, hands over or gives back the review (domain.decide_start_or_hand_over).
    In the caller's transaction (the consumer's inbox)."""
    review, version = await reviews(store).find(str(allocated.case_id), conn=conn)
    decided = domain.decide_start_or_hand_over(review, allocated)
    await store.append(
        str(allocated.case_id), version, decided, context, case_id=allocated.case_id, conn=conn
    )


def reads_stream(case_id: UUID) -> str:
    """Reads of a case's review go to a stream of their own: a read never conflicts with a write."""
    return f"reads-{case_id}"


async def record_reads(
    store: EventStore, case_id: UUID, reads: Sequence[EventPayload], context: Context
) -> None:
    """Append the reads at the reads stream's end, whatever it is. Reads of one case are appended one
    at a time (a transaction-scoped lock on the stream): many people reading the same case at once
    queue for a moment rather than retry against each other's versions until one gives up."""
    stream = reads_stream(case_id)
    async with store.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", stream)
        version = await store.stream_version(stream, conn=conn)
        await store.append(stream, version, reads, context, case_id=case_id, conn=conn)


async def destroy_personal_data(
    store: EventLog, keys: DataKeys, conn: Transaction, case_id: UUID, context: Context
) -> None:
    """The case's retention period ended: the review service destroys its own key for the case in the
    same transaction as it records so (review.ReviewPersonalDataDestroyed), and every sealed text of
    the review opens no more. A case that never had a review has nothing sealed: only its key (if it
    had one) goes."""
    try:
        review, version = await reviews(store).load(str(case_id), conn=conn)
    except ReviewNotFound:
        pass
    else:
        events = domain.decide_personal_data_destruction(review)
        await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)
    # Last, as DataKeys.destroy asks: should the key manager fail, nothing of this is committed.
    await keys.destroy(conn, texts.key_id(case_id))


async def record_deadlines(store: EventStore, today: date, context: Context) -> int:
    """The scheduler's pass: every milestone due and not yet recorded, once each."""
    repository = reviews(store)
    due = await store.pool.fetch(
        "SELECT case_id FROM reviews WHERE status <> 'completed' AND notified_on <= $1 ORDER BY case_id",
        today,
    )
    recorded = 0
    for row in due:
        case_id: UUID = row["case_id"]
        events = await repository.change(
            str(case_id), lambda r: domain.decide_deadline_events(r, today), context, case_id=case_id
        )
        recorded += len(events)
    return recorded


async def remember_references(conn: Connection, opened: Sequence[tuple[UUID, str | None]]) -> None:
    """Cases' references, as notification.CaseOpened gave them, in order (a redelivery without one
    keeps it), in one statement however many."""
    latest: dict[UUID, str | None] = {}
    for case_id, reference in opened:
        # A case told twice here ends as it would one after the other.
        latest[case_id] = reference if reference is not None else latest.get(case_id)
    await conn.execute(
        "INSERT INTO case_references (case_id, reference) SELECT * FROM unnest($1::uuid[], $2::text[])"
        " ON CONFLICT (case_id)"
        " DO UPDATE SET reference = COALESCE(EXCLUDED.reference, case_references.reference)",
        list(latest),
        list(latest.values()),
    )


async def remember_name(conn: Connection, user_id: str, name: str) -> None:
    """A reviewer's name, as allocation.ReviewerRegistered gave it: pages show names, not ids."""
    await conn.execute(
        "INSERT INTO reviewer_names (user_id, name) VALUES ($1, $2)"
        " ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name",
        user_id,
        name,
    )


async def names(conn: Connection, user_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT user_id, name FROM reviewer_names WHERE user_id = ANY($1::text[])", list(set(user_ids))
    )
    return {r["user_id"]: r["name"] for r in rows}


async def case_known(db: Connection | Pool, case_id: UUID) -> bool:
    """The service has heard of the case (notification.CaseOpened), with or without a review."""
    return bool(
        await db.fetchval("SELECT EXISTS (SELECT 1 FROM case_references WHERE case_id = $1)", case_id)
    )


async def reference(conn: Connection, case_id: UUID) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT reference FROM case_references WHERE case_id = $1", case_id
    )
    return found
