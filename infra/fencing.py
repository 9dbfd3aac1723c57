"""A store restored from a backup is fenced until it is recovered (issue 20).

A service's database restored from a backup has lost the events recorded after the backup, but the rest
of the system has them: its topic holds every event the relay published. Left alone, the restored store
would hand out the lost sequence numbers and stream versions again, to other events, and publish them:
history forks. So each store knows:

- its identity (table `store_identity`): the database's OID (another one after pg_dump and pg_restore
  into a new database), the cluster's system identifier and timeline (another timeline after a
  point-in-time restore, another identifier after a file-level copy into a new cluster). A difference at
  start-up begins a new store epoch, which every envelope recorded from then on carries, and leaves the
  store unverified: it takes no command until it has been compared with its topic.
- its high-water mark against its topic's: the last record of each partition of the service's topic
  (each carries its source_sequence and event id). A store whose highest sequence is below the topic's,
  or whose event at the sequence of a partition's last record is not that record, is fenced.
- its high-water mark against the audit log's, which the audit service publishes on its own topic
  (events.audit.LogHighWaterMarked): the service's topic may have forgotten (a broker rebuilt empty,
  records past their retention) what the audit log still holds.

A fenced store takes no command (an append raises StoreFenced: 503 problem details at the HTTP edge, a
transient failure to a consumer, which tries again later), its relay publishes nothing and its consumers
do not start (infra.service), and /readyz says why. `leder recover <service>` appends the missing events
from the topic (leder.recovery); the running service compares again every few seconds while fenced, and
the fence lifts once the store holds what its topic holds.

The comparison runs at every start, not only when the identity changed: a cold copy of a data directory
put back changes nothing PostgreSQL reports.
"""

import asyncio
import json
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from events.audit import LogHighWaterMarked
from infra import kafka
from infra.eventstore import EventStore, StoreFenced
from infra.inbox import Unprocessable
from infra.logging import get_logger
from infra.signing import EventVerifier

log = get_logger(__name__)

__all__ = [
    "Identity",
    "StoreFenced",
    "StoreGuard",
    "audit_high_water",
    "compare_with_audit",
    "compare_with_topic",
    "open_identity",
    "topic_tail",
]


@dataclass(frozen=True)
class Identity:
    """What PostgreSQL says this database is."""

    database_oid: int
    system_identifier: str | None
    timeline_id: int | None

    def differences(self, recorded: "Identity") -> list[str]:
        changed = []
        if self.database_oid != recorded.database_oid:
            changed.append(f"database OID {recorded.database_oid} -> {self.database_oid}")
        # Without the privilege to read pg_control (None), only the OID is compared.
        if None not in (self.system_identifier, recorded.system_identifier) and (
            self.system_identifier != recorded.system_identifier
        ):
            changed.append(f"system identifier {recorded.system_identifier} -> {self.system_identifier}")
        if None not in (self.timeline_id, recorded.timeline_id) and self.timeline_id != recorded.timeline_id:
            changed.append(f"timeline {recorded.timeline_id} -> {self.timeline_id}")
        return changed


async def current_identity(conn: Any) -> Identity:
    oid: int = await conn.fetchval("SELECT oid::bigint FROM pg_database WHERE datname = current_database()")
    system_identifier: str | None = None
    timeline: int | None = None
    try:
        async with conn.transaction():  # a savepoint, when the caller's transaction is open
            row = await conn.fetchrow(
                "SELECT (pg_control_system()).system_identifier::text AS system_identifier,"
                " (pg_control_checkpoint()).timeline_id AS timeline_id"
            )
        system_identifier, timeline = row["system_identifier"], row["timeline_id"]
    except asyncpg.InsufficientPrivilegeError:
        log.warning("store_identity_without_pg_control", why="no privilege to read pg_control")
    return Identity(oid, system_identifier, timeline)


@dataclass(frozen=True)
class Opened:
    epoch: str
    verified: bool
    changed: str | None  # what differed from the recorded identity, if anything


async def open_identity(pool: asyncpg.Pool) -> Opened:
    """Compare the database with the identity the store recorded. A new store records its identity and
    a first epoch; a changed one records the new identity and a new epoch, unverified."""
    async with pool.acquire() as conn, conn.transaction():
        current = await current_identity(conn)
        row = await conn.fetchrow("SELECT * FROM store_identity FOR UPDATE")
        if row is None:
            epoch = str(uuid4())
            await conn.execute(
                "INSERT INTO store_identity"
                " (epoch, database_oid, system_identifier, timeline_id, verified_at)"
                " VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING",
                epoch,
                current.database_oid,
                current.system_identifier,
                current.timeline_id,
            )
            return Opened(epoch, True, None)
        recorded = Identity(row["database_oid"], row["system_identifier"], row["timeline_id"])
        changed = current.differences(recorded)
        if not changed:
            return Opened(row["epoch"], row["verified_at"] is not None, row["changed"])
        epoch = str(uuid4())
        why = ", ".join(changed)
        await conn.execute(
            "UPDATE store_identity SET epoch = $1, database_oid = $2, system_identifier = $3,"
            " timeline_id = $4, recorded_at = now(), verified_at = NULL, changed = $5",
            epoch,
            current.database_oid,
            current.system_identifier,
            current.timeline_id,
            why,
        )
        log.error("store_restored", epoch=epoch, previous_epoch=row["epoch"], changed=why)
        return Opened(epoch, False, why)


