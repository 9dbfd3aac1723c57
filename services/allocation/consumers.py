"""What the allocation service consumes: opened and escalated cases from the notification service;
completed reviews and closed cases, which end an allocation; reopened cases, which restore it (or
queue the case again); the end of a case's retention, which destroys the service's key for it.

Each consumed event type has one handler in HANDLERS (the dispatch table): it loads, calls the
domain's decide function, appends. Every decision is in domain.py."""

from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from events import Actor, Envelope, EventPayload
from events.governance import CaseClosed, CaseReopened
from events.notification import (
    CaseEscalatedToFocused,
    CaseOpened,
    EligibilityRejected,
    EligibilityToConfirm,
    PersonalDataDestroyed,
)
from events.registry import payload_class
from events.review import ReviewCompleted
from events.topics import service_topic
from infra import dispatch
from infra.db import Connection
from infra.eventstore import Context, EventLog, EventStore, Transaction
from infra.inbox import Delivery, InboxConsumer, Unprocessable, envelope_order, envelope_parser, payload_of
from infra.service import Runtime
from services.allocation import domain, handlers
from services.allocation.projections import record_case_not_open, record_opened_cases
from services.allocation.tables import POSTGRES, Tables

SYSTEM = Actor.system("allocation")


@dataclass(frozen=True)
class Consumed:
    """What a handler of a consumed event is given: the event, its envelope, the store, the
    consumer's transaction, the context of what it causes, the service's day, and its tables."""

    event: Any
    envelope: Envelope
    store: EventLog
    conn: Transaction
    context: Context
    today: Callable[[], date]
    tables: Tables = POSTGRES


Handler = Callable[[Consumed], Awaitable[None]]


async def _opened(c: Consumed) -> None:
    await _opened_together([c])


async def _opened_together(opened: Sequence[Consumed]) -> None:
    """Cases opened one after the other in a batch: their rows for the LAC's pages written in one
    statement, then each queued, in order (queuing reads none of those rows)."""
    events: list[CaseOpened] = [c.event for c in opened]
    rows = [(e.case_id, e.reference, e.facts.place_of_death) for e in events]
    await record_opened_cases(opened[0].conn, rows)
    for c, event in zip(opened, events, strict=True):
        await handlers.queue(c.store, c.conn, event, c.envelope.occurred_at.date(), c.context)


async def _to_confirm(c: Consumed) -> None:
    await record_case_not_open(c.conn, c.event.case_id, "eligibility_to_confirm")


async def _rejected(c: Consumed) -> None:
    await record_case_not_open(c.conn, c.event.case_id, "not_eligible")


async def _escalated(c: Consumed) -> None:
    reasons = list(c.event.reasons)
    await _on_case(c, lambda case: domain.decide_review_type(case, "focused", reasons))


async def _review_completed(c: Consumed) -> None:
    await _on_case(c, lambda case: domain.decide_end(case, "review_completed"))


async def _closed(c: Consumed) -> None:
    await _on_case(c, lambda case: domain.decide_end(case, "case_closed"))


async def _destroyed(c: Consumed) -> None:
    await handlers.destroy_personal_data(c.store, c.conn, c.event.case_id, c.context)


async def _reopened(c: Consumed) -> None:
    event: CaseReopened = c.event
    await _refusing(
        handlers.reopen(c.store, c.conn, event.case_id, event.reason, c.today(), c.context, c.tables)
    )


# The dispatch table: each event type the service consumes, and what it does with it. An event of a
# type not here (another event on a topic it reads) is consumed and changes nothing.
HANDLERS: dict[type[EventPayload], Handler] = {
    CaseOpened: _opened,
    EligibilityToConfirm: _to_confirm,
    EligibilityRejected: _rejected,
    CaseEscalatedToFocused: _escalated,
    ReviewCompleted: _review_completed,
    CaseClosed: _closed,
    PersonalDataDestroyed: _destroyed,
    CaseReopened: _reopened,
}


def handler_for(table: dict[type[EventPayload], Handler], event: EventPayload) -> Handler | None:
    """The handler of `event`'s type, or of the type it is a later version of (a version's class
    subclasses the one it replaces), nearest first."""
    return handler_for_type(table, type(event))


def handler_for_type(table: dict[type[EventPayload], Handler], kind: type[EventPayload]) -> Handler | None:
    return dispatch.handler_for_type(table, kind)


def case_events(
    store: EventStore, topic: str, name: str, today: Callable[[], date] = date.today
) -> InboxConsumer[Envelope]:
    """`today`: the service's day (the runtime's clock), for the rules a reopened case is decided by."""

    async def apply_batch(conn: Connection, messages: Sequence[tuple[Envelope, Delivery]]) -> None:
        def handled() -> Iterator[tuple[Handler, Consumed]]:
            for envelope, _ in messages:
                # An event of a type no handler takes changes nothing: its payload is not even decoded
                # (the parser validated only the payloads of the types in HANDLERS).
                handler = handler_for_type(HANDLERS, payload_class(envelope.event_type))
                if handler is not None:
                    context = Context.caused_by(envelope, SYSTEM)
                    yield handler, Consumed(payload_of(envelope), envelope, store, conn, context, today)

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
        parse=envelope_parser(lambda cls: handler_for_type(HANDLERS, cls) is not None),
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
    )


async def _on_case(c: Consumed, decide: handlers.CaseDecision) -> None:
    case_id: UUID = c.event.case_id
    await _refusing(
        handlers.cases(c.store, c.tables).change(
            str(case_id), decide, c.context, case_id=case_id, conn=c.conn
        )
    )


async def _refusing(call: Awaitable[Any]) -> None:
    """A case the service does not have, or has not opened, is refused as unprocessable (the inbox
    sends the message to the dead-letter topic with the reason)."""
    try:
        await call
    except handlers.NotFound as missing:
        raise Unprocessable(f"no {missing.what} in the allocation service") from missing
    except domain.CaseNotOpen as not_open:
        raise Unprocessable(
            [{"field": "case_id", "type": not_open.code, "message": not_open.detail}]
        ) from not_open


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        case_events(runtime.store, service_topic(source, prefix), f"{source}-events", runtime.today)
        for source in ("notification", "review", "governance")
    ]
