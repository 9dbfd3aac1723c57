"""The review service's consumed-event handlers (its dispatch table, HANDLERS) and the reviewer's
submission on the in-memory event store: access ending with the allocation, restored on reopening,
an escalation heard from the notification service, the QA panel's decision, with no database. The
same handlers run on PostgreSQL behind the consumers and the API in tests/integration/review.

(Handlers that seal with the case's key, a review returned for rework or a reopening, need the
service's key table: those run on PostgreSQL.)"""

import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from events import Actor, EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.governance import ReviewApprovedByQA
from events.notification import CaseEscalatedToFocused
from events.review import (
    ReviewCompleted,
    ReviewerAccessEnded,
    ReviewerAccessRestored,
    ReviewEscalatedToFocused,
    ReviewSubmittedForQA,
)
from events.sealing import Sealed
from infra.eventstore import Context
from infra.inbox import Unprocessable
from infra.keys import LocalKeyFile
from infra.memory_store import MemoryEventStore
from infra.sealing import DataKeys, seal
from services.review import consumers, domain, handlers

pytestmark = pytest.mark.fast

REVIEWER = Context(actor=Actor(kind="user", id="rae", role="reviewer"))
ALLOCATION = Context(actor=Actor(kind="system", id="allocation", role="system"))
TODAY = date(2026, 5, 1)
KEY = os.urandom(32)


def _seal(text: str) -> Sealed:
    """The reviewer's free text, sealed as the API seals it (here under a key of the test's own)."""
    return seal(KEY, "case", text.encode())


async def _record(store: MemoryEventStore, case_id: UUID, event: EventPayload) -> None:
    """One of the reviewer's records, as the API writes it."""
    await handlers.change_review(
        store, case_id, lambda r: domain.decide_record(r, "rae", event, TODAY), REVIEWER
    )


async def _started(store: MemoryEventStore) -> UUID:
    case_id = uuid4()
    allocated = ReviewerAllocated(
        case_id=case_id,
        reviewer_id=uuid4(),
        reviewer_user_id="rae",
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="sam",
        allocated_on=date(2026, 1, 20),
        notified_on=date(2026, 1, 5),
        deadline=date(2026, 7, 5),
        review_type="initial",
        focused_reasons=[],
    )
    async with store.transaction() as tx:
        await handlers.start_or_hand_over(store, tx, allocated, ALLOCATION)
    return case_id


async def _consume(store: MemoryEventStore, keys: DataKeys, event: EventPayload, case_id: UUID) -> None:
    """As the consumer applies an event: dispatched through the table, in the inbox's transaction."""
    [envelope] = await MemoryEventStore("elsewhere").append(
        str(case_id), 0, [event], ALLOCATION, case_id=case_id
    )
    handler = consumers.handler_for(event)
    assert handler is not None
    async with store.transaction() as tx:
        context = Context.caused_by(envelope, consumers.SYSTEM)
        await handler(consumers.Consumed(event, store, keys, tx, context, lambda: TODAY))


async def _after_start(store: MemoryEventStore, case_id: UUID) -> Sequence[EventPayload]:
    return [e.payload() for e in await store.read_stream(str(case_id))][1:]


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    """The service's data keys; none of these handlers seals, so none is ever made."""
    return DataKeys(LocalKeyFile(tmp_path / "keys"), "review")


async def test_a_conflict_ends_the_reviewers_access_once_and_a_restoring_gives_it_back(
    keys: DataKeys,
) -> None:
    store = MemoryEventStore("review")
    case_id = await _started(store)
    sealed = _seal("why")
    reviewer_id = uuid4()

    await _consume(
        store,
        keys,
        ConflictOfInterestDeclared(case_id=case_id, reviewer_id=reviewer_id, reason=sealed),
        case_id,
    )
    await _consume(
        store, keys, CaseReturnedToQueue(case_id=case_id, reviewer_id=reviewer_id, reason=sealed), case_id
    )

    [ended] = await _after_start(store, case_id)
    assert isinstance(ended, ReviewerAccessEnded)
    assert (ended.reviewer_user_id, ended.senior_reviewer_user_id) == ("rae", "sam")

    restored = AllocationRestored(
        case_id=case_id,
        reviewer_id=reviewer_id,
        reviewer_user_id="rae",
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="sam",
        restored_on=TODAY,
        reason=sealed,
    )
    await _consume(store, keys, restored, case_id)
    assert isinstance((await _after_start(store, case_id))[-1], ReviewerAccessRestored)


