"""The allocation service's command and consumed-event handlers on the in-memory event store: a case
queued, allocated, refused, returned to the queue by a conflict or a deactivation, restored on
reopening, ended, with no database, in milliseconds. The same handlers run on PostgreSQL behind the
API and the consumers in tests/integration/allocation.

What the handlers read of the service's own tables (a reviewer's caseload, who holds a case, a case
not yet opened, the case's data key) comes through services.allocation.tables.Tables; here from
MemoryTables, whose figures each test sets, as the projections would have kept them. The locks
PostgreSQL takes are the store's to test there."""

import asyncio
import os
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID, uuid4

import pytest

from events import Actor, EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseAwaitingAllocation,
    CaseReturnedToQueue,
    CaseReviewTypeChanged,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
    ReviewerDeactivated,
)
from events.governance import CaseClosed, CaseReopened
from events.notification import CaseEscalatedToFocused, CaseOpened
from events.review import ReviewCompleted
from events.sealing import Sealed
from infra.eventstore import ConcurrencyError, Context, Transaction
from infra.inbox import Unprocessable
from infra.memory_store import MemoryEventStore
from infra.sealing import seal, unseal
from services.allocation import consumers, domain, handlers
from tests.support.payloads import complete

pytestmark = pytest.mark.fast

LAC = Context(actor=Actor(kind="user", id="lac-1", role="lac"))
TODAY = date(2026, 3, 2)
NOTIFIED = date(2026, 2, 16)


@dataclass
class MemoryTables:
    """The service's tables as a test sets them (services.allocation.tables.Tables)."""

    caseloads: dict[UUID, int] = field(default_factory=dict)
    supported: dict[UUID, int] = field(default_factory=dict)
    held: dict[UUID, list[UUID]] = field(default_factory=dict)
    users: dict[str, UUID] = field(default_factory=dict)
    not_opened: dict[UUID, domain.NotOpenStatus] = field(default_factory=dict)
    keys: dict[UUID, bytes] = field(default_factory=dict)

    async def caseload(self, conn: Transaction, reviewer_id: UUID) -> int:
        return self.caseloads.get(reviewer_id, 0)

    async def supporting_others(self, conn: Transaction, senior_id: UUID, case_id: UUID) -> int:
        return self.supported.get(senior_id, 0)

    async def lock_reviewer(self, conn: Transaction, reviewer_id: UUID) -> None:
        pass

    async def held_by(self, conn: Transaction, reviewer_id: UUID) -> list[UUID]:
        return sorted(self.held.get(reviewer_id, []))

    async def reviewer_of(self, conn: Transaction, user_id: str) -> UUID | None:
        return self.users.get(user_id)

    async def not_open(self, conn: Transaction, case_id: UUID) -> domain.NotOpenStatus | None:
        return self.not_opened.get(case_id)

    async def sealer(self, conn: Transaction, case_id: UUID) -> domain.Sealer:
        key = self.keys.setdefault(case_id, os.urandom(32))
        return lambda text: seal(key, str(case_id), text.encode())

    def opened(self, case_id: UUID, sealed: Sealed) -> str:
        return unseal(self.keys[case_id], sealed).decode()


@dataclass
class World:
    store: MemoryEventStore
    tables: MemoryTables
    reviewer: UUID
    senior: UUID


def _opened(case_id: UUID) -> CaseOpened:
    data = complete(
        "notification.CaseOpened",
        {"case_id": str(case_id), "notified_on": NOTIFIED.isoformat(), "review_type": "initial"},
    )
    data["facts"]["organisations_involved"] = ["Southmead Hospital"]
    data["facts"]["place_of_death_organisation"] = None
    data["facts"]["notifier_organisation"] = "Pembroke Road Surgery"
    return CaseOpened.model_validate(data)


async def _queued(store: MemoryEventStore) -> UUID:
    """A case the notification service opened, queued as the consumer does: in its transaction."""
    case_id = uuid4()
    async with store.transaction() as tx:
        await handlers.queue(store, tx, _opened(case_id), NOTIFIED, LAC)
    return case_id


async def _trained(store: MemoryEventStore, user_id: str, senior: bool, capacity: int = 3) -> UUID:
    reviewer_id = await handlers.register_reviewer(
        store, LAC, user_id, user_id.title(), ["Sirona Care"], senior, capacity
    )
    await handlers.command_reviewer(store, reviewer_id, domain.RecordTraining(date(2026, 1, 12)), LAC)
    return reviewer_id


