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

- the data keys: a case's data key is not in the log. The database held it, wrapped by the case's
  key-encryption key (KEK), and the key manager keeps that wrapping too (its key backup, infra.keys
  `escrow`): every key the events put back seal values under that the restored `data_keys` lacks is
  taken from there, and checked by opening one of those values with it. A key whose KEK was destroyed
  was shredded on purpose: it stays so (its row says destroyed, so it is never made again; a row the
  backup holds as live, of a case shredded since, is marked destroyed too). A key the
  key manager kept no wrapping of (made by a version before the backup existed) is named as lost: the
  personal details sealed under it open nowhere, as if shredded, though its case and events are back.

Events recorded but not yet published when the database was lost are not on the topic either: they are
lost, and the consumed messages that caused them count as handled.
"""

import json
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from cryptography.exceptions import InvalidTag

from events.topics import service_topic
from infra import kafka
from infra.db import Connection
from infra.eventstore import EventStore
from infra.fencing import mark_verified
from infra.inbox import InboxConsumer, Unprocessable, delivery_of
from infra.keys import KeyDestroyed, KeyManagerError
from infra.logging import get_logger
from infra.sealing import DataKeys, Sealed, for_service, unseal
from infra.signing import KEY_ID_HEADER, SIGNATURE_HEADER, EventVerifier
from services.audit import keys as audit_keys
from services.audit import log as audit_log
from services.audit import order as audit_order
from services.audit import rebuild as rebuild_log

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
    restored_keys: list[str] = field(default_factory=list)  # data keys back from the key backup
    shredded_keys: list[str] = field(default_factory=list)  # their KEK destroyed: stay shredded
    lost_keys: dict[str, str] = field(default_factory=dict)  # data key -> why it could not come back
    notes: list[str] = field(default_factory=list)  # what a service's own recovery step did

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
        if self.restored_keys:
            out.append(
                f"{s}: restored {_keys(len(self.restored_keys))} made after the backup from the key"
                " manager's key backup (each checked by opening a value the events sealed under it):"
                f" {', '.join(self.restored_keys)}"
            )
        if self.shredded_keys:
            out.append(
                f"{s}: kept shredded: {_keys(len(self.shredded_keys))} whose key-encryption keys were"
                f" destroyed: {', '.join(self.shredded_keys)}"
            )
        if self.lost_keys:
            out.append(
                f"{s}: NOT RECOVERED: {_keys(len(self.lost_keys))} made after the backup, of which the"
                " key manager holds no usable backup: the personal details sealed under them cannot"
                " be opened anywhere, as if shredded. Their cases, statuses and events are back. Keys: "
                + "; ".join(f"{k} ({why})" for k, why in sorted(self.lost_keys.items()))
            )
        out += [f"{s}: {note}" for note in self.notes]
        out.append(f"{s}: store verified: the fence is lifted (a running service notices within seconds)")
        return out


def _keys(count: int) -> str:
    return f"{count} data key" if count == 1 else f"{count} data keys"


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
    consumer's inbox as handled (InboxConsumer.record_handled). A record the consumer refused (not
    genuine, not parseable) takes no place."""
    marked = 0
    checks = verifier.owner(consumer.topic) is not None
    for record in records:
        if checks and not _genuine(verifier, record):
            continue
        marked += await consumer.record_handled(conn, record.value or b"", delivery_of(record))
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


def sealed_values(value: Any) -> Iterator[Sealed]:
    """Every sealed value (events.sealing.Sealed: key_id, nonce, ciphertext) in an event's data."""
    if isinstance(value, dict):
        if {"key_id", "nonce", "ciphertext"} <= value.keys() and isinstance(value["key_id"], str):
            yield Sealed(key_id=value["key_id"], nonce=value["nonce"], ciphertext=value["ciphertext"])
        for item in value.values():
            yield from sealed_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from sealed_values(item)


def sealed_key_ids(value: Any) -> Iterator[str]:
    """The key ids of every sealed value in an event's data."""
    for sealed in sealed_values(value):
        yield sealed.key_id


async def missing_keys(conn: Connection, texts: Sequence[str]) -> dict[str, Sealed]:
    """The data keys the events put back seal values under that the database no longer has (a key
    destroyed since is not missing: its row says so), each with a value sealed under it."""
    wanted: dict[str, Sealed] = {}
    for text in texts:
        for sealed in sealed_values(json.loads(text)["data"]):
            wanted.setdefault(sealed.key_id, sealed)
    if not wanted:
        return {}
    present = {
        r["key_id"]
        for r in await conn.fetch("SELECT key_id FROM data_keys WHERE key_id = ANY($1)", sorted(wanted))
    }
    return {k: wanted[k] for k in sorted(wanted) if k not in present}


