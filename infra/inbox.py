"""The idempotent inbox: how a service consumes a topic without losing or doubling anything.

Each message is parsed and validated; one that cannot be (or that breaks a rule the service cannot
apply) goes to `<topic>.dlq` with the reasons and the original bytes (sealed, by a consumer given
`seal_dead_letter`, when they may hold personal data), and the partition moves on.
A good message is recorded in the inbox in the same transaction as its effects; a redelivered one
finds itself there and changes nothing. Offsets are committed only after that transaction.

Messages are applied in batches: the record FastStream hands over (at once, so an idle consumer waits
for nothing) and what the client has already fetched behind it, up to `batch_size`
(LEDER_CONSUMER_BATCH, 100), each partition's in order, in one transaction with one offset commit
(`handle_batch`); a consumer given `apply_batch` applies them in one call, not one `apply` each.
When any of them fails for its own sake (refused, a fork, out of order, not verified or not parsed),
the transaction is rolled back and each message is handled alone as before, so that one is retried
and set aside alone and its neighbours are applied; a message that failed is handled alone when it
comes again. A failure that is not the messages' fault (`is_transient`) has the
whole batch read again, later. A partition is rewound to its first message not done, and committed up
to it; the others are committed past the batch.

Offsets are committed behind the batches (`OffsetCommitter`): the next batch starts as soon as one's
transaction has committed, not after a commit round trip to the broker as well. The inbox is what makes
that safe: an offset committed late, or never (a crash, a rebalance), costs a redelivery, and a
redelivery changes nothing. What is committed never runs ahead of what the database holds.

No message can stall a consumer. When applying one fails, the failure is one of two kinds
(`is_transient`):
- transient, not the message's fault: the database, the broker or the key manager away (connection
  errors, SQLSTATE classes 08 connection, 40 serialization failure and deadlock, 53 insufficient
  resources, 55 lock not available, 57 shutdown and cancellation, 58 system error, XX internal), or
  the service itself wrong (any other class that is not data: 42 an undefined table or no privilege,
  28 authorisation, 0A, 25). The message is rewound and tried again without limit, a little later
  each time: setting it aside would lose it for a fault it does not have.
- refused: the database refuses the message's effects as data (`DATA_SQLSTATE_CLASSES`: 21, 22 data
  exception, a NUL 22021 or an untranslatable character 22P05 among them, 23 integrity constraint,
  27, 44, 54 a value too large for an index, P0 a trigger's refusal), or the handler failed in any
  other way (a value no event may hold, a character no encoding has). Tried `max_tries` times (3),
  then dead-lettered with the database's reason; but only while the database answers (`SELECT 1`),
  so that no failure met while it is away sets a message aside.
A consumer on one message for longer than `stuck_seconds` (LEDER_CONSUMER_STUCK_SECONDS, 60) is
named with the message's position and the last error on the service's /readyz (`stuck()`) and in
the log at error level, until it is past the message.

A fork is an alarm, never a duplicate (issue 20). A consumer of a service's topic (`order` gives the
event's stream and version, `message_id` its event id) remembers, per stream version it has applied
or set aside, the event's id and the SHA-256 of its bytes (table `inbox_versions`, written in the
transaction of the effects; one row per event, as the inbox itself keeps). An event at a version
already passed is then one of two things (`stream_decision`):
- the same event id and the same bytes: a redelivery, a quiet duplicate, as before;
- anything else (another event id, or the same id with other bytes, or a version passed before the
  table existed whose event id the inbox does not know): a fork. The source has published two
  histories (a store restored from a backup, or its signing key used by someone else).
The handler's own check may find one too (`Fork` raised by `apply`: the audit log's unique source
sequence). A fork is never tried again and never ignored: it is recorded in `inbox_forks` (both
event ids and hashes, where it was met), logged at error level, dead-lettered with reason type `fork`,
and the partition moves on (later events are applied). The service's /readyz has a `forks` check,
false while any fork is open; a fork stays open until an operator acknowledges it
(`acknowledge_forks`: `leder audit forks --ack` for the audit service, `POST /forks/{id}/acknowledge`
on any service), after having looked at both events and recovered the source if need be.
Comparing bytes, not only ids, costs one hash per event and one row per event per consumer, and is
what tells a restored store's new event (a fresh id) and a re-signed edited event (the same id) from
a redelivery alike.
"""

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Generic, Literal, TypeVar, cast

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import DefaultSubscriber
from pydantic import ValidationError

from events import Envelope, EventPayload, UnknownEventType
from events.registry import can_upcast, payload_class
from events.text import unstorable
from events.topics import dlq
from infra.db import Connection
from infra.kafka import FETCH_MAX_WAIT_MS
from infra.keys import KeyManagerError
from infra.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Unprocessable(Exception):
    """A message this service can never apply: it goes to the DLQ with these reasons."""

    def __init__(self, reasons: list[dict[str, Any]] | str) -> None:
        self.reasons = [{"message": reasons}] if isinstance(reasons, str) else reasons
        super().__init__(json.dumps(self.reasons))


@dataclass(frozen=True)
class Held:
    """An event as a consumer knows it at one place (a stream version, a source sequence): its id and
    the SHA-256 of its bytes, hex (None where it is not known: recorded before hashes were kept)."""

    event_id: str | None
    content_hash: str | None

    def same_as(self, other: "Held") -> bool:
        """Whether `other` is this event again: the same id, and the same bytes where both are known."""
        if self.event_id is None or self.event_id != other.event_id:
            return False
        if self.content_hash is None or other.content_hash is None:
            return True
        return self.content_hash == other.content_hash


class Fork(Unprocessable):
    """Two different events at one place of a source's history: the one this service holds (`held`)
    and another (`other`). Never retried, never ignored: recorded, logged at error level, dead-lettered
    with reason type `fork`, and the service's /readyz is false until an operator acknowledges it."""

    def __init__(
        self,
        *,
        held: Held,
        other: Held,
        source: str | None = None,
        source_sequence: int | None = None,
        stream: str | None = None,
        stream_version: int | None = None,
        why: str,
    ) -> None:
        self.held, self.other, self.why = held, other, why
        self.source, self.source_sequence = source, source_sequence
        self.stream, self.stream_version = stream, stream_version
        where = (
            f"{stream} version {stream_version}"
            if stream is not None
            else f"{source} sequence {source_sequence}"
        )
        super().__init__(
            [
                {
                    "field": "stream_version" if stream is not None else "source_sequence",
                    "type": "fork",
                    "message": f"fork at {where}: {why}; held {held.event_id} ({held.content_hash}),"
                    f" this one {other.event_id} ({other.content_hash})",
                    "held_event_id": held.event_id,
                    "held_hash": held.content_hash,
                    "other_event_id": other.event_id,
                    "other_hash": other.content_hash,
                }
            ]
        )


