"""The idempotent inbox: how a service consumes a topic without losing or doubling anything.

Each message is parsed and validated; one that cannot be (or that breaks a rule the service cannot
apply) goes to `<topic>.dlq` with the reasons and the original bytes, and the partition moves on.
A good message is recorded in the inbox in the same transaction as its effects; a redelivered one
finds itself there and changes nothing. Offsets are committed only after that transaction, and a
transient failure (the database away) rewinds to the message and tries again.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import structlog
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError

from events import Envelope, UnknownEventType
from events.topics import dlq
from infra.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Unprocessable(Exception):
    """A message this service can never apply: it goes to the DLQ with these reasons."""

    def __init__(self, reasons: list[dict[str, Any]] | str) -> None:
        self.reasons = [{"message": reasons}] if isinstance(reasons, str) else reasons
        super().__init__(json.dumps(self.reasons))


@dataclass(frozen=True)
class Delivery:
    """Where a message came from, for the handler's causation and the inbox record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, str]


def validation_reasons(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]


def parse_envelope(raw: bytes) -> Envelope:
    """The default parser: an event envelope whose payload is a known, valid event."""
    try:
        envelope = Envelope.from_bytes(raw)
        envelope.payload()
    except ValidationError as exc:
        raise Unprocessable(validation_reasons(exc)) from exc
    except UnknownEventType as exc:
        raise Unprocessable([{"field": "event_type", "message": str(exc), "type": "unknown_event_type"}]) from exc
    return envelope


Apply = Callable[[asyncpg.Connection, T, Delivery], Awaitable[None]]


class InboxConsumer(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        topic: str,
        pool: asyncpg.Pool,
        apply: Apply[T],
        parse: Callable[[bytes], T],
        message_id: Callable[[T], str],
        dead_letter_on: tuple[type[Exception], ...] = (),
        on_handled: Callable[[T], None] | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.pool = pool
        self.apply = apply
        self.parse = parse
        self.message_id = message_id
        self.dead_letter_on = (Unprocessable, *dead_letter_on)
        self.on_handled = on_handled
        self.broker: KafkaBroker | None = None
        self._retry_delay = 0.2

    def subscribe(self, broker: KafkaBroker, group_id: str) -> None:
        self.broker = broker

        async def handle(message: KafkaMessage) -> None:
            await self.handle(message.body, _delivery(message))

        handle.__name__ = f"handle_{self.name}"
        broker.subscriber(
            self.topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            description=f"{self.name}: applied once each through the idempotent inbox",
        )(handle)

    async def handle(self, raw: bytes, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            topic=delivery.topic, offset=delivery.offset, correlation_id=delivery.headers.get("correlation_id")
        )
        try:
            try:
                message = self.parse(raw)
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc)
                return
            message_id = self.message_id(message)
            structlog.contextvars.bind_contextvars(message_id=message_id)
            try:
                handled = await self._apply_once(message, message_id, delivery)
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc)
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Transient: rewind and try again, a little later each time.
                log.warning("inbox_retry", consumer=self.name, error=repr(exc), retry_in=self._retry_delay)
                await asyncio.sleep(self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                raise
            self._retry_delay = 0.2
            if handled:
                log.info("inbox_handled", consumer=self.name)
                if self.on_handled is not None:
                    self.on_handled(message)
            else:
                log.info("inbox_duplicate_ignored", consumer=self.name)
        finally:
            structlog.contextvars.unbind_contextvars("topic", "offset", "correlation_id", "message_id")

    async def _apply_once(self, message: T, message_id: str, delivery: Delivery) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                "INSERT INTO inbox (consumer, message_id, topic, kafka_partition, kafka_offset)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                message_id,
                delivery.topic,
                delivery.partition,
                delivery.offset,
            )
            if not first_time:
                return False
            await self.apply(conn, message, delivery)
            return True

    async def dead_letter(self, raw: bytes, delivery: Delivery, exc: Exception) -> None:
        reasons = exc.reasons if isinstance(exc, Unprocessable) else [{"message": str(exc)}]
        log.warning("dead_lettered", consumer=self.name, reasons=reasons)
        assert self.broker is not None, "subscribe() before handling"
        while True:
            try:
                await self.broker.publish(
                    raw,
                    topic=dlq(delivery.topic),
                    key=delivery.key,
                    headers={
                        "dlq_reason": json.dumps(reasons, sort_keys=True),
                        "dlq_error_type": type(exc).__name__,
                        "dlq_consumer": self.name,
                        "original_topic": delivery.topic,
                        "original_partition": str(delivery.partition),
                        "original_offset": str(delivery.offset),
                        **{k: v for k, v in delivery.headers.items() if not k.startswith("dlq_")},
                    },
                )
                return
            except (KafkaError, OSError) as err:
                # Never commit past a message that is neither applied nor dead-lettered.
                log.warning("dead_letter_retry", error=repr(err))
                await asyncio.sleep(1)


def _delivery(message: KafkaMessage) -> Delivery:
    record = message.raw_message
    assert not isinstance(record, tuple)
    return Delivery(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers={k: v.decode(errors="replace") for k, v in (record.headers or ())},
    )
