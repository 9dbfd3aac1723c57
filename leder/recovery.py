"""`leder recover <service>`: bring a store restored from a backup back to where the system is (issue 20).

The rest of the system holds every event the restored store lost: its relay published each one's
canonical bytes to the service's topic, signed. Recovery reads the topic, checks each record's signature
against the pinned keys, and puts the events after the store's last sequence back byte for byte, at their
own sequence numbers and stream versions (infra.eventstore.EventStore.restore), updating the store's
projections as an append does. In the same transaction:

- the inbox: every message each consumer had handled (its group's committed offset on the topic it
  consumes) is recorded as handled, with its stream's position, as the consumer recorded it before the
  restore lost it; so none is applied a second time, and a stream's next event does not wait for one
  the restored inbox no longer knows;
- the relay's mark moves to the last event put back (the topic has them already);
- the store is marked verified: the fence lifts (a running service notices within seconds).

What cannot come back from the log: a case's data key. The database held it, wrapped by the case's
key-encryption key in the key manager; the wrapping of a key made after the backup went with the
database, and nothing else holds it. Recovery names each such key: the personal details sealed under it
no longer open anywhere (as if shredded), although the case itself, its status and every event are back.
Events recorded but not yet published when the database was lost are not on the topic either: they are
lost, and the consumed messages that caused them count as handled.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from infra import kafka
from infra.db import Connection
from infra.eventstore import EventStore
from infra.fencing import mark_verified
from infra.inbox import InboxConsumer, Unprocessable, content_hash
from infra.logging import get_logger
from infra.signing import EventVerifier

log = get_logger(__name__)


class RecoveryRefused(Exception):
    """The store cannot be recovered from the log as it is: nothing was written."""


@dataclass
class Recovered:
    service: str
    topic: str
    held_before: int
    restored: list[int] = field(default_factory=list)  # the sequence numbers put back
    not_genuine: int = 0  # records on the topic not signed by the service, passed over
    handled: dict[str, int] = field(default_factory=dict)  # consumer -> messages marked handled
    lost_keys: list[str] = field(default_factory=list)  # data keys no longer anywhere

    def lines(self) -> list[str]:
        s = self.service
        out = []
        if not self.restored:
            out.append(f"{s}: the store holds every event of {self.topic} (to sequence {self.held_before})")
        else:
            out.append(
                f"{s}: put back {len(self.restored)} events"
                f" (sequences {self.restored[0]}-{self.restored[-1]}) from {self.topic}, byte for byte,"
                f" each signed by the {s} service's pinned key; the store held events to sequence"
                f" {self.held_before}; its projections are updated"
            )
        if self.not_genuine:
            out.append(f"{s}: passed over {self.not_genuine} records of {self.topic} not signed by {s}")
        for consumer, count in sorted(self.handled.items()):
            out.append(f"{s}: consumer {consumer}: {count} handled messages recorded in its inbox again")
        if self.lost_keys:
            out.append(
                f"{s}: NOT RECOVERED: {len(self.lost_keys)} data keys were made after the backup and lived"
                " only in the lost database (wrapped by their key-encryption keys, which the key manager"
                " still holds, but the wrapped keys themselves are gone): the personal details sealed under"
                " them cannot be opened anywhere, as if shredded. Their cases, statuses and events are back."
                f" Keys: {', '.join(self.lost_keys)}"
            )
        out.append(f"{s}: store verified: the fence is lifted (a running service notices within seconds)")
        return out


async def read_topic(
    bootstrap: str, topic: str, until: dict[int, int] | None = None, since: dict[int, int] | None = None
) -> list[ConsumerRecord]:
    """The records of `topic` from each partition's offset in `since` (else its beginning) up to its
    offset in `until` (else its end). Reads until nothing more comes and every partition is past the end
    offset the broker reported: the embedded broker may report ends low, never high."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **kafka.client_options()
    )
    await reader.start()
    try:
        ends = await kafka.end_offsets(reader, topic)
        if until is not None:
            ends = {p: min(end, until.get(p, 0)) for p, end in ends.items()}
        starts = {p: (since or {}).get(p, 0) for p in ends}
        partitions = [TopicPartition(topic, p) for p, end in ends.items() if end > starts[p]]
        if not partitions:
            return []
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, starts[tp.partition])
        records: list[ConsumerRecord] = []
        while True:
            batch = await reader.getmany(timeout_ms=500, max_records=5000)
            for tp, part in batch.items():
                limit = until.get(tp.partition) if until is not None else None
                records += [r for r in part if limit is None or r.offset < limit]
            if not batch and all([await reader.position(tp) >= ends[tp.partition] for tp in partitions]):
                return records
    finally:
        await reader.stop()


