"""The outbox relay: publishes the service's events, in sequence order, to its topic.

The events table is the outbox. The relay remembers how far it has published, and moves that mark
only after the broker acknowledged, so a crash or a broker outage can repeat events (inboxes absorb
them) but never lose one. Only one relay per service publishes at a time (an advisory lock), so
several instances of a service can run.

A broker that forgot what it held (the in-memory embedded broker after a restart) is noticed before
each batch, from an empty topic, and after it, from offsets acknowledged lower than before;
the relay then recreates the topic and publishes everything again, in order.

The relay remembers how far it has published while it holds its lock (nobody else moves the mark
then): it reads the mark again whenever it takes the lock, is fenced, fails, or starts the topic again.
"""

import asyncio
import json
from collections.abc import Callable
from contextlib import suppress

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from infra import db, kafka
from infra.eventstore import NOTIFY_CHANNEL, EventStore
from infra.logging import get_logger
from infra.signing import Signer

log = get_logger(__name__)
_RELAY_LOCK = 48_151_623
# How many bytes of records go to a partition in one produce request. The client's default (16 KiB,
# some fifteen events) made a batch of 500 events some thirty requests per partition, each waiting for
# the one before (a partition has one request in flight, which keeps it in order). Under the broker's
# 1 MiB limit on a record batch.
_PRODUCE_BATCH_BYTES = 512 * 1024


# Where the correlation id begins in a store's canonical envelope text (events.canonical: keys sorted,
# no spaces), and the key that follows the ones before it.
_CORRELATION_KEY = '"correlation_id":"'
_DATA_KEY = '"data":'
_JSON_STRING = json.JSONDecoder()


def correlation_id(envelope: str) -> str:
    """The envelope's correlation id (the header consumers log it by), read without parsing the
    whole envelope: a JSON string holds no unescaped quote, so in canonical text the first
    `"correlation_id":"` before `"data":` is the top-level key (only the actor, the case id and the
    causation id, all plain, come before it in sorted order). Text in another form is parsed whole."""
    at = envelope.find(_CORRELATION_KEY)
    if 0 < at < envelope.find(_DATA_KEY) and envelope.startswith('{"actor":{'):
        start = at + len(_CORRELATION_KEY) - 1
        value, _ = _JSON_STRING.raw_decode(envelope, start)
        if isinstance(value, str):
            return value
    found: str = json.loads(envelope)["correlation_id"]
    return found


class _LockLost(Exception):
    """The connection holding the relay's advisory lock closed."""