async def restore_keys(
    conn: Connection, keys: DataKeys, missing: dict[str, Sealed], recovered: Recovered
) -> None:
    """Each missing data key's row again, from the key manager's backup of its wrapping; a key whose KEK
    was destroyed gets the row a shredding leaves (destroyed, no wrapping), so it is never made again.
    RecoveryRefused if the key manager does not answer (nothing is written: run it again)."""
    if missing:
        await _same_key_manager(conn, keys)
    for key_id, sample in missing.items():
        name = keys.kek(key_id)
        try:
            wrapped = await keys.keys.escrowed(name)
        except KeyDestroyed:
            await conn.execute(
                "INSERT INTO data_keys (key_id, wrapped, destroyed_at) VALUES ($1, NULL, now())"
                " ON CONFLICT (key_id) DO NOTHING",
                key_id,
            )
            recovered.shredded_keys.append(key_id)
            continue
        except KeyManagerError as failed:
            raise RecoveryRefused(f"the key manager did not give the backup of {name}: {failed}") from failed
        if wrapped is None:
            recovered.lost_keys[key_id] = "no backup of its wrapping"
            continue
        try:
            # The wrapping must be of the key the events sealed under (AES-GCM checks it), not only
            # open under the KEK: an older backup of another key of the case would open too.
            unseal(await keys.keys.unwrap(name, wrapped), sample)
        except KeyDestroyed:  # destroyed since escrowed() answered
            await conn.execute(
                "INSERT INTO data_keys (key_id, wrapped, destroyed_at) VALUES ($1, NULL, now())"
                " ON CONFLICT (key_id) DO NOTHING",
                key_id,
            )
            recovered.shredded_keys.append(key_id)
            continue
        except (KeyManagerError, InvalidTag, ValueError) as wrong:
            recovered.lost_keys[key_id] = f"its backup does not open its values: {type(wrong).__name__}"
            continue
        await conn.execute(
            "INSERT INTO data_keys (key_id, wrapped) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING",
            key_id,
            wrapped,
        )
        recovered.restored_keys.append(key_id)


async def mark_shredded_since(
    conn: Connection, keys: DataKeys, texts: Sequence[str], recovered: Recovered
) -> None:
    """A case shredded after the backup: the restored row still holds a wrapping, which its destroyed
    KEK opens no more. The row is marked as the shredding had left it (destroyed, no wrapping), so no
    sweep or projection takes it for live. Looked at: the keys the events put back seal under, and
    their streams' (a case's key id is its stream's, and a shredding event seals nothing)."""
    candidates: set[str] = set()
    for text in texts:
        event = json.loads(text)
        candidates.add(str(event["stream_id"]))
        if event.get("case_id"):
            candidates.add(str(event["case_id"]))
        candidates.update(sealed_key_ids(event["data"]))
    rows = await conn.fetch(
        "SELECT key_id, wrapped FROM data_keys WHERE key_id = ANY($1) AND wrapped IS NOT NULL"
        " AND destroyed_at IS NULL ORDER BY key_id",
        sorted(candidates),
    )
    if rows:
        await _same_key_manager(conn, keys)
    for row in rows:
        try:
            await keys.keys.unwrap(keys.kek(row["key_id"]), row["wrapped"])
        except KeyDestroyed:
            await conn.execute(
                "UPDATE data_keys SET wrapped = NULL, destroyed_at = now() WHERE key_id = $1", row["key_id"]
            )
            recovered.shredded_keys.append(row["key_id"])
        except KeyManagerError as failed:
            raise RecoveryRefused(f"the key manager did not answer: {failed}") from failed


async def _same_key_manager(conn: Connection, keys: DataKeys, sample: int = 50) -> None:
    """Refuse a key manager that is not the one the restored database's keys were made with (another
    LEDER_KEY_DIR, another Vault): to it every KEK looks destroyed, and recovery would record every
    missing key as shredded, for good. Some live row of the backup must unwrap (a few may not: shredded
    since the backup)."""
    rows = await conn.fetch(
        "SELECT key_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL ORDER BY key_id LIMIT $1", sample
    )
    for row in rows:
        try:
            await keys.keys.unwrap(keys.kek(row["key_id"]), row["wrapped"])
            return
        except KeyDestroyed:
            continue
        except KeyManagerError as failed:
            raise RecoveryRefused(f"the key manager did not answer: {failed}") from failed
    if rows:
        raise RecoveryRefused(
            f"the key manager holds none of the key-encryption keys of the {len(rows)} live data keys"
            f" looked at in the restored database: is it the {keys.service} service's (LEDER_KEY_MANAGER,"
            " LEDER_KEY_DIR, LEDER_VAULT_ADDR)? Nothing was put back"
        )


# The service's own recovery step: given the events put back and the report, in the same transaction.
Rebuild = Callable[[Connection, list[str], Recovered], Awaitable[None]]