def content_hash(raw: bytes) -> str:
    """The SHA-256 of an event's bytes, hex: what tells a redelivery from another event of one id."""
    return hashlib.sha256(raw).hexdigest()


Decision = Literal["apply", "duplicate", "fork", "wait"]


def stream_decision(version: int, last: int, held: Held | None, incoming: Held) -> Decision:
    """What the inbox does with an event at `version` of a stream whose last applied version is
    `last`, when it holds `held` at that version (None: no record of what it applied there)."""
    if version > last + 1:
        return "wait"
    if version == last + 1:
        return "apply"
    if held is not None and held.same_as(incoming):
        return "duplicate"
    # Another event where one was applied, or a version passed before versions were recorded whose
    # event the inbox never saw (the caller checks the inbox by event id first): a fork either way.
    return "fork"


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


# SQLSTATE classes in which the database refuses what a message would do as data: trying the same
# message again gets the same answer. 21 cardinality violation; 22 data exception (22021 a NUL or a
# byte not in the encoding, 22P05 a character jsonb cannot hold, 22001 a value too long, 22003 a
# number out of range, 22008 a date out of range); 23 integrity constraint violation (a unique key, a
# foreign key, a check); 27 triggered data change violation; 44 WITH CHECK OPTION violation; 54
# program limit exceeded (a value too large for an index row); P0 raised by a trigger or function
# (the audit log's append-only trigger). Every other class is transient or the service's own fault.
DATA_SQLSTATE_CLASSES = frozenset({"21", "22", "23", "27", "44", "54", "P0"})


def is_transient(exc: BaseException) -> bool:
    """Whether a failure to apply a message is no fault of the message (so it is tried again without
    limit): the database, broker or key manager away, or the service itself wrong."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] not in DATA_SQLSTATE_CLASSES
    return isinstance(exc, asyncpg.InterfaceError | OSError | KafkaError | KeyManagerError)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncpg.PostgresError):
        return f"{type(exc).__name__} ({exc.sqlstate}): {exc}"[:1000]
    return repr(exc)[:1000]


def refusal_reasons(exc: Exception) -> list[dict[str, Any]]:
    """What goes in a dead letter's `dlq_reason`: the validation errors, or the database's reason
    (its SQLSTATE, message and detail, and the table, column or constraint it names)."""
    if isinstance(exc, Unprocessable):
        return exc.reasons
    if isinstance(exc, ValidationError):
        return validation_reasons(exc)
    if isinstance(exc, asyncpg.PostgresError):
        names = {
            name: value
            for name in ("table_name", "column_name", "constraint_name", "detail")
            if isinstance(value := getattr(exc, name, None), str) and value
        }
        where = ".".join(n for n in (names.get("table_name"), names.get("column_name")) if n)
        return [
            {
                "field": where or names.get("constraint_name") or "(effects)",
                "type": "database_refused",
                "sqlstate": str(exc.sqlstate),
                "message": str(exc),
                **{k: v for k, v in names.items() if k in ("constraint_name", "detail")},
            }
        ]
    return [{"field": "(effects)", "type": "handler_failed", "message": describe_error(exc)}]


@dataclass
class Attempt:
    """A consumer on one message: since when, how often tried, and how it last failed."""

    topic: str
    partition: int
    offset: int
    since: float = field(default_factory=time.monotonic)
    since_wall: datetime = field(default_factory=lambda: datetime.now(UTC))
    tries: int = 0
    last_try: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    running: bool = False
    reported: bool = False

    @property
    def key(self) -> tuple[str, int, int]:
        return self.topic, self.partition, self.offset

    def seconds(self) -> float:
        return time.monotonic() - self.since

    def position(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def describe(self) -> dict[str, Any]:
        return {
            **self.position(),
            "since": self.since_wall.isoformat(),
            "seconds": round(self.seconds(), 1),
            "tries": self.tries,
            "last_error": self.last_error or "(none: the handler has not returned)",
        }


class OutOfOrder(Exception):
    """An event arrived before an earlier one of its stream. The relay publishes in order, so this
    happens only when a broker lost records under a consumer whose position is from before; the
    consumer's group is then reset and the earlier event comes, so the message is retried."""


# The last record's envelope and the bytes it was read from: a consumer asks a record's order and then
# parses it, and the second read of the same bytes is then not made again. The bytes are held, so an
# identical object is the same record (an envelope is frozen).
_last_read: tuple[bytes, Envelope] | None = None


def read_envelope(raw: bytes) -> Envelope:
    """`Envelope.from_bytes(raw)`, read once however often a record is asked for."""
    global _last_read
    last = _last_read
    if last is not None and last[0] is raw:
        return last[1]
    envelope = Envelope.from_bytes(raw)
    _last_read = (raw, envelope)
    return envelope


def envelope_order(raw: bytes) -> tuple[str, int] | None:
    """The stream and version an envelope has, even when its payload is not valid."""
    try:
        envelope = read_envelope(raw)
    except ValidationError:
        return None
    return f"{envelope.source}/{envelope.stream_id}", envelope.stream_version


# Payloads decoded by a parser, by the envelope they came from (held, so that its id is not reused
# while it is here), until the handler asks for them: a batch parses every message before it applies
# any, so one slot would not do. Bounded (a message parsed but never applied, a duplicate, leaves its
# entry behind): an envelope gone from here is decoded again when asked.
_decoded: dict[int, tuple[Envelope, EventPayload]] = {}
_DECODED_LIMIT = 1024


def payload_of(envelope: Envelope) -> EventPayload:
    """`envelope.payload()`, the one its parser validated if it is still held (taken: a second ask
    decodes again)."""
    held = _decoded.pop(id(envelope), None)
    if held is not None and held[0] is envelope:
        return held[1]
    return envelope.payload()