async def _world() -> World:
    store = MemoryEventStore("allocation")
    reviewer = await _trained(store, "rae", senior=False)
    senior = await _trained(store, "sam", senior=True)
    return World(store, MemoryTables(users={"rae": reviewer, "sam": senior}), reviewer, senior)


async def _allocate(w: World, case_id: UUID) -> list[EventPayload]:
    return await handlers.allocate(w.store, case_id, w.reviewer, w.senior, TODAY, LAC, tables=w.tables)


async def _payloads(store: MemoryEventStore, stream: str) -> list[EventPayload]:
    return [e.payload() for e in await store.read_stream(stream)]


async def test_an_opened_case_is_queued_once_with_its_deadline() -> None:
    store = MemoryEventStore("allocation")
    case_id = await _queued(store)
    async with store.transaction() as tx:  # told again
        assert await handlers.queue(store, tx, _opened(case_id), NOTIFIED, LAC) == []

    [waiting] = await _payloads(store, str(case_id))
    assert isinstance(waiting, CaseAwaitingAllocation)
    assert (waiting.case_id, waiting.notified_on) == (case_id, NOTIFIED)
    assert waiting.deadline == domain.review_deadline(NOTIFIED)


async def test_a_queued_case_is_allocated_to_a_trained_reviewer_and_senior_reviewer() -> None:
    w = await _world()
    case_id = await _queued(w.store)

    [allocated] = await _allocate(w, case_id)

    assert isinstance(allocated, ReviewerAllocated)
    assert (allocated.reviewer_id, allocated.reviewer_user_id) == (w.reviewer, "rae")
    assert (allocated.senior_reviewer_id, allocated.allocated_on) == (w.senior, TODAY)
    assert allocated.deadline == domain.review_deadline(NOTIFIED)
    assert (await _payloads(w.store, str(case_id)))[1:] == [allocated]
    [recorded] = (await w.store.read_stream(str(case_id)))[1:]
    assert recorded.case_id == case_id and recorded.actor == LAC.actor


async def test_a_reviewer_with_a_full_caseload_is_refused_and_nothing_is_written() -> None:
    w = await _world()
    case_id = await _queued(w.store)
    w.tables.caseloads[w.reviewer] = 3  # their capacity
    before = await w.store.last_sequence()

    with pytest.raises(domain.AllocationRefused) as refused:
        await _allocate(w, case_id)

    assert refused.value.code == "at_capacity"
    assert await w.store.last_sequence() == before


async def test_an_unknown_case_is_not_found_and_an_unopened_one_says_why() -> None:
    w = await _world()
    with pytest.raises(handlers.NotFound):
        await _allocate(w, uuid4())
    unopened = uuid4()
    w.tables.not_opened[unopened] = "eligibility_to_confirm"
    with pytest.raises(domain.CaseNotOpen) as not_open:
        await _allocate(w, unopened)
    assert not_open.value.code == "eligibility_to_confirm"
    with pytest.raises(handlers.NotFound):
        await handlers.allocate(
            w.store, await _queued(w.store), uuid4(), w.senior, TODAY, LAC, tables=w.tables
        )


async def test_two_allocations_of_one_case_at_once_one_wins() -> None:
    """Two LACs allocate the same case at once: both read it waiting, the first append lands, the
    second is refused by the store (ConcurrencyError) and writes nothing."""
    w = await _world()
    case_id = await _queued(w.store)

    results = await asyncio.gather(_allocate(w, case_id), _allocate(w, case_id), return_exceptions=True)

    assert sum(isinstance(r, list) for r in results) == 1
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    assert len(await w.store.read_stream(str(case_id))) == 2


async def test_a_conflict_declared_by_the_reviewer_returns_the_case_to_the_queue_sealed() -> None:
    w = await _world()
    case_id = await _queued(w.store)
    await _allocate(w, case_id)

    with pytest.raises(domain.NotAllocatedToCaller):  # not a reviewer at all
        await handlers.declare_conflict(w.store, case_id, "someone", "I know them", LAC, w.tables)
    with pytest.raises(domain.NotAllocatedToCaller):  # a reviewer, but not this case's
        await handlers.declare_conflict(w.store, case_id, "sam", "I know them", LAC, w.tables)
    await handlers.declare_conflict(w.store, case_id, "rae", "I know the family", LAC, w.tables)

    declared, returned = (await _payloads(w.store, str(case_id)))[2:]
    assert isinstance(declared, ConflictOfInterestDeclared) and isinstance(returned, CaseReturnedToQueue)
    assert declared.reviewer_id == returned.reviewer_id == w.reviewer
    assert w.tables.opened(case_id, declared.reason) == "I know the family"
    # Back in the queue: it can be allocated again (to another reviewer).
    other = await _trained(w.store, "ola", senior=False)
    [again] = await handlers.allocate(w.store, case_id, other, w.senior, TODAY, LAC, tables=w.tables)
    assert isinstance(again, ReviewerAllocated) and again.reviewer_id == other


