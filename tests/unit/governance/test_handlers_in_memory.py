"""The governance service's QA handlers on the in-memory event store: load, decide, append, with no
database. These handlers touch nothing but the event store, so they run in milliseconds here; the
same handlers run on PostgreSQL behind the API in tests/integration/governance.

(Handlers that also read or write the service's own tables, the actions read model or
observed_events, still need PostgreSQL: see the README's Tests section.)"""

import asyncio
from datetime import date
from uuid import UUID, uuid4

import pytest

from events import Actor
from events.governance import (
    CaseClosed,
    ReviewAddedToPanelAgenda,
    ReviewApprovedByQA,
    ReviewAwaitingQA,
    ReviewReturnedByQA,
)
from infra.aggregates import StreamNotFound
from infra.eventstore import ConcurrencyError, Context
from infra.memory_store import MemoryEventStore
from services.governance import domain, handlers

pytestmark = pytest.mark.fast

CTX = Context(actor=Actor(kind="user", id="chair", role="governance"))
SUBMITTED = date(2026, 3, 2)
PANEL_DAY = date(2026, 3, 16)


async def _awaiting_qa(store: MemoryEventStore) -> UUID:
    """A case whose review was submitted: as the review consumer records it, in a transaction."""
    case_id = uuid4()
    async with store.transaction() as tx:
        await handlers.on_submission(store, tx, case_id, SUBMITTED, CTX)
    return case_id


async def test_a_submitted_review_waits_for_a_panel_once() -> None:
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    async with store.transaction() as tx:
        await handlers.on_submission(store, tx, case_id, SUBMITTED, CTX)  # told again: nothing new

    [waiting] = await store.read_stream(str(case_id))
    assert waiting.payload() == ReviewAwaitingQA(case_id=case_id, submitted_on=SUBMITTED)
    assert waiting.case_id == case_id and waiting.actor == CTX.actor


async def test_a_review_goes_on_a_panel_agenda_and_is_approved_closing_the_case() -> None:
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    panel_id = await handlers.schedule_panel(store, PANEL_DAY, CTX)

    await handlers.add_to_agenda(store, case_id, panel_id, CTX)
    decided = await handlers.decide_qa(
        store,
        case_id,
        panel_id,
        lambda case: domain.decide_qa(case, panel_id, True, 4, ["communication"], None, PANEL_DAY),
        CTX,
    )

    assert decided == [
        ReviewApprovedByQA(case_id=case_id, panel_id=panel_id, quality_rating=4, themes=["communication"]),
        CaseClosed(case_id=case_id, closed_on=PANEL_DAY),
    ]
    assert [e.payload() for e in await store.read_stream(str(case_id))] == [
        ReviewAwaitingQA(case_id=case_id, submitted_on=SUBMITTED),
        ReviewAddedToPanelAgenda(case_id=case_id, panel_id=panel_id, held_on=PANEL_DAY),
        *decided,
    ]


async def test_a_panel_cannot_decide_before_it_meets_and_nothing_is_written() -> None:
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    panel_id = await handlers.schedule_panel(store, PANEL_DAY, CTX)
    await handlers.add_to_agenda(store, case_id, panel_id, CTX)
    before = await store.last_sequence()

    with pytest.raises(domain.ImpossibleDate):
        await handlers.decide_qa(
            store,
            case_id,
            panel_id,
            lambda case: domain.decide_qa(case, panel_id, False, None, [], "more", date(2026, 3, 15)),
            CTX,
        )
    assert await store.last_sequence() == before


async def test_a_review_on_another_panel_or_an_unknown_panel_is_refused() -> None:
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    panel_id = await handlers.schedule_panel(store, PANEL_DAY, CTX)
    other_panel = await handlers.schedule_panel(store, PANEL_DAY, CTX)
    await handlers.add_to_agenda(store, case_id, panel_id, CTX)

    with pytest.raises(StreamNotFound):
        await handlers.add_to_agenda(store, case_id, uuid4(), CTX)
    with pytest.raises(domain.NotAwaitingQA):
        await handlers.add_to_agenda(store, case_id, other_panel, CTX)
    with pytest.raises(domain.NotOnThisPanel):
        await handlers.decide_qa(
            store,
            case_id,
            other_panel,
            lambda case: domain.decide_qa(case, other_panel, False, None, [], "no", PANEL_DAY),
            CTX,
        )
    assert len(await store.read_stream(str(case_id))) == 2


async def test_a_returned_review_is_resubmitted_and_can_go_on_an_agenda_again() -> None:
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    panel_id = await handlers.schedule_panel(store, PANEL_DAY, CTX)
    await handlers.add_to_agenda(store, case_id, panel_id, CTX)
    await handlers.decide_qa(
        store,
        case_id,
        panel_id,
        lambda case: domain.decide_qa(case, panel_id, False, None, [], "add the timeline", PANEL_DAY),
        CTX,
    )
    with pytest.raises(domain.ReviewNotSubmitted):
        await handlers.add_to_agenda(store, case_id, panel_id, CTX)

    async with store.transaction() as tx:
        await handlers.on_submission(store, tx, case_id, date(2026, 4, 1), CTX)
    await handlers.add_to_agenda(store, case_id, panel_id, CTX)

    payloads = [e.payload() for e in await store.read_stream(str(case_id))]
    assert isinstance(payloads[2], ReviewReturnedByQA)
    assert payloads[3:] == [
        ReviewAwaitingQA(case_id=case_id, submitted_on=date(2026, 4, 1)),
        ReviewAddedToPanelAgenda(case_id=case_id, panel_id=panel_id, held_on=PANEL_DAY),
    ]


async def test_two_panels_adding_one_review_at_once_one_wins() -> None:
    """Two chairs at once: both read the review awaiting QA, the first append lands, the second is
    refused (the store's ConcurrencyError, for the API's retry) and writes nothing."""
    store = MemoryEventStore("governance")
    case_id = await _awaiting_qa(store)
    first = await handlers.schedule_panel(store, PANEL_DAY, CTX)
    second = await handlers.schedule_panel(store, PANEL_DAY, CTX)

    results = await asyncio.gather(
        handlers.add_to_agenda(store, case_id, first, CTX),
        handlers.add_to_agenda(store, case_id, second, CTX),
        return_exceptions=True,
    )

    assert sum(r is None for r in results) == 1
    assert sum(isinstance(r, ConcurrencyError) for r in results) == 1
    assert len(await store.read_stream(str(case_id))) == 2