async def mark_verified(conn: Any) -> None:
    """The store holds what its topic holds: it may take commands again, even before a comparison."""
    await conn.execute("UPDATE store_identity SET verified_at = now() WHERE verified_at IS NULL")


async def topic_tail(
    bootstrap: str, topic: str, verifier: EventVerifier | None = None, *, timeout: float = 15.0
) -> dict[int, bytes]:
    """The last record of each partition of `topic` that has any (an absent topic has none). With
    `verifier`, a last record not signed by the topic's service is passed over (logged): a forger's
    record must not fence a store.

    Reads from one before each partition's end offset to whatever comes after it: the embedded broker
    may report an end below the true one, never zero for a partition holding records."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **kafka.client_options()
    )
    await reader.start()
    try:
        ends = await kafka.end_offsets(reader, topic)
        partitions = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
        if not partitions:
            return {}
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, ends[tp.partition] - 1)
        last: dict[int, bytes] = {}
        seen: set[int] = set()
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            batch = await reader.getmany(timeout_ms=300)
            for tp, records in batch.items():
                for record in records:
                    if record.value is not None and _genuine(verifier, topic, record.value, record.headers):
                        last[tp.partition] = record.value
                    seen.add(tp.partition)
            if not batch and len(seen) == len(partitions):
                return last
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{topic}: the last records of {len(partitions)} partitions not read")
    finally:
        with suppress(Exception):
            await reader.stop()


async def audit_high_water(
    bootstrap: str, topic: str, verifier: EventVerifier | None = None, *, timeout: float = 15.0
) -> dict[str, int]:
    """The latest high-water marks the audit log published on its topic `topic`
    (events.audit.LogHighWaterMarked): per source service, the highest sequence the log holds. {} if
    it published none. Each partition is read backwards from its end, in widening windows, until such a
    record turns up; one not signed by the audit service is passed over, as in `topic_tail`."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **kafka.client_options()
    )
    await reader.start()
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        latest: tuple[int, dict[str, int]] | None = None
        for partition, end in (await kafka.end_offsets(reader, topic)).items():
            found = await _last_marks(reader, TopicPartition(topic, partition), end, verifier, deadline)
            if found is not None and (latest is None or found[0] > latest[0]):
                latest = found
        return latest[1] if latest is not None else {}
    finally:
        with suppress(Exception):
            await reader.stop()


async def _last_marks(
    reader: AIOKafkaConsumer,
    tp: TopicPartition,
    end: int,
    verifier: EventVerifier | None,
    deadline: float,
    window: int = 256,
) -> tuple[int, dict[str, int]] | None:
    """The audit's sequence and marks of the last LogHighWaterMarked in one partition, or None."""
    if end <= 0:
        return None
    reader.assign([tp])
    low, upto = max(0, end - window), None  # the first window: to whatever comes after the reported end
    while True:
        found: tuple[int, dict[str, int]] | None = None
        for record in await _records(reader, tp, low, upto, deadline):
            headers = {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}
            if (
                record.value is not None
                and headers.get("event_type") == LogHighWaterMarked.event_type
                and _genuine(verifier, tp.topic, record.value, record.headers)
            ):
                document = json.loads(record.value)
                found = (int(document["source_sequence"]), dict(document["data"]["highest"]))
        if found is not None or low == 0:
            return found
        window *= 4
        low, upto = max(0, low - window), low