async def test_deactivating_a_reviewer_returns_the_cases_they_hold_to_the_queue() -> None:
    w = await _world()
    held, other = await _queued(w.store), await _queued(w.store)
    await _allocate(w, held)
    w.tables.held[w.senior] = [held]

    returned = await handlers.deactivate(w.store, w.senior, "left the trust", LAC, w.tables)

    assert returned == [held]
    assert (await _payloads(w.store, handlers.reviewer_stream(w.senior)))[-1] == ReviewerDeactivated(
        reviewer_id=w.senior, reason="left the trust"
    )
    [back] = (await _payloads(w.store, str(held)))[2:]
    assert isinstance(back, CaseReturnedToQueue) and back.reviewer_id == w.reviewer
    assert "was deactivated (left the trust)" in w.tables.opened(held, back.reason)
    assert len(await w.store.read_stream(str(other))) == 1
    # Told again: already inactive, nothing more.
    assert await handlers.deactivate(w.store, w.senior, "again", LAC, w.tables) == []


async def _consume(w: World, source: str, event: EventPayload) -> None:
    """As the consumer applies an event of another service: dispatched through the table, in a
    transaction, with the context the event causes."""
    case_id = UUID(event.model_dump(mode="json")["case_id"])
    [envelope] = await MemoryEventStore(source).append(str(case_id), 0, [event], LAC, case_id=case_id)
    handler = consumers.handler_for(consumers.HANDLERS, event)
    assert handler is not None
    async with w.store.transaction() as tx:
        context = Context.caused_by(envelope, consumers.SYSTEM)
        await handler(consumers.Consumed(event, envelope, w.store, tx, context, lambda: TODAY, w.tables))


async def test_a_completed_review_ends_the_allocation_once() -> None:
    w = await _world()
    case_id = await _queued(w.store)
    await _allocate(w, case_id)

    await _consume(w, "review", ReviewCompleted(case_id=case_id, completed_on=TODAY))
    await _consume(w, "governance", CaseClosed(case_id=case_id, closed_on=TODAY))  # the same approval

    [ended] = (await _payloads(w.store, str(case_id)))[2:]
    assert ended == AllocationEnded(case_id=case_id, reviewer_id=w.reviewer, reason="review_completed")
    [recorded] = (await w.store.read_stream(str(case_id)))[2:]
    assert recorded.actor == consumers.SYSTEM


async def test_a_reopened_case_goes_back_to_its_reviewers_or_to_the_queue() -> None:
    w = await _world()
    restored_case, full_case = await _queued(w.store), await _queued(w.store)
    for case_id in (restored_case, full_case):
        await _allocate(w, case_id)
        await _consume(w, "governance", CaseClosed(case_id=case_id, closed_on=TODAY))

    await _consume(w, "governance", CaseReopened(case_id=restored_case, reason="new evidence"))
    w.tables.caseloads[w.reviewer] = 3
    await _consume(w, "governance", CaseReopened(case_id=full_case, reason="new evidence"))

    [restored] = (await _payloads(w.store, str(restored_case)))[3:]
    assert isinstance(restored, AllocationRestored) and restored.reviewer_id == w.reviewer
    assert w.tables.opened(restored_case, restored.reason) == "new evidence"
    [queued] = (await _payloads(w.store, str(full_case)))[3:]
    assert isinstance(queued, CaseReturnedToQueue)


async def test_an_escalation_makes_the_review_focused_and_an_unknown_case_is_unprocessable() -> None:
    w = await _world()
    case_id = await _queued(w.store)
    escalated = CaseEscalatedToFocused.model_validate(
        complete("notification.CaseEscalatedToFocused", {"case_id": str(case_id)})
    )

    await _consume(w, "notification", escalated)

    [changed] = (await _payloads(w.store, str(case_id)))[1:]
    assert isinstance(changed, CaseReviewTypeChanged) and changed.review_type == "focused"
    with pytest.raises(Unprocessable):
        await _consume(w, "review", ReviewCompleted(case_id=uuid4(), completed_on=TODAY))