def _headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: (v or b"").decode(errors="replace") for k, v in record.headers or ()}


def _genuine(verifier: EventVerifier, record: ConsumerRecord) -> bool:
    try:
        verifier.check(record.topic, record.value or b"", _headers(record))
    except Unprocessable:
        return False
    return True


async def lost_events(
    store: EventStore, records: Sequence[ConsumerRecord], verifier: EventVerifier, recovered: Recovered
) -> list[str]:
    """The events of the topic after the store's last sequence, in order; refused (RecoveryRefused) if the
    topic and the store disagree anywhere, or the topic lacks a sequence."""
    by_sequence: dict[int, bytes] = {}
    for record in records:
        if record.value is None or not _genuine(verifier, record):
            recovered.not_genuine += 1
            continue
        sequence = int(json.loads(record.value)["source_sequence"])
        seen = by_sequence.setdefault(sequence, record.value)
        if seen != record.value:  # the relay may publish an event again, never another at its place
            raise RecoveryRefused(f"{recovered.topic} holds two different events at sequence {sequence}")
    held = recovered.held_before
    for sequence in sorted(s for s in by_sequence if s <= held):
        [own] = await store.read_after(sequence - 1, 1)
        if own.envelope.encode() != by_sequence[sequence]:
            raise RecoveryRefused(
                f"the store's event at sequence {sequence} is not the one {recovered.topic} holds: the store"
                " recorded events of its own since the restore (its history forked); it cannot be"
                " recovered from the log alone"
            )
    missing = sorted(s for s in by_sequence if s > held)
    expected = list(range(held + 1, held + 1 + len(missing)))
    if missing != expected:
        gap = next(e for e, m in zip(expected, missing, strict=True) if e != m)
        raise RecoveryRefused(f"{recovered.topic} lacks the event at sequence {gap}: nothing was put back")
    return [by_sequence[s].decode() for s in missing]


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """How far a consumer group has committed on `topic`: everything before is handled."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=group_id, **kafka.client_options()
    )
    await reader.start()
    try:
        ends = await kafka.end_offsets(reader, topic)
        offsets = {}
        for partition in ends:
            committed = await reader.committed(TopicPartition(topic, partition))
            if committed:
                offsets[partition] = committed
        return offsets
    finally:
        await reader.stop()


async def mark_handled(
    conn: Connection, consumer: InboxConsumer[Any], records: Sequence[ConsumerRecord], verifier: EventVerifier
) -> int:
    """Record each of `records` (all handled by `consumer` before the database was lost) in the
    consumer's inbox as infra.inbox records a handled message: by message id, with its stream's position
    and the event's hash. A record the consumer refused (not genuine, not parseable) takes no place."""
    marked = 0
    checks = verifier.owner(consumer.topic) is not None
    for record in records:
        raw = record.value or b""
        if checks and not _genuine(verifier, record):
            continue
        try:
            message = consumer.parse(raw)
        except Exception:  # the consumer dead-lettered it: nothing to record
            continue
        message_id = consumer.message_id(message)
        if consumer.order is not None and (order := consumer.order(raw)) is not None:
            stream, version = order
            await conn.execute(
                "INSERT INTO inbox_streams (consumer, stream, last_version) VALUES ($1, $2, $3)"
                " ON CONFLICT (consumer, stream) DO UPDATE"
                " SET last_version = greatest(inbox_streams.last_version, EXCLUDED.last_version)",
                consumer.name,
                stream,
                version,
            )
            await conn.execute(
                "INSERT INTO inbox_versions (consumer, stream, stream_version, event_id, content_hash)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                consumer.name,
                stream,
                version,
                message_id,
                content_hash(raw),
            )
        added = await conn.fetchval(
            "INSERT INTO inbox (consumer, message_id, topic, kafka_partition, kafka_offset)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            consumer.name,
            message_id,
            record.topic,
            record.partition,
            record.offset,
        )
        marked += bool(added)
    return marked