def _decode(envelope: Envelope) -> EventPayload:
    payload = envelope.payload()
    if len(_decoded) >= _DECODED_LIMIT:
        del _decoded[next(iter(_decoded))]
    _decoded[id(envelope)] = (envelope, payload)
    return payload


def _unknown_type(exc: UnknownEventType) -> Unprocessable:
    return Unprocessable([{"field": "event_type", "message": str(exc), "type": "unknown_event_type"}])


def parse_envelope(raw: bytes) -> Envelope:
    """The default parser: an event envelope whose payload is a known, valid event."""
    try:
        envelope = read_envelope(raw)
        _decode(envelope)
    except ValidationError as exc:
        raise Unprocessable(validation_reasons(exc)) from exc
    except UnknownEventType as exc:
        raise _unknown_type(exc) from exc
    return envelope


def envelope_parser(reacts_to: Callable[[type[EventPayload]], bool]) -> Callable[[bytes], Envelope]:
    """A parser for a consumer that acts on some event types only and takes the others as read (they
    change nothing but the inbox's record): the envelope is checked whole and its type must be one
    this code knows (or can upcast to), as `parse_envelope` asks, but the payload is validated only
    for a type `reacts_to` names (given the type's class). Validating a payload nothing reads was most
    of what an ignored event cost once its signature was checked; its source validated it when it
    recorded it, and the signature says the source published these bytes. A payload that is not
    valid is then refused (dead-lettered) only by a consumer that acts on its type."""
    reacting: dict[type[EventPayload], bool] = {}

    def parse(raw: bytes) -> Envelope:
        try:
            envelope = read_envelope(raw)
            cls = payload_class(envelope.event_type, envelope.schema_version)
            acts = reacting.get(cls)
            if acts is None:
                acts = reacting[cls] = reacts_to(cls)
            if acts:
                _decode(envelope)
            elif not can_upcast(envelope.event_type, envelope.schema_version, cls.schema_version):
                # What decoding would have refused: a version no upcaster lifts.
                raise UnknownEventType(envelope.event_type, envelope.schema_version)
        except ValidationError as exc:
            raise Unprocessable(validation_reasons(exc)) from exc
        except UnknownEventType as exc:
            raise _unknown_type(exc) from exc
        return envelope

    return parse


class _HandleAlone(Exception):
    """A batch that is not applied together: rolled back, and each of its messages handled alone."""


# A message ready to apply: the message, its id, where it came from, its stream and version, its bytes.
_Ready = tuple[T, str, Delivery, tuple[str, int] | None, bytes]

Apply = Callable[[Connection, T, Delivery], Awaitable[None]]
# Applies a batch's messages (those not applied before, in the batch's order) in the batch's transaction
# as `apply` would one after another, with the same effects: for a handler that does the batch's work
# in a few statements, not a few per message. A message handled alone (a retry, a split batch) still
# goes to `apply`.
ApplyBatch = Callable[[Connection, Sequence[tuple[T, Delivery]]], Awaitable[None]]
# What goes to the DLQ in place of a message's bytes: a service whose messages carry personal data
# (the partner topic's notifications) seals them, so that the DLQ keeps the reason in clear and the
# message only as long as its key lives.
SealDeadLetter = Callable[[bytes, Delivery], Awaitable[bytes]]
# Checks a message's provenance (its signature, that its source may publish on its topic) before it is
# parsed: raises Unprocessable, and the message goes to the DLQ with the reason.
Verify = Callable[[bytes, Delivery], None]


# How long a consumer that stops, or loses partitions in a rebalance, waits for its offsets to be
# committed: past that they are read again by whoever consumes the partition next (the inbox dedups).
FLUSH_SECONDS = 2.0


