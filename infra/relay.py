"""The outbox relay: publishes the service's events, in sequence order, to its topic.

The events table is the outbox. The relay remembers how far it has published, and moves that mark
only after the broker acknowledged, so a crash or a broker outage can repeat events (inboxes absorb
them) but never lose one. Only one relay per service publishes at a time (an advisory lock), so
several instances of a service can run.
"""

import asyncio
import json
from contextlib import suppress

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from infra import kafka
from infra.eventstore import NOTIFY_CHANNEL, EventStore
from infra.logging import get_logger

log = get_logger(__name__)
_RELAY_LOCK = 48_151_623


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
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.batch_size = batch_size
        self.idle_wait = idle_wait
        self._producer: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self.connected = False

    async def run(self) -> None:
        """Publish until cancelled, riding out broker and database outages."""
        backoff = 0.2
        while True:
            try:
                async with self.store.pool.acquire() as lock_conn:
                    if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", _RELAY_LOCK):
                        await asyncio.sleep(2)  # another instance publishes; stand by
                        continue
                    await lock_conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                    try:
                        await self._publish_forever()
                    finally:
                        with suppress(Exception):
                            await lock_conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                            await lock_conn.execute("SELECT pg_advisory_unlock($1)", _RELAY_LOCK)
            except asyncio.CancelledError:
                await self._close_producer()
                raise
            except (KafkaError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("relay_interrupted", topic=self.topic, error=repr(exc), retry_in=backoff)
                await self._close_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _publish_forever(self) -> None:
        while True:
            published = await self.publish_pending()
            if published < self.batch_size:
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.idle_wait)

    async def publish_pending(self) -> int:
        """One pass: publish the next batch after the mark; returns how many were published."""
        producer = await self._connect()
        position = await self._position()
        rows = await self.store.pool.fetch(
            "SELECT source_sequence, stream_id, case_id, event_type, schema_version, envelope"
            " FROM events WHERE source_sequence > $1 ORDER BY source_sequence LIMIT $2",
            position,
            self.batch_size,
        )
        if not rows:
            return 0
        futures = []
        for row in rows:
            envelope = row["envelope"]
            correlation_id = json.loads(envelope)["correlation_id"]
            key = str(row["case_id"]) if row["case_id"] else row["stream_id"]
            futures.append(
                await producer.send(
                    self.topic,
                    key=key.encode(),
                    value=envelope.encode(),
                    headers=[
                        ("event_type", row["event_type"].encode()),
                        ("schema_version", str(row["schema_version"]).encode()),
                        ("correlation_id", correlation_id.encode()),
                    ],
                )
            )
        await asyncio.gather(*futures)
        last = rows[-1]["source_sequence"]
        await self.store.pool.execute(
            "UPDATE relay_position SET published_through = $2, updated_at = now() WHERE topic = $1",
            self.topic,
            last,
        )
        log.debug("relay_published", topic=self.topic, count=len(rows), through=last)
        return len(rows)

    async def _position(self) -> int:
        position: int = await self.store.pool.fetchval(
            "SELECT published_through FROM relay_position WHERE topic = $1", self.topic
        )
        return position

    async def _connect(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        await kafka.ensure_topics(self.bootstrap, [self.topic], self.partitions)
        await self.store.pool.execute(
            "INSERT INTO relay_position (topic) VALUES ($1) ON CONFLICT DO NOTHING", self.topic
        )
        # Every published event left at least one record, so a topic holding fewer records than we
        # published has lost them (the in-memory broker restarted): publish everything again.
        held = await kafka.topic_record_count(self.bootstrap, self.topic)
        position = await self._position()
        if held < position:
            log.warning("relay_republishing", topic=self.topic, topic_records=held, published_through=position)
            await self.store.pool.execute(
                "UPDATE relay_position SET published_through = 0, updated_at = now() WHERE topic = $1",
                self.topic,
            )
        producer = kafka.producer(self.bootstrap)
        await producer.start()
        self._producer = producer
        self.connected = True
        log.info("relay_connected", topic=self.topic)
        return producer

    async def _close_producer(self) -> None:
        self.connected = False
        producer, self._producer = self._producer, None
        if producer is not None:
            with suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)
