"""What the governance service consumes: every event of the notification, allocation and review
services, kept as the facts its reports are computed from; and submitted reviews, which wait for a
QA panel.

Each consumed event type that does more than become a fact has one handler in HANDLERS (the
dispatch table)."""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from events import Actor, Envelope, EventPayload
from events.review import ReviewSubmittedForQA
from events.topics import service_topic
from infra.db import Connection
from infra.eventstore import Context, EventLog, Transaction
from infra.inbox import Delivery, InboxConsumer, envelope_order, parse_envelope, payload_of
from infra.logging import get_logger
from infra.service import Runtime
from services.governance import handlers

SYSTEM = Actor.system("governance")
log = get_logger(__name__)


@dataclass(frozen=True)
class Consumed:
    """What a handler of a consumed event is given: the event, the store, the consumer's transaction
    and the context of what it causes."""

    event: Any
    store: EventLog
    conn: Transaction
    context: Context


Handler = Callable[[Consumed], Awaitable[None]]


async def _submitted(c: Consumed) -> None:
    event: ReviewSubmittedForQA = c.event
    await handlers.on_submission(c.store, c.conn, event.case_id, event.submitted_on, c.context)


# The dispatch table: each event type that does more than become a fact, and what it does. Every
# other event observed is kept as a fact and changes nothing else.
HANDLERS: dict[type[EventPayload], Handler] = {
    ReviewSubmittedForQA: _submitted,
}


def handler_for(event: EventPayload) -> Handler | None:
    """The handler of `event`'s type, or of the type it is a later version of (a version's class
    subclasses the one it replaces), nearest first."""
    for cls in type(event).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    return None


def observed(runtime: Runtime, topic: str, name: str) -> InboxConsumer[Envelope]:
    store = runtime.store

    async def apply(conn: Connection, envelope: Envelope, _: Delivery) -> None:
        if envelope.stream_id.startswith(handlers.READS_STREAM_PREFIX):
            return  # who read a case is the access log's (the audit service's), no fact for a report
        await conn.execute(
            "INSERT INTO observed_events"
            " (event_id, source, event_type, schema_version, case_id, occurred_at, data)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
            envelope.event_id,
            envelope.source,
            envelope.event_type,
            envelope.schema_version,
            envelope.case_id,
            envelope.occurred_at,
            json.dumps(envelope.data),
        )
        # Every payload was validated as it was parsed (each is a fact a report reads); decoded once.
        event = payload_of(envelope)
        handler = handler_for(event)
        if handler is not None:
            await handler(Consumed(event, store, conn, Context.caused_by(envelope, SYSTEM)))

    return InboxConsumer(
        name=name,
        topic=topic,
        pool=store.pool,
        apply=apply,
        parse=parse_envelope,
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
    )


def consumers(runtime: Runtime) -> Sequence[InboxConsumer[Any]]:
    prefix = runtime.settings.topic_prefix
    return [
        observed(runtime, service_topic(source, prefix), f"{source}-events")
        for source in ("notification", "allocation", "review")
    ]


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    every = float(os.environ.get("LEDER_ACTION_SWEEP_SECONDS", "600"))

    async def overdue_actions() -> None:
        while True:
            try:
                await handlers.flag_overdue_actions(
                    runtime.store, runtime.today(), Context(Actor.system("scheduler"))
                )
            except Exception as exc:  # tried again next time; the service goes on
                log.error("action_sweep_failed", error=repr(exc))
            await asyncio.sleep(every)

    return [overdue_actions]