class OffsetCommitter:
    """Commits one Kafka consumer's offsets behind its batches, in a task of its own (`run`).

    Why: the inbox makes a redelivered message change nothing, so an offset committed late (or never)
    costs a redelivery, not a double effect; committing here, not in `_consume`, takes a round trip to
    the broker out of every batch. Offsets handed over while a commit is in flight are coalesced: the
    next commit carries each partition's latest offset (the latest, not the highest: a rewind lowers
    it), so under load there are fewer commit requests than batches."""

    def __init__(self, consumer: AIOKafkaConsumer, name: str) -> None:
        self.consumer = consumer
        self.name = name
        self.pending: dict[TopicPartition, int] = {}
        self._handed = asyncio.Event()
        self._idle = asyncio.Event()  # nothing pending and no commit in flight
        self._idle.set()

    def hand_over(self, offsets: dict[TopicPartition, int]) -> None:
        self.pending.update(offsets)
        self._idle.clear()
        self._handed.set()

    async def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait (at most `timeout`) until what was handed over is committed or refused: whether it was."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        return self._idle.is_set()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions this consumer no longer has: their offsets are their new consumer's to commit."""
        for tp in partitions:
            self.pending.pop(tp, None)

    async def run(self) -> None:
        try:
            while True:
                await self._handed.wait()
                await self._commit()
        except asyncio.CancelledError:
            # The subscriber stops (FastStream cancels its tasks, then stops the consumer): what is
            # pending goes out first if the broker takes it soon (the commit request goes ahead of the
            # consumer's leaving its group); else it is read again.
            with suppress(TimeoutError):
                await asyncio.wait_for(self._commit(), FLUSH_SECONDS)
            raise

    async def _commit(self) -> None:
        self._handed.clear()
        offsets, self.pending = self.pending, {}
        # A partition a rebalance took away is another consumer's: aiokafka would refuse the whole
        # commit (IllegalStateError), and the offset could only move its new consumer back.
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        try:
            if offsets:
                await self.consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance under way or done (CommitFailedError), the broker away: the partitions are
            # read again from the last commit, and the inbox makes what comes again change nothing.
            log.warning("offset_commit_failed", consumer=self.name, error=repr(exc))
        finally:
            if not self._handed.is_set():
                self._idle.set()


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before a rebalance: each committer's offsets committed (briefly waited for) while the partitions
    are still this consumer's, then those of the partitions given up forgotten, so that an offset
    handed over late never moves a partition's next consumer back."""

    def __init__(self, committers: dict[AIOKafkaConsumer, OffsetCommitter]) -> None:
        self.committers = committers

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for committer in list(self.committers.values()):
            await committer.flush()
            committer.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: a partition gained is read from its group's last commit, which the inbox
        makes safe to read again (required by aiokafka's listener interface)."""


class InboxConsumer(Generic[T]):
    def __init__(
        self,
        *,
        name: str,
        topic: str,
        pool: asyncpg.Pool,
        apply: Apply[T],
        apply_batch: ApplyBatch[T] | None = None,
        parse: Callable[[bytes], T],
        message_id: Callable[[T], str],
        order: Callable[[bytes], tuple[str, int] | None] | None = None,
        dead_letter_on: tuple[type[Exception], ...] = (),
        on_handled: Callable[[T], None] | None = None,
        order_patience: float = 60.0,
        seal_dead_letter: SealDeadLetter | None = None,
        verify: Verify | None = None,
        max_tries: int = 3,
        stuck_seconds: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        self.name = name
        self.topic = topic
        self.pool = pool
        self.apply = apply
        self.apply_batch = apply_batch
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
        # How often a message whose effects are refused is tried before it is dead-lettered.
        self.max_tries = max_tries
        self.stuck_seconds = (
            stuck_seconds
            if stuck_seconds is not None
            else float(os.environ.get("LEDER_CONSUMER_STUCK_SECONDS", "60"))
        )
        # At most how many records one transaction applies (LEDER_CONSUMER_BATCH, 100): what the broker
        # has ready, never a wait for more. 1: each message in a transaction of its own.
        self.batch_size = max(
            batch_size if batch_size is not None else int(os.environ.get("LEDER_CONSUMER_BATCH", "100")), 1
        )
        # The messages being handled or failed and waiting to be delivered again, by position.
        self._attempts: dict[tuple[str, int, int], Attempt] = {}
        self._subscriber: DefaultSubscriber | None = None
        # Each Kafka consumer's committer (one at a time, but a restarted subscriber has a new consumer).
        self._committers: dict[AIOKafkaConsumer, OffsetCommitter] = {}

    def subscribe(self, broker: KafkaBroker, group_id: str) -> None:
        self.broker = broker
        self.group_id = group_id

        async def handle(message: KafkaMessage) -> None:
            # FastStream hands over one record as soon as it comes (no wait for a batch to fill, so
            # an idle consumer adds no latency); what the client has fetched behind it is taken too.
            consumer = cast(AIOKafkaConsumer, message.consumer)
            first = message.raw_message
            assert not isinstance(first, tuple)
            records = [first]
            if self.batch_size > 1:
                ready = await consumer.getmany(timeout_ms=0, max_records=self.batch_size - 1)
                records += chain.from_iterable(ready.values())
            await self._consume(consumer, records)

        handle.__name__ = f"handle_{self.name}"
        self._subscriber = broker.subscriber(
            self.topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Offsets are committed (and partitions rewound) here, after the transaction: see _consume.
            ack_policy=AckPolicy.MANUAL,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            listener=_Revocations(self._committers),
            description=f"{self.name}: applied once each through the idempotent inbox",
        )
        self._subscriber(handle)

    async def _consume(self, consumer: AIOKafkaConsumer, records: "list[ConsumerRecord[Any, Any]]") -> None:
        """Apply the records, then rewind each partition to its first record not done (it is delivered
        again) and hand each partition's offset past what is done to the committer (committed behind)."""
        batch = [(record.value or b"", delivery_of(record)) for record in records]
        try:
            rewind = await self.handle_batch(batch)
        except BaseException:
            # Unforeseen (a cancellation as the service stops): every partition of the batch is read
            # again from its first record; what was applied is found in the inbox and changes nothing.
            for tp, first in _first_offsets(records).items():
                self._rewind(consumer, tp, first)
            raise
        offsets = {}
        for tp, last in _last_offsets(records).items():
            if tp.partition in rewind:
                self._rewind(consumer, tp, rewind[tp.partition])
                offsets[tp] = rewind[tp.partition]
            else:
                offsets[tp] = last + 1
        committer = self._committer(consumer)
        if committer is not None:
            committer.hand_over(offsets)

    def _committer(self, consumer: AIOKafkaConsumer) -> "OffsetCommitter | None":
        """The consumer's committer, started as a task of its subscriber (FastStream cancels it when it
        stops the subscriber, before it stops the consumer). None while the subscriber is not running
        (stopping): a task started then would outlive it, and an offset not committed is only read again."""
        committer = self._committers.get(consumer)
        if committer is None:
            subscriber = self._subscriber
            if subscriber is None or not subscriber.running:
                return None
            committer = self._committers[consumer] = OffsetCommitter(consumer, self.name)
            subscriber.add_task(self._commit_behind, (consumer, committer), restart_on_failure=False)
        return committer

    async def _commit_behind(self, consumer: AIOKafkaConsumer, committer: "OffsetCommitter") -> None:
        try:
            await committer.run()
        finally:
            if self._committers.get(consumer) is committer:
                del self._committers[consumer]

    def _rewind(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        try:
            consumer.seek(tp, offset)
        except KafkaError as exc:
            # No longer this consumer's (a rebalance): its new consumer reads from the last commit.
            log.warning("rewind_failed", consumer=self.name, partition=tp.partition, error=repr(exc))

    async def handle_batch(self, batch: Sequence[tuple[bytes, Delivery]]) -> dict[int, int]:
        """Apply records (each partition's in order) in one transaction when they all apply; when one
        does not, each is handled alone as `handle` does (so a poison message is retried and set aside
        alone, its neighbours applied). What comes back: per partition, the offset of the first record
        that is not done (to be delivered again); a partition not named is past all of its records."""
        if len(batch) > 1:
            done = await self._apply_together(batch)
            if done is not None:
                return done
        rewind: dict[int, int] = {}
        for raw, delivery in batch:
            if delivery.partition in rewind:
                continue  # an earlier record of its partition is still to do
            try:
                await self.handle(raw, delivery)
            except Exception:
                rewind[delivery.partition] = delivery.offset
        return rewind

    async def _apply_together(self, batch: Sequence[tuple[bytes, Delivery]]) -> dict[int, int] | None:
        """The batch in one transaction: {} when all of it is applied (or duplicates), the partitions
        to read again when it failed for no fault of its messages, None when a message needs to be
        handled alone (a refusal, a fork, one out of order, one that fails verification or parsing)."""
        if any(self._tried(delivery) for _, delivery in batch):
            return None  # a message that failed before is tried alone, its tries counted
        ready: list[_Ready[T]] = []
        for raw, delivery in batch:
            try:
                if self.verify is not None:
                    self.verify(raw, delivery)
                order = self.order(raw) if self.order else None
                message = self.parse(raw)
                ready.append((message, self.message_id(message), delivery, order, raw))
            except Exception:
                return None
        firsts: dict[int, Attempt] = {}
        for _, delivery in batch:
            if delivery.partition not in firsts:
                # What /readyz names while the batch does not return: each partition's first record.
                firsts[delivery.partition] = self._attempt(delivery, count=False)
        handled: list[bool] = []
        applying: list[int] = []  # the index of the message being applied, once the inbox is written
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                handled = await self._record_together(conn, ready)
                if self.apply_batch is not None:
                    # Which message failed is not known here: none of them has a try counted, and each
                    # is handled alone, where `apply` tells.
                    fresh = [(r[0], r[2]) for r, first_time in zip(ready, handled, strict=True) if first_time]
                    if fresh:
                        await self.apply_batch(conn, fresh)
                else:
                    for i, (r, first_time) in enumerate(zip(ready, handled, strict=True)):
                        if first_time:
                            applying[:] = [i]
                            await self.apply(conn, r[0], r[2])
        except _HandleAlone:
            return None  # rolled back: a duplicate id, a fork, an event out of order, handled alone
        except Exception as exc:
            if not is_transient(exc):
                if applying:
                    # The message that failed: this was one of its tries (it is tried alone from now).
                    failed = self._attempt(ready[applying[0]][2])
                    failed.last_error, failed.running = describe_error(exc), False
                log.info("inbox_batch_split", consumer=self.name, size=len(batch), error=repr(exc))
                return None
            # The database or the service itself, not the messages: the whole batch, later.
            for attempt in firsts.values():
                attempt.last_error = describe_error(exc)
                self._report_if_stuck(attempt)
            log.warning("inbox_retry", consumer=self.name, error=repr(exc), retry_in=self._retry_delay)
            await asyncio.sleep(self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, 5.0)
            return {p: a.offset for p, a in firsts.items()}
        finally:
            for attempt in firsts.values():
                attempt.running = False
        for attempt in firsts.values():
            self._past(attempt)
        self._retry_delay = 0.2
        for (message, message_id, delivery, _, _), applied in zip(ready, handled, strict=True):
            self._waiting_since.pop(message_id, None)
            self._handled(message, applied, delivery, message_id)
        return {}

    async def handle(self, raw: bytes, delivery: Delivery) -> None:
        structlog.contextvars.bind_contextvars(
            topic=delivery.topic,
            offset=delivery.offset,
            correlation_id=delivery.headers.get("correlation_id"),
        )
        attempt = self._attempt(delivery)
        try:
            if await self._handle(raw, delivery, attempt):
                self._past(attempt)
        finally:
            attempt.running = False
            structlog.contextvars.unbind_contextvars(
                "topic", "offset", "correlation_id", "message_id", "case_id"
            )

    async def _handle(self, raw: bytes, delivery: Delivery, attempt: "Attempt") -> bool:
        """True once the message is past (applied, a duplicate, or dead-lettered); raises to have it
        delivered again."""
        order: tuple[str, int] | None = None
        # A message refused by the verify hook is not the service's own: the stream and version it
        # names are a forger's word, so it takes no place in the stream (the real event of that
        # version is still applied). Only a verified message's order is skipped when it is set aside.
        verified = self.verify is None
        try:
            if self.verify is not None:
                try:
                    self.verify(raw, delivery)
                except Unprocessable as refused:
                    await self.dead_letter(raw, delivery, refused)
                    return True
                verified = True
            order = self.order(raw) if self.order else None
            try:
                message = self.parse(raw)
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc, order)
                return True
            message_id = self.message_id(message)
            case_id = getattr(message, "case_id", None)
            structlog.contextvars.bind_contextvars(
                message_id=message_id, case_id=str(case_id) if case_id else None
            )
            try:
                handled = await self._apply_once(message, message_id, delivery, order, raw)
            except Fork as fork:
                await self._forked(raw, delivery, fork, order)
                return True
            except self.dead_letter_on as exc:
                await self.dead_letter(raw, delivery, exc, order)
                return True
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
                    return True
                attempt.last_error = str(exc)
                log.warning("inbox_waiting_for_earlier_event", consumer=self.name, error=str(exc))
                await asyncio.sleep(min(self._retry_delay, self.order_patience))
                self._retry_delay = min(self._retry_delay * 2, 5.0)
                raise
        except OutOfOrder:
            raise
        except Exception as exc:
            await self._failed(raw, delivery, exc, attempt, order if verified else None)
            return True
        self._retry_delay = 0.2
        self._waiting_since.pop(message_id, None)
        self._handled(message, handled, delivery, message_id)
        return True

    def _handled(self, message: T, applied: bool, delivery: Delivery, message_id: str) -> None:
        """After the commit: logged, and the on_handled hook told of a message applied."""
        if applied:
            log.info("inbox_handled", consumer=self.name, offset=delivery.offset, message_id=message_id)
            if self.on_handled is not None:
                self.on_handled(message)
        else:
            log.info(
                "inbox_duplicate_ignored", consumer=self.name, offset=delivery.offset, message_id=message_id
            )

    async def _failed(
        self,
        raw: bytes,
        delivery: Delivery,
        exc: Exception,
        attempt: "Attempt",
        order: tuple[str, int] | None,
    ) -> None:
        """A message that could not be handled: tried again (by raising `exc`) while the failure is
        transient or the tries last; dead-lettered with the reason after that."""
        attempt.last_error = describe_error(exc)
        self._report_if_stuck(attempt)
        if is_transient(exc):
            # The database, the broker or the key manager away, or the service itself wrong: not the
            # message's fault, so never set aside. Rewind and try again, a little later each time.
            log.warning("inbox_retry", consumer=self.name, error=repr(exc), retry_in=self._retry_delay)
            await asyncio.sleep(self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, 5.0)
            raise exc
        if attempt.tries >= self.max_tries and not await self._database_answers():
            # An error of another kind while the database is away (a driver's own, a wrapper's):
            # not the message's fault, so it is not set aside until the database can say so.
            log.warning("inbox_retry", consumer=self.name, error=repr(exc), database="not answering")
            await asyncio.sleep(self._retry_delay)
            self._retry_delay = min(self._retry_delay * 2, 5.0)
            raise exc
        if attempt.tries < self.max_tries:
            delay = min(0.2 * 2 ** (attempt.tries - 1), 5.0)
            log.warning(
                "inbox_refused_retry",
                consumer=self.name,
                error=repr(exc),
                tries=attempt.tries,
                max_tries=self.max_tries,
                retry_in=delay,
            )
            await asyncio.sleep(delay)
            raise exc
        log.error("inbox_refused", consumer=self.name, error=repr(exc), tries=attempt.tries)
        await self.dead_letter(raw, delivery, exc, order)

    async def _database_answers(self) -> bool:
        try:
            async with self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception:  # whatever it is, the database did not answer
            return False
        return True

    def _attempt(self, delivery: Delivery, count: bool = True) -> "Attempt":
        """The message's attempt: a new one, or the one it failed in before and is redelivered for.
        `count`: whether it is a try of the message (a batch it is the first of is not: only a message
        handled alone is tried `max_tries` times)."""
        key = (delivery.topic, delivery.partition, delivery.offset)
        for other in [k for k in self._attempts if k[:2] == key[:2] and k != key]:
            # Another message of the partition: this consumer is past that one, or no longer has
            # the partition (a rebalance gave it to another consumer).
            self._past(self._attempts[other])
        attempt = self._attempts.get(key)
        if attempt is None:
            attempt = self._attempts[key] = Attempt(*key)
        attempt.tries += 1 if count else 0
        attempt.running = True
        attempt.last_try = time.monotonic()
        return attempt

    def _tried(self, delivery: Delivery) -> bool:
        attempt = self._attempts.get((delivery.topic, delivery.partition, delivery.offset))
        return attempt is not None and attempt.tries > 0

    def _past(self, attempt: "Attempt") -> None:
        self._attempts.pop(attempt.key, None)
        if attempt.reported:
            log.warning("consumer_moved_on", consumer=self.name, **attempt.position())

    def _report_if_stuck(self, attempt: "Attempt") -> None:
        if not attempt.reported and attempt.seconds() >= self.stuck_seconds:
            attempt.reported = True
            log.error("consumer_stuck", consumer=self.name, **attempt.describe())

    def stuck(self) -> list[dict[str, Any]]:
        """The messages this consumer has been on for longer than `stuck_seconds` (failing, or a
        handler that does not return), each with its position and the last error: for /readyz."""
        now = time.monotonic()
        found = []
        for key, attempt in list(self._attempts.items()):
            if not attempt.running and now - attempt.last_try > self.stuck_seconds:
                # Not delivered again for that long: the partition went to another consumer.
                del self._attempts[key]
                continue
            self._report_if_stuck(attempt)
            if attempt.reported:
                found.append({"consumer": self.name, **attempt.describe()})
        return found

    async def _forked(
        self, raw: bytes, delivery: Delivery, fork: Fork, order: tuple[str, int] | None
    ) -> None:
        """A fork: recorded for /readyz and /audit/forks, logged at error level, dead-lettered; the
        partition moves on. A record that fails for the database is tried again (raised), as any."""
        async with self.pool.acquire() as conn:
            await record_fork(conn, self.name, fork, delivery)
        log.error(
            "fork",
            consumer=self.name,
            where=fork.reasons[0]["message"],
            held_event_id=fork.held.event_id,
            held_hash=fork.held.content_hash,
            other_event_id=fork.other.event_id,
            other_hash=fork.other.content_hash,
        )
        await self.dead_letter(raw, delivery, fork, order)

    async def _record_together(self, conn: Connection, ready: Sequence[_Ready[T]]) -> list[bool]:
        """The batch recorded in the inbox in `conn`'s transaction, as `_apply_in` records each message
        before applying it, in three statements whatever its size: the streams' last versions read
        (and locked) at once, what each message is decided in Python, and every row written at once.
        Which messages to apply (False: a duplicate). Raises _HandleAlone (the caller rolls back and
        hands each message to `handle`) for anything but a message to apply or a plain redelivery: an
        id twice in the batch, a stream version met again, a fork, an event out of order."""
        if len({message_id for _, message_id, _, _, _ in ready}) != len(ready):
            raise _HandleAlone
        streams = sorted({order[0] for _, _, _, order, _ in ready if order is not None})
        last: dict[str, int] = {}
        if streams:
            # Locked in one order by every transaction, so two consumers of one name cannot deadlock.
            rows = await conn.fetch(
                "SELECT stream, last_version FROM inbox_streams WHERE consumer = $1"
                " AND stream = any($2::text[]) ORDER BY stream FOR UPDATE",
                self.name,
                streams,
            )
            last = {row["stream"]: row["last_version"] for row in rows}
        advanced: dict[str, int] = {}  # stream -> the version this batch takes it to
        versions: list[tuple[str, int, str, str]] = []
        apply: list[bool] = []
        for _, message_id, _, order, raw in ready:
            if order is None:
                apply.append(True)
                continue
            stream, version = order
            at = advanced.get(stream, last.get(stream, 0))
            if version <= at and stream in advanced:
                raise _HandleAlone  # a version this batch has just passed: decided alone
            incoming = Held(message_id, content_hash(raw))
            held = await self._held_at(conn, stream, version, message_id) if version <= at else None
            decision = stream_decision(version, at, held, incoming)
            if decision != "apply" and decision != "duplicate":
                raise _HandleAlone  # a fork or an event out of order: recorded or waited for alone
            apply.append(decision == "apply")
            if decision == "apply":
                advanced[stream] = version
                versions.append((stream, version, message_id, incoming.content_hash or ""))
        recorded = [r for r, a in zip(ready, apply, strict=True) if a]
        if not recorded:
            return apply
        # The streams advanced, their versions and the messages recorded, in one round trip.
        inserted = await conn.fetch(
            "WITH streams AS (INSERT INTO inbox_streams (consumer, stream, last_version)"
            "   SELECT $1, s, v FROM unnest($6::text[], $7::int[]) AS t(s, v)"
            "   ON CONFLICT (consumer, stream) DO UPDATE SET last_version = EXCLUDED.last_version),"
            " versions AS (INSERT INTO inbox_versions"
            "   (consumer, stream, stream_version, event_id, content_hash)"
            "   SELECT $1, s, v, e, h FROM unnest($8::text[], $9::int[], $10::text[], $11::text[])"
            "     AS t(s, v, e, h) ON CONFLICT DO NOTHING)"
            " INSERT INTO inbox (consumer, message_id, topic, kafka_partition, kafka_offset)"
            " SELECT $1, m, t, p, o FROM unnest($2::text[], $3::text[], $4::int[], $5::bigint[])"
            "   AS u(m, t, p, o) ON CONFLICT DO NOTHING RETURNING message_id",
            self.name,
            [message_id for _, message_id, _, _, _ in recorded],
            [delivery.topic for _, _, delivery, _, _ in recorded],
            [delivery.partition for _, _, delivery, _, _ in recorded],
            [delivery.offset for _, _, delivery, _, _ in recorded],
            list(advanced),
            list(advanced.values()),
            [stream for stream, _, _, _ in versions],
            [version for _, version, _, _ in versions],
            [event_id for _, _, event_id, _ in versions],
            [digest for _, _, _, digest in versions],
        )
        first_time = {row["message_id"] for row in inserted}
        for i, (_, message_id, _, order, _) in enumerate(ready):
            if apply[i] and message_id not in first_time:
                if order is not None:
                    # The next version of its stream, but an event id applied before elsewhere: a
                    # fork, recorded when the message is handled alone.
                    raise _HandleAlone
                apply[i] = False  # applied before: a duplicate
        return apply

    async def _apply_once(
        self,
        message: T,
        message_id: str,
        delivery: Delivery,
        order: tuple[str, int] | None,
        raw: bytes = b"",
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._apply_in(conn, message, message_id, delivery, order, raw)

    async def _apply_in(
        self,
        conn: Connection,
        message: T,
        message_id: str,
        delivery: Delivery,
        order: tuple[str, int] | None,
        raw: bytes,
    ) -> bool:
        """The message recorded in the inbox and applied in `conn`'s transaction: True, or False for a
        duplicate. Raises OutOfOrder, Fork, or what the handler raised."""
        incoming = Held(message_id, content_hash(raw))
        if order is not None:
            stream, version = order
            last = await self._last_in_stream(conn, stream)
            held = None
            if version <= last:
                held = await self._held_at(conn, stream, version, message_id)
            decision = stream_decision(version, last, held, incoming)
            if decision == "wait":
                raise OutOfOrder(f"{stream} version {version} arrived before version {last + 1}")
            if decision == "duplicate":
                return False
            if decision == "fork":
                why = (
                    "another event was applied at this version"
                    if held is not None
                    else "this version was passed with an event this consumer does not know"
                )
                raise Fork(
                    held=held or Held(None, None),
                    other=incoming,
                    source=stream.split("/", 1)[0],
                    source_sequence=_claimed_sequence(raw),
                    stream=stream,
                    stream_version=version,
                    why=why,
                )
            # The stream advanced and the message recorded in one round trip (as _advance, then the
            # inbox): a batch makes several of these per message its main cost.
            first_time = await conn.fetchval(
                "WITH streams AS (INSERT INTO inbox_streams (consumer, stream, last_version)"
                "   VALUES ($1, $6, $7) ON CONFLICT (consumer, stream)"
                "   DO UPDATE SET last_version = EXCLUDED.last_version),"
                " versions AS (INSERT INTO inbox_versions"
                "   (consumer, stream, stream_version, event_id, content_hash)"
                "   VALUES ($1, $6, $7, $2, $8) ON CONFLICT DO NOTHING)"
                " INSERT INTO inbox (consumer, message_id, topic, kafka_partition, kafka_offset)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
                self.name,
                message_id,
                delivery.topic,
                delivery.partition,
                delivery.offset,
                stream,
                version,
                incoming.content_hash,
            )
        else:
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
            if order is not None:
                # The next version of its stream, but an event id this consumer has applied
                # before, elsewhere: another event under a reused id.
                raise Fork(
                    held=Held(message_id, None),
                    other=incoming,
                    source=order[0].split("/", 1)[0],
                    source_sequence=_claimed_sequence(raw),
                    stream=order[0],
                    stream_version=order[1],
                    why="this event id was applied before at another place",
                )
            return False
        await self.apply(conn, message, delivery)
        return True

    async def record_handled(self, conn: Connection, raw: bytes, delivery: Delivery) -> bool:
        """Record `raw` as handled, as applying it would, without applying it: what recovery does for
        the messages a restored database had handled before it was lost (leder.recovery). By message
        id, with its stream's place and the event's hash. False for a message the consumer refuses to
        parse (it dead-lettered it: nothing to record) or has recorded already."""
        try:
            message = self.parse(raw)
        except Exception:
            return False
        message_id = self.message_id(message)
        if self.order is not None and (order := self.order(raw)) is not None:
            stream, version = order
            await self._advance(conn, stream, version, Held(message_id, content_hash(raw)))
        added = await conn.fetchval(
            "INSERT INTO inbox (consumer, message_id, topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            self.name,
            message_id,
            delivery.topic,
            delivery.partition,
            delivery.offset,
        )
        return bool(added)

    async def _last_in_stream(self, conn: Connection, stream: str) -> int:
        """The last version of the stream applied or set aside (0: none), locked for the transaction."""
        last: int | None = await conn.fetchval(
            "SELECT last_version FROM inbox_streams WHERE consumer = $1 AND stream = $2 FOR UPDATE",
            self.name,
            stream,
        )
        return last or 0

    async def _held_at(self, conn: Connection, stream: str, version: int, message_id: str) -> Held | None:
        """What this consumer applied (or set aside) at a stream version; for a version passed before
        versions were recorded, the incoming event itself when the inbox has its id (its bytes unknown)."""
        row = await conn.fetchrow(
            "SELECT event_id, content_hash FROM inbox_versions"
            " WHERE consumer = $1 AND stream = $2 AND stream_version = $3",
            self.name,
            stream,
            version,
        )
        if row is not None:
            return Held(row["event_id"], row["content_hash"])
        known = await conn.fetchval(
            "SELECT 1 FROM inbox WHERE consumer = $1 AND message_id = $2", self.name, message_id
        )
        return Held(message_id, None) if known else None

    async def _advance(self, conn: Connection, stream: str, version: int, held: Held) -> None:
        """The stream is at `version` now, with the event that took it (never moved back: recovery
        records handled messages whose stream the restored inbox may know further on)."""
        await conn.execute(
            "INSERT INTO inbox_streams (consumer, stream, last_version) VALUES ($1, $2, $3)"
            " ON CONFLICT (consumer, stream) DO UPDATE"
            " SET last_version = greatest(inbox_streams.last_version, EXCLUDED.last_version)",
            self.name,
            stream,
            version,
        )
        await conn.execute(
            "INSERT INTO inbox_versions (consumer, stream, stream_version, event_id, content_hash)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            self.name,
            stream,
            version,
            held.event_id,
            held.content_hash,
        )

    async def _skip_in_stream(self, order: tuple[str, int], held: Held) -> None:
        """A dead-lettered event still takes its place in its stream, or later ones would wait."""
        stream, version = order
        async with self.pool.acquire() as conn, conn.transaction():
            # An earlier event still to come is applied when it comes (this one stays in the DLQ);
            # a version already passed keeps the event it was passed with.
            if version == await self._last_in_stream(conn, stream) + 1:
                await self._advance(conn, stream, version, held)

    async def dead_letter(
        self, raw: bytes, delivery: Delivery, exc: Exception, order: tuple[str, int] | None = None
    ) -> None:
        reasons = refusal_reasons(exc)
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
            await self._skip_in_stream(order, Held(_claimed_event_id(raw), content_hash(raw)))


def delivery_of(record: "ConsumerRecord[Any, Any]") -> Delivery:
    """What a handler is told of where a record came from."""
    return Delivery(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        headers=_storable_headers(record.headers or ()),
    )


def _first_offsets(records: "Sequence[ConsumerRecord[Any, Any]]") -> dict[TopicPartition, int]:
    firsts: dict[TopicPartition, int] = {}
    for record in records:
        firsts.setdefault(TopicPartition(record.topic, record.partition), record.offset)
    return firsts


def _last_offsets(records: "Sequence[ConsumerRecord[Any, Any]]") -> dict[TopicPartition, int]:
    return {TopicPartition(record.topic, record.partition): record.offset for record in records}


def _storable_headers(headers: Any) -> dict[str, str]:
    """A record's headers as text. One a database could not store (a NUL in a correlation id) is
    dropped: headers are not the message, and a consumer must never fail on one."""
    decoded = {k: (v or b"").decode(errors="replace") for k, v in headers}
    dropped = [k for k, v in decoded.items() if unstorable(k) or unstorable(v)]
    if dropped:
        log.warning("headers_dropped", headers=[repr(k) for k in dropped])
    return {k: v for k, v in decoded.items() if k not in dropped}


def _claimed_sequence(raw: bytes) -> int | None:
    """The source sequence a record says it has (for a fork's listing)."""
    try:
        claimed = json.loads(raw)
    except ValueError:
        return None
    sequence = claimed.get("source_sequence") if isinstance(claimed, dict) else None
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 0 <= sequence < 2**63:
        return None
    return sequence


def _claimed_event_id(raw: bytes) -> str | None:
    """The event id a record says it has, even when it is no valid event (kept for a set-aside version)."""
    try:
        claimed = json.loads(raw)
    except ValueError:
        return None
    event_id = claimed.get("event_id") if isinstance(claimed, dict) else None
    if not isinstance(event_id, str) or len(event_id) > 100 or unstorable(event_id):
        return None
    return event_id


async def record_fork(conn: Connection, consumer: str, fork: Fork, delivery: Delivery | None = None) -> None:
    """Keep a fork for /readyz and /audit/forks (once, however often the other event comes)."""
    await conn.execute(
        "INSERT INTO inbox_forks (consumer, source, source_sequence, stream, stream_version,"
        " logged_event_id, logged_hash, other_event_id, other_hash, reason, topic, kafka_partition,"
        " kafka_offset) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT DO NOTHING",
        consumer,
        fork.source,
        fork.source_sequence,
        fork.stream,
        fork.stream_version,
        fork.held.event_id,
        fork.held.content_hash,
        fork.other.event_id,
        fork.other.content_hash or "",
        fork.reasons[0]["message"],
        delivery.topic if delivery else None,
        delivery.partition if delivery else None,
        delivery.offset if delivery else None,
    )


FORK_COLUMNS = (
    "id, consumer, source, source_sequence, stream, stream_version, logged_event_id, logged_hash,"
    " other_event_id, other_hash, reason, topic, kafka_partition, kafka_offset, seen_at, cleared_at,"
    " cleared_how"
)


def fork_json(row: Any) -> dict[str, Any]:
    """A fork as /readyz and /audit/forks show it."""
    return {
        **{k: row[k] for k in FORK_COLUMNS.replace(" ", "").split(",") if not k.endswith("_at")},
        "seen_at": row["seen_at"].isoformat(),
        "cleared_at": row["cleared_at"].isoformat() if row["cleared_at"] else None,
    }


async def open_forks(executor: Connection | asyncpg.Pool, limit: int = 100) -> list[dict[str, Any]]:
    """The forks not yet acknowledged, oldest first: while there is one, the service is not ready."""
    rows = await executor.fetch(
        f"SELECT {FORK_COLUMNS} FROM inbox_forks WHERE cleared_at IS NULL ORDER BY id LIMIT $1", limit
    )
    return [fork_json(r) for r in rows]


async def acknowledge_forks(executor: Connection | asyncpg.Pool, ids: list[int] | None, by: str) -> list[int]:
    """An operator has looked at these forks (None: every open one) and dealt with them: they no longer
    keep /readyz false, and stay listed with who cleared them. The ids cleared."""
    rows = await executor.fetch(
        "UPDATE inbox_forks SET cleared_at = now(), cleared_how = $2"
        " WHERE cleared_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[])) RETURNING id",
        ids,
        f"acknowledged by {by}"[:200],
    )
    return sorted(r["id"] for r in rows)