def audit_log_rebuild(bootstrap: str, prefix: str, verifier: EventVerifier) -> Rebuild:
    """The audit service's step: its log's entries after the restored log's last position up to the last
    published checkpoint logged again in the order the order log records (services.audit.order), each
    event's bytes from its source's topic (checked against its publisher's pinned key and the recorded
    hash), the tree checked against the published checkpoints, then the audit service's own lost events
    (services.audit.rebuild). RecoveryRefused if it cannot be: nothing is written."""

    async def step(conn: Connection, texts: list[str], recovered: Recovered) -> None:
        try:
            try:
                trust: audit_log.Trust | None = audit_log.configured_trust()
            except audit_keys.KeyMissing:
                trust = None
            published_to = audit_keys.checkpoint_log()
            ordered = audit_order.read(published_to) if published_to is not None else {}
            held = await audit_log.log_size(conn)
            entries = rebuild_log.wanted(ordered, held, rebuild_log.last_signed(trust))
            found: dict[UUID, rebuild_log.Found] = {}
            for text in texts:  # the audit service's own events, logged as it recorded them
                found[UUID(json.loads(text)["event_id"])] = rebuild_log.Found(text.encode())
            for source in sorted({entry.source for entry in entries} - {"audit"}):
                for record in await read_topic(bootstrap, service_topic(source, prefix)):
                    if record.value is None or not _genuine(verifier, record):
                        continue
                    headers = _headers(record)
                    signature, key_id = headers.get(SIGNATURE_HEADER), headers.get(KEY_ID_HEADER)
                    signed = (
                        audit_log.EventSignature(signature, key_id, record.topic)
                        if signature and key_id
                        else None
                    )
                    event_id = UUID(json.loads(record.value)["event_id"])
                    found[event_id] = rebuild_log.Found(record.value, signed)
            rebuilt = await rebuild_log.rebuild(conn, entries, found, texts, trust)
        except (rebuild_log.RebuildRefused, audit_order.OrderUnreadable) as refused:
            raise RecoveryRefused(f"the audit log: {refused}") from refused
        if rebuilt.entries:
            sources = ", ".join(f"{n} of {source}" for source, n in sorted(rebuilt.by_source.items()))
            recovered.notes.append(
                f"the audit log held {rebuilt.held_before} entries; logged {rebuilt.entries} again at"
                f" positions {rebuilt.held_before}-{rebuilt.held_before + rebuilt.entries - 1}, in the"
                f" order the order log records, each the bytes its source's topic holds ({sources})"
            )
        else:
            recovered.notes.append(f"the audit log held {rebuilt.held_before} entries; none to log again")
        if rebuilt.checked is None:
            recovered.notes.append(
                "NOT CHECKED against a signed checkpoint: none is published (LEDER_AUDIT_CHECKPOINT_LOG,"
                " LEDER_AUDIT_PUBLIC_KEY_FILE)"
            )
        else:
            recovered.notes.append(
                f"the rebuilt log matches every published checkpoint, the last of tree size {rebuilt.checked}"
            )
        if rebuilt.own_after:
            recovered.notes.append(
                f"logged after them {rebuilt.own_after} event{'s' if rebuilt.own_after > 1 else ''} of the"
                " audit service's own, recorded after the last checkpoint"
            )
        recovered.notes.append(
            "the other services' events logged after the last checkpoint are not in the log (their order"
            " was signed by no checkpoint): run `leder audit reconcile` to log them, as for any gap"
        )

    return step


async def recover(
    store: EventStore,
    consumers: Sequence[tuple[InboxConsumer[Any], str]],
    bootstrap: str,
    topic: str,
    verifier: EventVerifier,
    keys: DataKeys | None = None,
    rebuild: Rebuild | None = None,
) -> Recovered:
    """Put back what `store` lost from `topic`; `consumers`: the service's consumers with their groups;
    `keys`: the service's data keys (by default over the key manager of the environment); `rebuild`:
    the service's own step, given the events put back, in the same transaction (the audit log's)."""
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
        if rebuild is not None:
            await rebuild(conn, texts, recovered)
        for consumer, records in handled:
            recovered.handled[consumer.name] = await mark_handled(conn, consumer, records, verifier)
        data_keys = keys or for_service(store.source)
        await mark_shredded_since(conn, data_keys, texts, recovered)
        await restore_keys(conn, data_keys, await missing_keys(conn, texts), recovered)
        await mark_verified(conn)
    log.warning(
        "store_recovered",
        service=store.source,
        restored=len(recovered.restored),
        handled=recovered.handled,
        restored_keys=len(recovered.restored_keys),
        shredded_keys=len(recovered.shredded_keys),
        lost_keys=len(recovered.lost_keys),
    )
    return recovered
