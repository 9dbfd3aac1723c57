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

    async def apply_batch(conn: Connection, messages: Sequence[tuple[Envelope, Delivery]]) -> None:
        # Who read a case is the access log's (the audit service's), no fact for a report.
        facts = [e for e, _ in messages if not e.stream_id.startswith(handlers.READS_STREAM_PREFIX)]
        if not facts:
            return
        # Every fact of the batch in one statement (a round trip each was most of what observing one
        # cost the database and this service), then what some of them make the service do, in order:
        # no handler reads the facts.
        await conn.execute(
            "INSERT INTO observed_events"
            " (event_id, source, event_type, schema_version, case_id, occurred_at, data)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::uuid[],"
            " $6::timestamptz[], $7::jsonb[]) ON CONFLICT (event_id) DO NOTHING",
            [e.event_id for e in facts],
            [e.source for e in facts],
            [e.event_type for e in facts],
            [e.schema_version for e in facts],
            [e.case_id for e in facts],
            [e.occurred_at for e in facts],
            [json.dumps(e.data) for e in facts],
        )
        for envelope in facts:
            # Every payload was validated as it was parsed (each is a fact a report reads): decoded once.
            event = payload_of(envelope)
            handler = handler_for(event)
            if handler is not None:
                await handler(Consumed(event, store, conn, Context.caused_by(envelope, SYSTEM)))

    async def apply(conn: Connection, envelope: Envelope, delivery: Delivery) -> None:
        await apply_batch(conn, [(envelope, delivery)])

    return InboxConsumer(
        name=name,
        topic=topic,
        pool=store.pool,
        apply=apply,
        apply_batch=apply_batch,
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
