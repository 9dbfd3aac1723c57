"""What the review service consumes: allocations (start or hand over a review, and the end of an
allocation, which ends the reviewer's access, and its restoring on reopening) and reviewers' names,
cases' references, escalations and the end of their retention (the review's key is destroyed) from the
notification service, and the QA panel's decisions and case reopenings from the governance service.

Each consumed event type has one handler in HANDLERS (the dispatch table): it loads, calls the
domain's decide function, appends. Every decision is in domain.py."""

from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from events import Actor, Envelope, EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
    ReviewerRegistered,
)
from events.governance import CaseReopened, ReviewApprovedByQA, ReviewReturnedByQA
from events.notification import CaseEscalatedToFocused, CaseOpened, PersonalDataDestroyed
from events.registry import payload_class
from events.topics import service_topic
from infra import dispatch
from infra.db import Connection
from infra.eventstore import Context, EventLog, Transaction
from infra.inbox import Delivery, InboxConsumer, Unprocessable, envelope_order, envelope_parser, payload_of
from infra.sealing import DataKeys, KeyDestroyed
from infra.service import Runtime
from services.review import domain, handlers, texts

SYSTEM = Actor.system("review")


@dataclass(frozen=True)
class Consumed:
    """What a handler of a consumed event is given: the event, the store, the service's data keys,
    the consumer's transaction, the context of what it causes, and the service's day."""

    event: Any
    store: EventLog
    keys: DataKeys
    conn: Transaction
    context: Context
    today: Callable[[], date]


Handler = Callable[[Consumed], Awaitable[None]]


async def _allocated(c: Consumed) -> None:
    event: ReviewerAllocated = c.event
    await handlers.start_or_hand_over(c.store, c.conn, event, c.context)
    # The case's key is made as its review starts, in this transaction: a request the review then
    # refuses (a write by someone it is not allocated to, say) never makes it, and so writes nothing.
    # (A key destroyed already stays destroyed.)
    with suppress(KeyDestroyed):
        await texts.sealer(c.keys, c.conn, event.case_id)


async def _allocation_ended(c: Consumed) -> None:
    ending: domain.AllocationEnding = c.event
    await _on_review(c, lambda r: domain.decide_allocation_ended(r, ending), missing_ok=True)


async def _restored(c: Consumed) -> None:
    restored: AllocationRestored = c.event
    await _on_review(c, lambda r: domain.decide_restoring(r, restored), missing_ok=True)


async def _opened(c: Consumed) -> None:
    await _opened_together([c])


async def _opened_together(opened: Sequence[Consumed]) -> None:
    """Cases opened one after the other in a batch: their references written in one statement."""
    await handlers.remember_references(opened[0].conn, [(c.event.case_id, c.event.reference) for c in opened])


async def _registered(c: Consumed) -> None:
    await handlers.remember_name(c.conn, c.event.user_id, c.event.name)


async def _escalated(c: Consumed) -> None:
    event: CaseEscalatedToFocused = c.event
    if event.source == "review":
        return  # the review's own escalation, told back: it has it already
    reasons = list(event.reasons)
    await _on_review(c, lambda r: domain.decide_focused_escalation(r, reasons), missing_ok=True)


async def _qa_outcome(c: Consumed) -> None:
    approved = isinstance(c.event, ReviewApprovedByQA)
    comments = None
    if isinstance(c.event, ReviewReturnedByQA):  # the reviewer reads them: sealed like the review
        comments = (await _sealer(c, c.event.case_id))(c.event.comments)
    today = c.today()
    await _on_review(c, lambda r: domain.decide_qa_outcome(r, approved, comments, today))


async def _reopened(c: Consumed) -> None:
    # The completed review goes back to its reviewer.
    why = (await _sealer(c, c.event.case_id))(c.event.reason)
    today = c.today()
    await _on_review(c, lambda r: domain.decide_reopen(r, why, today))


async def _destroyed(c: Consumed) -> None:
    await handlers.destroy_personal_data(c.store, c.keys, c.conn, c.event.case_id, c.context)


# The dispatch table: each event type the service consumes, and what it does with it. An event of a
# type not here (another event on a topic it reads) is consumed and changes nothing.
HANDLERS: dict[type[EventPayload], Handler] = {
    ReviewerAllocated: _allocated,
    # Whatever returned the case to the queue (a conflict, the reviewer's deactivation, a reopening
    # that could not go back to them): the allocation has ended, and access with it.
    ConflictOfInterestDeclared: _allocation_ended,
    CaseReturnedToQueue: _allocation_ended,
    AllocationEnded: _allocation_ended,
    AllocationRestored: _restored,
    CaseOpened: _opened,
    ReviewerRegistered: _registered,
    CaseEscalatedToFocused: _escalated,
    ReviewApprovedByQA: _qa_outcome,
    ReviewReturnedByQA: _qa_outcome,
    CaseReopened: _reopened,
    PersonalDataDestroyed: _destroyed,
}


def handler_for(event: EventPayload) -> Handler | None:
    """The handler of `event`'s type, or of the type it is a later version of (a version's class
    subclasses the one it replaces), nearest first."""
    return handler_for_type(type(event))


def handler_for_type(kind: type[EventPayload]) -> Handler | None:
    return dispatch.handler_for_type(HANDLERS, kind)


def case_events(runtime: Runtime, topic: str, name: str) -> InboxConsumer[Envelope]:
    store = runtime.store

    async def apply_batch(conn: Connection, messages: Sequence[tuple[Envelope, Delivery]]) -> None:
        def handled() -> Iterator[tuple[Handler, Consumed]]:
            for envelope, _ in messages:
                # An event of a type no handler takes changes nothing: its payload is not even decoded
                # (the parser validated only the payloads of the types in HANDLERS).
                handler = handler_for_type(payload_class(envelope.event_type))
                if handler is not None:
                    context = Context.caused_by(envelope, SYSTEM)
                    event = payload_of(envelope)
                    yield handler, Consumed(event, store, runtime.keys, conn, context, runtime.today)

        # Cases opened one after the other: their rows written together, then each queued in order.
        await dispatch.in_runs(handled(), _opened, _opened_together)

    async def apply(conn: Connection, envelope: Envelope, delivery: Delivery) -> None:
        await apply_batch(conn, [(envelope, delivery)])

    return InboxConsumer(
        name=name,
        topic=topic,
        pool=store.pool,
        apply=apply,
        apply_batch=apply_batch,
        parse=envelope_parser(lambda cls: handler_for_type(cls) is not None),
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
    )


async def _sealer(c: Consumed, case_id: UUID) -> texts.Sealer:
    try:
        return await texts.sealer(c.keys, c.conn, case_id)
    except KeyDestroyed as gone:
        raise Unprocessable(
            [
                {
                    "field": "case_id",
                    "type": "personal_data_destroyed",
                    "message": f"case {case_id}'s key is destroyed",
                }
            ]
        ) from gone


async def _on_review(c: Consumed, decide: handlers.Decision, missing_ok: bool = False) -> None:
    case_id: UUID = c.event.case_id
    try:
        await handlers.reviews(c.store).change(str(case_id), decide, c.context, case_id=case_id, conn=c.conn)
    except handlers.ReviewNotFound as missing:
        if not missing_ok:  # an escalation before allocation: the review will start with the case's type
            raise Unprocessable(f"no review of case {missing}") from missing
    except domain.DomainError as broken:
        raise Unprocessable([{"field": "case_id", "type": broken.code, "message": broken.detail}]) from broken


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        case_events(runtime, service_topic(source, prefix), f"{source}-events")
        for source in ("allocation", "notification", "governance")
    ]