async def test_the_end_of_an_allocation_with_no_review_changes_nothing(keys: DataKeys) -> None:
    store = MemoryEventStore("review")
    case_id = uuid4()
    await _consume(
        store, keys, AllocationEnded(case_id=case_id, reviewer_id=None, reason="case_closed"), case_id
    )
    assert await store.last_sequence() == 0


async def test_an_escalation_from_the_notification_service_is_recorded_and_the_reviews_own_is_not(
    keys: DataKeys,
) -> None:
    store = MemoryEventStore("review")
    case_id = await _started(store)

    await _consume(
        store, keys, CaseEscalatedToFocused(case_id=case_id, reasons=["ethnicity"], source="review"), case_id
    )
    assert await _after_start(store, case_id) == []
    heard = CaseEscalatedToFocused(case_id=case_id, reasons=["ethnicity"], source="ethnicity_recorded")
    await _consume(store, keys, heard, case_id)
    await _consume(store, keys, heard, case_id)  # told again: known already

    [escalated] = await _after_start(store, case_id)
    assert isinstance(escalated, ReviewEscalatedToFocused) and escalated.reasons == ["ethnicity"]


async def test_a_review_is_submitted_once_complete_and_the_panels_approval_completes_it(
    keys: DataKeys,
) -> None:
    store = MemoryEventStore("review")
    case_id = await _started(store)
    approval = ReviewApprovedByQA(
        case_id=case_id, panel_id=uuid4(), quality_rating=4, themes=["communication"]
    )

    with pytest.raises(Unprocessable):  # not submitted: the panel cannot have decided on it
        await _consume(store, keys, approval, case_id)
    with pytest.raises(domain.ReviewIncomplete) as incomplete:
        await handlers.change_review(
            store, case_id, lambda r: domain.decide_submission(r, "rae", TODAY), REVIEWER
        )
    assert "pen_portrait" in incomplete.value.missing
    assert await _after_start(store, case_id) == []

    for command in (
        domain.RecordContact("family", "offered", date(2026, 2, 1)),
        domain.RecordContact("gp_records", "completed", date(2026, 2, 1)),
        domain.RecordContact("professional", "completed", date(2026, 2, 1), "nurse", "Sirona Care"),
    ):
        await _record(store, case_id, domain.contact_recorded(case_id, command))
    for record in (
        domain.pen_portrait_written(case_id, "Jo loved music", _seal),
        domain.care_judged(case_id, domain.JudgeCare("last admission", 2, "timely", "default-1"), _seal),
    ):
        await _record(store, case_id, record)
    with pytest.raises(domain.NotTheAllocatedReviewer):
        await handlers.change_review(
            store, case_id, lambda r: domain.decide_submission(r, "sam", TODAY), REVIEWER
        )

    submitted = await handlers.change_review(
        store, case_id, lambda r: domain.decide_submission(r, "rae", TODAY), REVIEWER
    )
    await _consume(store, keys, approval, case_id)

    assert submitted == [ReviewSubmittedForQA(case_id=case_id, submitted_on=TODAY)]
    assert (await _after_start(store, case_id))[-2:] == [
        *submitted,
        ReviewCompleted(case_id=case_id, completed_on=TODAY),
    ]
    with pytest.raises(Unprocessable):  # no review of the case here
        await _consume(store, keys, approval.model_copy(update={"case_id": uuid4()}), uuid4())
