"""The governance service's use cases."""

from collections.abc import Callable, Sequence
from datetime import date
from uuid import UUID, uuid4

from events import EventPayload
from events.governance import CaseRead, QAPanelScheduled
from infra.aggregates import Repository
from infra.eventstore import ConcurrencyError, Context, EventLog, EventStore, Transaction
from services.governance import domain
from services.governance.tables import POSTGRES, Tables


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


# The service's aggregates; a missing one is infra.aggregates.StreamNotFound, which the API answers.


def panels(store: EventLog) -> Repository[QAPanelScheduled]:
    return Repository(store, _panel)


def cases(store: EventLog) -> Repository[domain.CaseQA]:
    """A case's QA, on the case's stream."""
    return Repository(store, domain.evolve_case)


def actions(store: EventLog) -> Repository[domain.Action]:
    return Repository(store, domain.evolve_action)


async def add_to_agenda(store: EventLog, case_id: UUID, panel_id: UUID, context: Context) -> None:
    async with store.transaction() as conn:
        panel, _ = await panels(store).load(panel_stream(panel_id), conn=conn)
        await cases(store).change(
            str(case_id), lambda c: domain.decide_add_to_agenda(c, panel), context, case_id=case_id, conn=conn
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
        await panels(store).load(panel_stream(panel_id), conn=conn)
        return await cases(store).change(str(case_id), decide, context, case_id=case_id, conn=conn)


async def case_known(store: EventStore, case_id: UUID) -> bool:
    """The service has heard of the case: an event of it observed from another service, or its own."""
    observed = await store.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM observed_events WHERE case_id = $1)", case_id
    )
    return bool(observed) or await store.has_case(case_id)


async def on_submission(
    store: EventLog, conn: Transaction, case_id: UUID, submitted_on: date, context: Context
) -> None:
    state, version = await cases(store).find(str(case_id), conn=conn)
    events = domain.decide_resubmission(state, case_id, submitted_on)
    await store.append(str(case_id), version, events, context, case_id=case_id, conn=conn)


async def agree_action(
    store: EventLog,
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
    tables: Tables = POSTGRES,
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
        known_references=await tables.cases_by_reference(store, case_references),
        themes=themes,
        today=today,
    )
    await store.append(action_stream(action_id), 0, events, context)
    return action_id


async def flag_overdue_actions(
    store: EventLog, today: date, context: Context, tables: Tables = POSTGRES
) -> int:
    """Once each, for actions past their due date and not completed; a restart repeats nothing."""
    repository, flagged = actions(store), 0
    for action_id in await tables.actions_due(store, today):
        events = await repository.change(
            action_stream(action_id), lambda a: domain.decide_overdue(a, today), context
        )
        flagged += len(events)
    return flagged
