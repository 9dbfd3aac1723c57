"""The governance service's use cases."""

from collections.abc import Callable, Sequence
from datetime import date
from uuid import UUID, uuid4

from asyncpg import Pool

from events import EventPayload
from events.governance import CaseRead, QAPanelScheduled
from infra.aggregates import StreamNotFound, change, load
from infra.db import Connection
from infra.eventstore import ConcurrencyError, Context, EventLog, EventStore, Transaction
from services.governance import domain


def panel_stream(panel_id: UUID) -> str:
    return f"qa-panel-{panel_id}"


def action_stream(action_id: UUID) -> str:
    return f"action-{action_id}"


# Every service keeps a case's reads on a stream of this name, apart from the case's own.
READS_STREAM_PREFIX = "reads-"


def reads_stream(case_id: UUID) -> str:
    """A case's reads, apart from its own stream: a read never conflicts with a write to the case."""
    return f"{READS_STREAM_PREFIX}{case_id}"


READ_RETRIES = 5


async def record_reads(store: EventStore, reads: Sequence[CaseRead], context: Context) -> None:
    """Each read on its case's reads stream, all in one transaction: the content is shown only once
    every read of it is on record. Two people reading one case at once take the same version; the
    later is recorded again at the next."""
    for attempt in range(1, READ_RETRIES + 1):
        try:
            async with store.transaction() as conn:
                # Readers of one case queue on its reads stream (as the review service's do); taken in
                # case order, so that two actions sharing cases never wait on each other in a circle.
                for read in sorted(reads, key=lambda r: str(r.case_id)):
                    stream = reads_stream(read.case_id)
                    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", stream)
                    version = await store.stream_version(stream, conn=conn)
                    await store.append(stream, version, [read], context, case_id=read.case_id, conn=conn)
            return
        except ConcurrencyError:
            if attempt == READ_RETRIES:
                raise


async def schedule_panel(store: EventLog, held_on: date, context: Context) -> UUID:
    panel_id = uuid4()
    await store.append(
        panel_stream(panel_id), 0, [QAPanelScheduled(panel_id=panel_id, held_on=held_on)], context
    )
    return panel_id


def _panel(state: QAPanelScheduled | None, event: object) -> QAPanelScheduled | None:
    return event if isinstance(event, QAPanelScheduled) else state


async def add_to_agenda(store: EventLog, case_id: UUID, panel_id: UUID, context: Context) -> None:
    async with store.transaction() as conn:
        panel, _ = await load(store, panel_stream(panel_id), _panel, conn=conn)
        if panel is None:
            raise StreamNotFound(panel_stream(panel_id))
        await change(
            store,
            str(case_id),
            domain.evolve_case,
            lambda c: domain.decide_add_to_agenda(c, panel),
            context,
            case_id=case_id,
            conn=conn,
        )


async def decide_qa(
    store: EventLog,
    case_id: UUID,
    panel_id: UUID,
    decide: Callable[[domain.CaseQA], Sequence[EventPayload]],
    context: Context,
) -> list[EventPayload]:
    """The panel's decision on the case: the panel must exist (StreamNotFound otherwise, as the case)."""
    async with store.transaction() as conn:
        panel, _ = await load(store, panel_stream(panel_id), _panel, conn=conn)
        if panel is None:
            raise StreamNotFound(panel_stream(panel_id))
        return await change(
            store, str(case_id), domain.evolve_case, decide, context, case_id=case_id, conn=conn
        )


async def case_known(store: EventStore, case_id: UUID) -> bool:
    """The service has heard of the case: an event of it observed from another service, or its own."""
    observed = await store.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM observed_events WHERE case_id = $1)", case_id
    )
    return bool(observed) or await store.has_case(case_id)


async def on_submission(
    store: EventLog, conn: Transaction, case_id: UUID, submitted_on: date, context: Context
) -> None:
    state, version = await load(store, str(case_id), domain.evolve_case, conn=conn)
    events = domain.decide_resubmission(state, case_id, submitted_on)
    await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)


async def cases_by_reference(db: Connection | Pool, references: Sequence[str]) -> dict[str, UUID]:
    """The cases the service has seen opened (notification.CaseOpened) under these references, by
    `domain.reference_key`; a reference it has not seen is not in the answer."""
    wanted = sorted({domain.reference_key(r) for r in references})
    if not wanted:
        return {}
    rows = await db.fetch(
        "SELECT data->>'reference' AS reference, case_id FROM observed_events"
        " WHERE event_type = 'notification.CaseOpened' AND case_id IS NOT NULL"
        " AND data->>'reference' = ANY($1::text[]) ORDER BY occurred_at",
        wanted,
    )
    return {row["reference"]: row["case_id"] for row in rows}


async def agree_action(
    store: EventStore,
    context: Context,
    *,
    today: date,
    what: str,
    organisation: str,
    lead: str,
    due_on: date,
    case_ids: Sequence[UUID] = (),
    case_references: Sequence[str] = (),
    themes: Sequence[str] = (),
) -> UUID:
    """An action agreed today, linked to the cases given by id or by reference (domain.Refused for a
    reference the service has not seen a case opened with, or a due date in the past: nothing written)."""
    action_id = uuid4()
    events = domain.decide_agree_action(
        action_id=action_id,
        what=what,
        organisation=organisation,
        lead=lead,
        due_on=due_on,
        case_ids=case_ids,
        case_references=case_references,
        known_references=await cases_by_reference(store.pool, case_references),
        themes=themes,
        today=today,
    )
    await store.append(action_stream(action_id), 0, events, context)
    return action_id


async def flag_overdue_actions(store: EventStore, today: date, context: Context) -> int:
    """Once each, for actions past their due date and not completed; a restart repeats nothing."""
    due = await store.pool.fetch(
        "SELECT action_id FROM actions WHERE status = 'open' AND NOT flagged_overdue AND due_on < $1", today
    )
    flagged = 0
    for row in due:
        events = await change(
            store,
            action_stream(row["action_id"]),
            domain.evolve_action,
            lambda a: domain.decide_overdue(a, today),
            context,
        )
        flagged += len(events)
    return flagged