async def _records(
    reader: AIOKafkaConsumer, tp: TopicPartition, low: int, upto: int | None, deadline: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """The partition's records from offset `low` to `upto` (exclusive), or to the last there is."""
    reader.seek(tp, low)
    records: list[ConsumerRecord[bytes, bytes]] = []
    while True:
        batch = (await reader.getmany(tp, timeout_ms=300)).get(tp, [])
        records += [r for r in batch if upto is None or r.offset < upto]
        if upto is None and not batch and records:
            return records
        if upto is not None and batch and batch[-1].offset >= upto - 1:
            return records
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{tp.topic}: the audit log's high-water marks not read")


async def compare_with_audit(store: EventStore, marks: dict[str, int]) -> str | None:
    """Why the store is fenced, given the audit log's high-water marks; None when it holds what the
    audit log has seen of it."""
    highest = marks.get(store.source)
    if highest is None:
        return None
    own = await store.last_sequence()
    if own >= highest:
        return None
    return (
        f"the {store.source} store is behind the audit log: it holds events to sequence {own}, the audit"
        f" log to {highest} (restored from a backup?); run `leder recover {store.source}`"
    )


def _genuine(verifier: EventVerifier | None, topic: str, value: bytes, headers: Any) -> bool:
    if verifier is None:
        return True
    try:
        verifier.check(topic, value, {k: (v or b"").decode(errors="replace") for k, v in headers or ()})
    except Unprocessable as refused:
        log.error("topic_record_not_genuine", topic=topic, reasons=refused.reasons)
        return False
    return True


async def compare_with_topic(store: EventStore, tail: dict[int, bytes], topic: str) -> str | None:
    """Why the store is fenced, given its topic's last records; None when it holds what they say."""
    if not tail:
        return None
    claims: list[tuple[int, str, bytes]] = []
    for value in tail.values():
        document = json.loads(value)
        claims.append((int(document["source_sequence"]), str(document["event_id"]), value))
    highest = max(sequence for sequence, _, _ in claims)
    own = await store.last_sequence()
    if own < highest:
        return (
            f"the {store.source} store is behind its topic {topic}: it holds events to sequence {own},"
            f" the topic to {highest} (restored from a backup?); run `leder recover {store.source}`"
        )
    for sequence, event_id, value in sorted(claims):
        [held] = await store.read_after(sequence - 1, 1)
        if held.envelope.encode() != value:
            held_id = json.loads(held.envelope)["event_id"]
            return (
                f"the {store.source} store's event at sequence {sequence} ({held_id}) is not the one its"
                f" topic {topic} holds there ({event_id}): its history forked; recover it by hand"
            )
    return None


class StoreGuard:
    """A running service's fence: what it found at start-up and each comparison since."""

    def __init__(
        self,
        store: EventStore,
        bootstrap: str,
        topic: str,
        verifier: EventVerifier | None = None,
        *,
        audit_topic: str | None = None,
        recheck_seconds: float = 3.0,
    ) -> None:
        self.store = store
        # Where the audit log publishes how far it has logged each service (none for the audit service
        # itself, whose own log that is).
        self.audit_topic = audit_topic if audit_topic != topic else None
        self.verifier = verifier
        self.bootstrap = bootstrap
        self.topic = topic
        self.recheck_seconds = recheck_seconds
        self.unverified: str | None = None
        self.behind: str | None = None
        self.compared = False
        # Set once the store was compared with its topic and is not fenced: consumers may start.
        self.clear = asyncio.Event()

    async def open(self) -> None:
        opened = await open_identity(self.store.pool)
        self.store.epoch = opened.epoch
        if not opened.verified:
            self.unverified = (
                f"the {self.store.source} store's database is not the one it was recorded in"
                f" ({opened.changed or 'restored'}): restored from a backup? It takes nothing until it"
                f" has been compared with its topic {self.topic} (and recovered if behind:"
                f" `leder recover {self.store.source}`)"
            )
        self._apply()

    def reason(self) -> str | None:
        """Why the store takes no command, or None."""
        return self.behind or self.unverified

    def publish_fence(self) -> str | None:
        """Why the relay may not publish: fenced, or not yet compared with the topic (its last records
        might be events this store no longer has)."""
        if not self.compared:
            return self.reason() or f"the {self.store.source} store is not yet compared with {self.topic}"
        return self.reason()

    def readiness(self) -> dict[str, Any]:
        return {"ok": self.reason() is None, "compared": self.compared, "reason": self.reason()}

    def _apply(self) -> None:
        self.store.fenced_because = self.reason()
        if self.compared and self.reason() is None:
            self.clear.set()
        else:
            self.clear.clear()

    async def check(self) -> None:
        """Compare the store with its topic once; raises if the broker or the database cannot say."""
        tail = await topic_tail(self.bootstrap, self.topic, self.verifier)
        behind = await compare_with_topic(self.store, tail, self.topic)
        if behind is None and self.audit_topic is not None:
            marks = await audit_high_water(self.bootstrap, self.audit_topic, self.verifier)
            behind = await compare_with_audit(self.store, marks)
        if behind is None and self.unverified is not None:
            async with self.store.pool.acquire() as conn:
                await mark_verified(conn)
            log.warning("store_verified", topic=self.topic, was=self.unverified)
            self.unverified = None
        if behind != self.behind:
            (log.error if behind else log.warning)(
                "store_fenced" if behind else "store_fence_lifted", topic=self.topic, reason=behind
            )
        self.behind = behind
        self.compared = True
        self._apply()

    async def run(self) -> None:
        """Compare at start-up, and again every few seconds while fenced (until `leder recover` has
        brought the store back); ends once the store is clear."""
        delay = 0.5
        while True:
            try:
                await self.check()
                delay = self.recheck_seconds
            except (KafkaError, OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("store_comparison_failed", topic=self.topic, error=repr(exc), retry_in=delay)
                delay = min(delay * 2, 10.0)
            except Exception:  # whatever it is, the guard tries again: the store stays as it was
                log.exception("store_comparison_failed", topic=self.topic, retry_in=delay)
                delay = min(delay * 2, 10.0)
            if self.clear.is_set():
                return
            await asyncio.sleep(delay)
