"""The governance service's action handlers and its consumed-event table on the in-memory event
store: an action agreed (linked to cases by id and by reference), refused, flagged overdue once each,
progressed and completed; a submitted review heard through the dispatch table. No database; the same
handlers run on PostgreSQL behind the API in tests/integration/governance.

What the handlers read of the service's tables (the cases seen opened, by reference; the actions read
model) comes through services.governance.tables.Tables, here MemoryTables: the references a test says
the service has seen, and the open actions read from the events themselves."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID, uuid4

import pytest

from events import Actor
from events.governance import (
    ActionAgreed,
    ActionCompleted,
    ActionOverdue,
    ActionProgressUpdated,
    ReviewAwaitingQA,
)
from events.review import ReviewSubmittedForQA
from infra.eventstore import Context, EventLog
from infra.memory_store import MemoryEventStore
from services.governance import consumers, domain, handlers

pytestmark = pytest.mark.fast

CHAIR = Context(actor=Actor(kind="user", id="chair", role="governance"))
SCHEDULER = Context(actor=Actor.system("scheduler"))
TODAY = date(2026, 3, 2)


@dataclass
class MemoryTables:
    """The service's tables (services.governance.tables.Tables) for the in-memory store."""

    opened: dict[str, UUID] = field(default_factory=dict)

    async def cases_by_reference(self, store: EventLog, references: Sequence[str]) -> dict[str, UUID]:
        wanted = {domain.reference_key(r) for r in references}
        return {r: case_id for r, case_id in self.opened.items() if r in wanted}

    async def actions_due(self, store: EventLog, today: date) -> list[UUID]:
        """As the actions projection keeps them: from every action's own events."""
        agreed = [e for e in await store.read_all() if e.event_type == "governance.ActionAgreed"]
        due = []
        for envelope in agreed:
            action, _ = await handlers.actions(store).load(envelope.stream_id)
            if not action.completed and not action.flagged_overdue and action.due_on < today:
                due.append(action.action_id)
        return due


async def _agree(
    store: MemoryEventStore,
    tables: MemoryTables,
    due_on: date,
    case_ids: Sequence[UUID] = (),
    case_references: Sequence[str] = (),
) -> UUID:
    return await handlers.agree_action(
        store,
        CHAIR,
        today=TODAY,
        what="Annual health checks offered to everyone over 14",
        organisation="Sirona Care",
        lead="Dr Okafor",
        due_on=due_on,
        case_ids=case_ids,
        case_references=case_references,
        tables=tables,
    )


async def test_an_action_is_agreed_linked_to_cases_by_id_and_by_reference_each_once() -> None:
    store, by_id, by_reference = MemoryEventStore("governance"), uuid4(), uuid4()
    tables = MemoryTables(opened={"LDR-2026-00042": by_reference})

    action_id = await _agree(
        store, tables, date(2026, 6, 1), case_ids=[by_id, by_reference], case_references=[" ldr-2026-00042 "]
    )

    [agreed] = [e.payload() for e in await store.read_stream(handlers.action_stream(action_id))]
    assert isinstance(agreed, ActionAgreed)
    assert (agreed.action_id, agreed.case_ids, agreed.agreed_on) == (action_id, [by_id, by_reference], TODAY)


async def test_an_unknown_reference_and_a_past_due_date_are_refused_together_writing_nothing() -> None:
    store = MemoryEventStore("governance")

    with pytest.raises(domain.Refused) as refused:
        await _agree(store, MemoryTables(), date(2026, 3, 1), case_references=["LDR-2026-00099"])

    assert refused.value.code == "fields_refused"
    assert await store.last_sequence() == 0


async def test_overdue_actions_are_flagged_once_and_a_completed_one_is_not() -> None:
    store, tables = MemoryEventStore("governance"), MemoryTables()
    late = await _agree(store, tables, TODAY)
    done = await _agree(store, tables, TODAY)
    await _agree(store, tables, date(2026, 6, 1))
    await handlers.actions(store).change(
        handlers.action_stream(done), lambda a: domain.decide_completion(a, "all offered", TODAY), CHAIR
    )
    later = date(2026, 3, 9)

    assert await handlers.flag_overdue_actions(store, later, SCHEDULER, tables) == 1
    assert await handlers.flag_overdue_actions(store, later, SCHEDULER, tables) == 0

    [_, overdue] = [e.payload() for e in await store.read_stream(handlers.action_stream(late))]
    assert overdue == ActionOverdue(action_id=late, due_on=TODAY)


async def test_a_completed_action_takes_no_more_progress() -> None:
    store, tables = MemoryEventStore("governance"), MemoryTables()
    action_id = await _agree(store, tables, date(2026, 6, 1))
    actions, stream = handlers.actions(store), handlers.action_stream(action_id)

    await actions.change(stream, lambda a: domain.decide_progress(a, "letters sent"), CHAIR)
    with pytest.raises(domain.ImpossibleDate):  # not after today
        await actions.change(
            stream, lambda a: domain.decide_completion(a, "done", TODAY, date(2026, 3, 3)), CHAIR
        )
    await actions.change(stream, lambda a: domain.decide_completion(a, "done", TODAY), CHAIR)
    with pytest.raises(domain.ActionAlreadyCompleted):
        await actions.change(stream, lambda a: domain.decide_progress(a, "more"), CHAIR)

    payloads = [e.payload() for e in await store.read_stream(stream)]
    assert [type(p) for p in payloads] == [ActionAgreed, ActionProgressUpdated, ActionCompleted]


async def test_a_submitted_review_heard_through_the_dispatch_table_waits_for_a_panel() -> None:
    store, case_id = MemoryEventStore("governance"), uuid4()
    submitted = ReviewSubmittedForQA(case_id=case_id, submitted_on=TODAY)
    [envelope] = await MemoryEventStore("review").append(str(case_id), 0, [submitted], CHAIR, case_id=case_id)
    handler = consumers.handler_for(submitted)
    assert handler is not None

    async with store.transaction() as tx:
        await handler(consumers.Consumed(submitted, store, tx, Context.caused_by(envelope, consumers.SYSTEM)))

    [waiting] = await store.read_stream(str(case_id))
    assert waiting.payload() == ReviewAwaitingQA(case_id=case_id, submitted_on=TODAY)
    assert waiting.actor == consumers.SYSTEM and waiting.causation_id == str(envelope.event_id)