async def inbox_positions(store: EventStore, consumer: InboxConsumer[Any]) -> dict[int, int]:
    """Per partition of the consumer's topic, the offset after the last message its (restored) inbox
    recorded: a partition's messages are handled in order, so every earlier one was handled (or set
    aside) before the backup."""
    rows = await store.pool.fetch(
        "SELECT kafka_partition, max(kafka_offset) + 1 AS next FROM inbox"
        " WHERE consumer = $1 AND topic = $2 GROUP BY kafka_partition",
        consumer.name,
        consumer.topic,
    )
    return {r["kafka_partition"]: r["next"] for r in rows}


def sealed_key_ids(value: Any) -> Iterator[str]:
    """The key ids of every sealed value (events.sealing.Sealed: key_id, nonce, ciphertext) in an event."""
    if isinstance(value, dict):
        if {"key_id", "nonce", "ciphertext"} <= value.keys() and isinstance(value["key_id"], str):
            yield value["key_id"]
        for item in value.values():
            yield from sealed_key_ids(item)
    elif isinstance(value, list):
        for item in value:
            yield from sealed_key_ids(item)


async def missing_keys(conn: Connection, texts: Sequence[str]) -> list[str]:
    """The data keys the events put back seal values under that the database no longer has (a key
    destroyed since is not missing: its row says so)."""
    wanted = sorted({k for text in texts for k in sealed_key_ids(json.loads(text)["data"])})
    if not wanted:
        return []
    present = {
        r["key_id"] for r in await conn.fetch("SELECT key_id FROM data_keys WHERE key_id = ANY($1)", wanted)
    }
    return [k for k in wanted if k not in present]


async def recover(
    store: EventStore,
    consumers: Sequence[tuple[InboxConsumer[Any], str]],
    bootstrap: str,
    topic: str,
    verifier: EventVerifier,
) -> Recovered:
    """Put back what `store` lost from `topic`; `consumers`: the service's consumers with their groups."""
    recovered = Recovered(store.source, topic, await store.last_sequence())
    texts = await lost_events(store, await read_topic(bootstrap, topic), verifier, recovered)
    handled: list[tuple[InboxConsumer[Any], list[ConsumerRecord]]] = []
    for consumer, group_id in consumers:
        until = await committed_offsets(bootstrap, group_id, consumer.topic)
        # What the restored inbox already holds was handled before the backup: read from past it.
        since = await inbox_positions(store, consumer)
        records = await read_topic(bootstrap, consumer.topic, until, since) if until else []
        handled.append((consumer, records))
    async with store.transaction() as conn:
        if texts:
            last = await store.restore(conn, texts)
            recovered.restored = list(range(recovered.held_before + 1, last + 1))
            await conn.execute(
                "UPDATE relay_position SET published_through = greatest(published_through, $2),"
                " updated_at = now() WHERE topic = $1",
                topic,
                last,
            )
        for consumer, records in handled:
            recovered.handled[consumer.name] = await mark_handled(conn, consumer, records, verifier)
        recovered.lost_keys = await missing_keys(conn, texts)
        await mark_verified(conn)
    log.warning(
        "store_recovered",
        service=store.source,
        restored=len(recovered.restored),
        handled=recovered.handled,
        lost_keys=len(recovered.lost_keys),
    )
    return recovered
