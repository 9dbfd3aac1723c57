"""The idempotent inbox: how a service consumes a topic without losing or doubling anything.

Each message is parsed and validated; one that cannot be (or that breaks a rule the service cannot
apply) goes to `<topic>.dlq` with the reasons and the original bytes (sealed, by a consumer given
`seal_dead_letter`, when they may hold personal data), and the partition moves on.
A good message is recorded in the inbox in the same transaction as its effects; a redelivered one
finds itself there and changes nothing. Offsets are committed only after that transaction, and a
transient failure (the database away) rewinds to the message and tries again.
"""

import asyncio
import json
import time
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
from infra.db import Connection
from infra.kafka import FETCH_MAX_WAIT_MS
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
        {
            "field": ".".join(str(p) for p in err["loc"]) or "(body)",
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


class OutOfOrder(Exception):
    """An event arrived before an earlier one of its stream. The relay publishes in order, so this
    happens only when a broker lost records under a consumer whose position is from before; the
    consumer's group is then reset and the earlier event comes, so the message is retried."""


def envelope_order(raw: bytes) -> tuple[str, int] | None:
    """The stream and version an envelope has, even when its payload is not valid."""
    try:
        envelope = Envelope.from_bytes(raw)
    except ValidationError:
        return None
    return f"{envelope.source}/{envelope.stream_id}", envelope.stream_version


def parse_envelope(raw: bytes) -> Envelope:
    """The default parser: an event envelope whose payload is a known, valid event."""
    try:
        envelope = Envelope.from_bytes(raw)
        envelope.payload()
    except ValidationError as exc:
        raise Unprocessable(validation_reasons(exc)) from exc
    except UnknownEventType as exc:
        raise Unprocessable(
            [{"field": "event_type", "message": str(exc), "type": "unknown_event_type"}]
        ) from exc
    return envelope


Apply = Callable[[Connection, T, Delivery], Awaitable[None]]
# What goes to the DLQ in place of a message's bytes: a service whose messages carry personal data
# (the partner topic's notifications) seals them, so that the DLQ keeps the reason in clear and the
# message only as long as its key lives.
SealDeadLetter = Callable[[bytes, Delivery], Awaitable[bytes]]
# Checks a message's provenance (its signature, that its source may publish on its topic) before it is
# parsed: raises Unprocessable, and the message goes to the DLQ with the reason.
Verify = Callable[[bytes, Delivery], None]


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
        order: Callable[[bytes], tuple[str, int] | None] | None = None,
        dead_letter_on: tuple[type[Exception], ...] = (),
        on_handled: Callable[[T], None] | None = None,
        order_patience: float = 60.0,
        seal_dead_letter: SealDeadLetter | None = None,
        verify: Verify | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.pool = pool
        self.apply = apply
        self.parse = parse
        self.message_id = message_id
        self.order = order
        self.dead_letter_on: tuple[type[Exception], ...] = (Unprocessable, *dead_letter_on)
        self.on_handled = on_handled
        self.broker: KafkaBroker | None = None
        self.group_id: str | None = None
        self.order_patience = order_patience
        self.seal_dead_letter = seal_dead_letter
        self.verify = verify
        self._retry_delay = 0.2
        self._waiting_since: dict[str, float] = {}

    def subscribe(self, broker: KafkaBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id

        async def handle(message: KafkaMessage) -> None:
            await self.handle(message.body, _delivery(message))

        handle.__name__ = f"handle_{self.name}"
        broker.subscriber(
            self.topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            description=f"{self.name}: applied once each through the idempotent inbox",
        )(handle)

    async def handle(self, raw: bytes, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            topic=delivery.topic,
            offset=delivery.offset,
            correlation_id=delivery.headers.get("correlation_id"),
        )
        order = self.order(raw) if self.order else None
        try:
            if self.verify is not None:
                try:
                    self.verify(raw, delivery)
                except Unprocessable as refused:
                    # Not the service's own: the stream and version it names are a forger's word, so it
                    # takes no place in the stream (the real event of that version is still applied).
                    await self.dead_letter(raw, delivery, refused)
                    return
            try:
                message = self.parse(raw)
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc, order)
                return
            message_id = self.message_id(message)
            case_id = getattr(message, "case_id", None)
            structlog.contextvars.bind_contextvars(
                message_id=message_id, case_id=str(case_id) if case_id else None
            )
            try:
                handled = await self._apply_once(message, message_id, delivery, order)
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc, order)
                return
            except OutOfOrder as exc:
                waited = time.monotonic() - self._waiting_since.setdefault(message_id, time.monotonic())
                if waited > self.order_patience:
                    # The earlier event is not coming in the log as it is: set this one aside rather
                    # than block the partition (it is kept, with the reason, for reconciliation).
                    self._waiting_since.pop(message_id, None)
                    reason = Unprocessable(
                        [{"field": "stream_version", "type": "out_of_order", "message": str(exc)}]
                    )
                    await self.dead_letter(raw, delivery, reason)
                    return
                log.warning("inbox_waiting_for_earlier_event", consumer=self.name, error=str(exc))
                await asyncio.sleep(min(self._retry_delay, self.order_patience))
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                raise
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Transient: rewind and try again, a little later each time.
                log.warning("inbox_retry", consumer=self.name, error=repr(exc), retry_in=self._retry_delay)
                await asyncio.sleep(self._retry_delay)
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                raise
            self._retry_delay = 0.2
            self._waiting_since.pop(message_id, None)
            if handled:
                log.info("inbox_handled", consumer=self.name)
                if self.on_handled is not None:
                    self.on_handled(message)
            else:
                log.info("inbox_duplicate_ignored", consumer=self.name)
        finally:
            structlog.contextvars.unbind_contextvars(
                "topic", "offset", "correlation_id", "message_id", "case_id"
            )

    async def _apply_once(
        self, message: T, message_id: str, delivery: Delivery, order: tuple[str, int] | None
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            if order is not None and not await self._next_in_stream(conn, *order):
                return False
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

    async def _next_in_stream(self, conn: Connection, stream: str, version: int) -> bool:
        """Advance the stream to `version` if it is the next one; False if already applied."""
        last = await conn.fetchval(
            "SELECT last_version FROM inbox_streams WHERE consumer = $1 AND stream = $2 FOR UPDATE",
            self.name,
            stream,
        )
        last = last or 0
        if version <= last:
            return False
        if version > last + 1:
            raise OutOfOrder(f"{stream} version {version} arrived before version {last + 1}")
        await conn.execute(
            "INSERT INTO inbox_streams (consumer, stream, last_version) VALUES ($1, $2, $3)"
            " ON CONFLICT (consumer, stream) DO UPDATE SET last_version = EXCLUDED.last_version",
            self.name,
            stream,
            version,
        )
        return True

    async def _skip_in_stream(self, order: tuple[str, int]) -> None:
        """A dead-lettered event still takes its place in its stream, or later ones would wait."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await self._next_in_stream(conn, *order)
            except OutOfOrder:
                pass  # an earlier event is still to come; it will be applied, this one stays in the DLQ

    async def dead_letter(
        self, raw: bytes, delivery: Delivery, exc: Exception, order: tuple[str, int] | None = None
    ) -> None:
        reasons = exc.reasons if isinstance(exc, Unprocessable) else [{"message": str(exc)}]
        log.warning("dead_lettered", consumer=self.name, reasons=reasons)
        assert self.broker is not None, "subscribe() before handling"
        # Sealing fails only as the database does: the message is then delivered again (not committed).
        body = raw if self.seal_dead_letter is None else await self.seal_dead_letter(raw, delivery)
        sealed = {"dlq_sealed": "true"} if self.seal_dead_letter is not None else {}
        while True:
            try:
                await self.broker.publish(
                    body,
                    topic=dlq(delivery.topic),
                    key=delivery.key,
                    headers={
                        **sealed,
                        "dlq_reason": json.dumps(reasons, sort_keys=True),
                        "dlq_error_type": type(exc).__name__,
                        "dlq_consumer": self.name,
                        # Several services consume one topic under the same consumer name: the group
                        # says which of them could not handle the message.
                        "dlq_group": self.group_id or self.name,
                        "original_topic": delivery.topic,
                        "original_partition": str(delivery.partition),
                        "original_offset": str(delivery.offset),
                        **{k: v for k, v in delivery.headers.items() if not k.startswith("dlq_")},
                    },
                )
                break
            except (KafkaError, OSError) as err:
                # Never commit past a message that is neither applied nor dead-lettered.
                log.warning("dead_letter_retry", error=repr(err))
                await asyncio.sleep(1)
        if order is not None:
            await self._skip_in_stream(order)


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