class OutboxRelay:
    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        topic: str,
        *,
        partitions: int = 4,
        batch_size: int = 500,
        idle_wait: float = 1.0,
        signer: Signer | None = None,
        fence: Callable[[], str | None] | None = None,
    ) -> None:
        """`signer`: the service's event signing key (infra.signing); every service has one. Only the
        relay's own tests, on topics no service consumes, publish unsigned.

        `fence`: asked before each batch; while it gives a reason (a database restored from a backup
        that is behind what the rest of the system has seen), the relay publishes nothing and says why
        in `fenced_because`, so that events the others already hold are not published a second time
        with other contents."""
        self.store = store
        self.signer = signer
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self.fence = fence
        self.fenced_because: str | None = None
        self._cleared = False  # whether the fence has lifted since the relay started
        self.connected = False
        # Another instance of the service holds the relay's lock and publishes: this one is not
        # broken, it waits its turn (its /readyz says so and stays ready).
        self.standing_by = False
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._wake = asyncio.Event()
        # The offset we expect each partition's next record to get.
        self._next_offsets: dict[int, int] = {}
        # Each stream's partition, as the client's default partitioner chooses it (a murmur2 hash of
        # the key, in Python, was a tenth of the relay's time): computed once per stream.
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[str, int] = {}
        self._partitions: list[int] = []
        self._type_header_cache: dict[tuple[str, int], tuple[tuple[str, bytes], ...]] = {}
        # The mark, as this relay last read or moved it (None: read it from the database).
        self._published_through: int | None = None

    async def run(self) -> None:
        """Publish until cancelled, riding out broker and database outages."""
        backoff = 0.2
        lock_conn: asyncpg.Connection[asyncpg.Record] | None = None
        while True:
            try:
                if lock_conn is None or lock_conn.is_closed():
                    # Its own connection, not a pool's: the lock and the LISTEN are session state,
                    # and the service pools do not reset a connection when it is released.
                    lock_conn = await db.connect_like(self.store.pool)
                    lock_conn.add_termination_listener(self._on_lock_lost)
                if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                    self.standing_by = True
                    await asyncio.sleep(2)  # another instance publishes; stand by
                    continue
                self.standing_by = False
                self._published_through = None  # another instance may have moved it meanwhile
                await lock_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                try:
                    await self._publish_forever(lock_conn)
                finally:
                    with suppress(Exception):
                        await lock_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                        await lock_conn.execute("SELECT pg_advisory_unlock($1)", _RELAY_LOCK)
            except asyncio.CancelledError:
                self.standing_by = False
                await self._disconnect()
                if lock_conn is not None:
                    lock_conn.terminate()
                raise
            except Exception as exc:
                self.standing_by = False
                # Whatever went wrong (a broker or database outage, or anything a restart throws up),
                # the relay tries again: if its task ended, the service would never publish again.
                expected = (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, _LockLost)
                (log.warning if isinstance(exc, expected) else log.exception)(
                    "relay_interrupted", topic=self.topic, error=repr(exc), retry_in=backoff
                )
                with suppress(Exception):
                    await self._disconnect()
                if lock_conn is not None and not lock_conn.is_closed():
                    lock_conn.terminate()  # a fresh session next time: its lock and LISTEN go with it
                lock_conn = None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.2

    def _on_lock_lost(self, *_: object) -> None:
        self._wake.set()  # so the publishing loop sees the closed connection now, not after idle_wait

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _publish_forever(self, lock_conn: "asyncpg.Connection[asyncpg.Record]") -> None:
        while True:
            if lock_conn.is_closed():
                # The lock went with its session: another instance may publish now.
                raise _LockLost("the relay's lock connection closed")
            published = await self.publish_pending()
            if published < self.batch_size:
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_wait)

    async def publish_pending(self) -> int:
        """One pass: publish the next batch after the mark; returns how many were published."""
        if self._fenced():
            # A recovery may move the mark meanwhile (leder.recovery): read again once lifted.
            self._published_through = None
            return 0
        producer = await self._connect()
        position = await self._position()
        rows = await self.store.read_after(position, self.batch_size)
        if not rows:
            return 0
        if await self._topic_lost_records(position):
            return 0
        # Every record of the batch is handed to the client before any acknowledgement is awaited: the
        # client sends each partition's records in as few requests as fit, in order.
        futures = []
        for row in rows:
            envelope = row.envelope
            # Keyed by stream (a case's stream is named by its case id) so each stays in order.
            key = row.stream_id.encode()
            value = envelope.encode()
            partition = self._partition_of.get(row.stream_id)
            if partition is None:
                partition = await self._partition(producer, row.stream_id, key)
            headers = [
                *self._type_headers(row.event_type, row.schema_version),
                ("correlation_id", correlation_id(envelope).encode()),
            ]
            if self.signer is not None:
                # Signed as published: these exact bytes on this topic (Ed25519 signs the same bytes
                # the same way, so a record published again carries the same signature).
                headers += self.signer.headers(self.topic, value)
            futures.append(
                await producer.send(self.topic, key=key, value=value, partition=partition, headers=headers)
            )
        acked: list[RecordMetadata] = await asyncio.gather(*futures)
        if self._offsets_went_back(acked):
            await self._republish_all("acknowledged offsets went back", recreate=True)
            return 0
        last = rows[-1].source_sequence
        await self.store.pool.execute(
            "UPDATE relay_position SET published_through = $2, updated_at = now() WHERE topic = $1",
            self.topic,
            last,
        )
        self._published_through = last
        log.debug("relay_published", topic=self.topic, count=len(rows), through=last)
        return len(rows)

    def _type_headers(self, event_type: str, schema_version: int) -> tuple[tuple[str, bytes], ...]:
        """The headers naming an event's type and version: made once for each (a store has a few)."""
        made = self._type_header_cache.get((event_type, schema_version))
        if made is None:
            made = (("event_type", event_type.encode()), ("schema_version", str(schema_version).encode()))
            self._type_header_cache[(event_type, schema_version)] = made
        return made

    def _fenced(self) -> bool:
        reason = self.fence() if self.fence is not None else None
        if reason != self.fenced_because:
            # Every start waits for the store's first comparison with its topic (infra.fencing), which
            # is no alarm: until the fence first lifts, the relay says so at info level (a store found
            # behind is reported at error level by its guard); a fence met after that is a warning.
            level = log.warning if self._cleared else log.info
            if reason is None:
                level("relay_fence_lifted", topic=self.topic, was=self.fenced_because)
                self._cleared = True
            else:
                level("relay_fenced", topic=self.topic, reason=reason)
            self.fenced_because = reason
        return reason is not None

    async def _partition(self, producer: AIOKafkaProducer, stream_id: str, key: bytes) -> int:
        partition = self._partition_of.get(stream_id)
        if partition is None:
            if not self._partitions:
                self._partitions = list(await producer.partitions_for(self.topic))
            # The arguments the client gives its partitioner when no partition is named.
            partition = self._partitioner(key, self._partitions, self._partitions)
            if len(self._partition_of) >= 100_000:
                self._partition_of.clear()
            self._partition_of[stream_id] = partition
        return partition

    async def _position(self) -> int:
        if self._published_through is not None:
            return self._published_through
        position: int = await self.store.pool.fetchval(
            "SELECT published_through FROM relay_position WHERE topic = $1", self.topic
        )
        self._published_through = position
        return position

    async def _topic_lost_records(self, position: int) -> bool:
        """Whether the topic is empty although we published to it. (Only emptiness is asked: the
        embedded broker under-reports end offsets, but never reports zero for a partition with
        records.)"""
        assert self._reader is not None
        ends = await kafka.end_offsets(self._reader, self.topic)
        lost = (position > 0 and not any(ends.values())) or any(
            ends.get(partition, 0) == 0 for partition in self._next_offsets
        )
        if lost:
            # Empty, so nothing is out of order; only a topic auto-created with the broker's default
            # partitions needs making again.
            await self._republish_all(
                f"topic is empty after {position} events were published",
                recreate=len(ends) != self.partitions,
            )
        return lost

    def _offsets_went_back(self, acked: list[RecordMetadata]) -> bool:
        went_back = False
        for metadata in acked:
            if metadata.offset < self._next_offsets.get(metadata.partition, 0):
                went_back = True
            self._next_offsets[metadata.partition] = metadata.offset + 1
        return went_back

    async def _republish_all(self, why: str, *, recreate: bool) -> None:
        log.warning("relay_republishing", topic=self.topic, reason=why, recreate=recreate)
        if recreate:
            # What the topic holds arrived out of order, or it has the wrong partitions: start it
            # again, so that it holds every event in sequence.
            await kafka.recreate_topic(self.bootstrap, self.topic, self.partitions)
        self._published_through = None
        await self.store.pool.execute(
            "UPDATE relay_position SET published_through = 0, updated_at = now() WHERE topic = $1", self.topic
        )
        self._next_offsets = {}
        await self._disconnect()

    async def _connect(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        await kafka.ensure_topics(self.bootstrap, [self.topic], self.partitions)
        await self.store.pool.execute(
            "INSERT INTO relay_position (topic) VALUES ($1) ON CONFLICT DO NOTHING", self.topic
        )
        reader = kafka.offsets_reader(self.bootstrap)
        await reader.start()
        self._reader = reader
        producer = AIOKafkaProducer(
            # infra.kafka.producer's settings, with bigger batches
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=False,
            linger_ms=2,
            max_batch_size=_PRODUCE_BATCH_BYTES,
            request_timeout_ms=10_000,
            retry_backoff_ms=200,
            **kafka.client_options(),
        )
        await producer.start()
        self._producer = producer
        self.connected = True
        log.info("relay_connected", topic=self.topic)
        return producer

    async def _disconnect(self) -> None:
        self.connected = False
        self._partition_of, self._partitions = {}, []  # the topic may have other partitions next time
        self._published_through = None
        producer, self._producer = self._producer, None
        reader, self._reader = self._reader, None
        for client in (producer, reader):
            if client is not None:
                with suppress(Exception):
                    await asyncio.wait_for(client.stop(), 5)
