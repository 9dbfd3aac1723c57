"""Issue 16, item 4: consumers no input can stall.

A NUL on every topic a service consumes (each service's events topic, the partner topic and the
partner DLQ) is dead-lettered with a reason naming the field, once by each consuming group, and what
comes after it on the partition is applied: a whole case goes through and the audit log ends with
every event of every service. A message whose effects the database refuses is dead-lettered with the
database's reason after three tries; a consumer stuck on a message turns its service's /readyz false
until it is past; `leder audit reconcile` reports a bad record and logs the rest."""

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from events import Envelope
from events.topics import dlq, partner_topic, service_topic
from infra import db, kafka
from infra.eventstore import EventStore
from infra.inbox import Delivery, InboxConsumer
from infra.service import ServiceDefinition, open_store
from infra.settings import Settings, database_url_for
from services.allocation.app import definition as allocation
from services.audit.app import definition as audit
from services.audit.reconcile import BadRecord, reconcile
from services.governance.app import definition as governance
from services.notification.app import definition as notification_service
from services.review.app import definition as review
from tests.integration.audit.test_audit_lifecycle import Service, drive_a_case
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.signing import signed_headers
from tests.support.waiting import eventually, read_topic

DEFINITIONS: dict[str, ServiceDefinition] = {
    "notification": notification_service,
    "allocation": allocation,
    "review": review,
    "governance": governance,
    "audit": audit,
}
SOURCES = ("notification", "allocation", "review", "governance")
PARTITIONS = (0, 1)  # running_service makes every topic with two
NUL = "\u0000"

Headers = list[tuple[str, bytes]]


async def send(producer: AIOKafkaProducer, topic: str, value: bytes, *, partition: int, **kw: Any) -> int:
    """Publish as the topic's owner would (signed, on a service's topic); the record's offset."""
    headers: Headers = [*signed_headers(topic, value), *kw.pop("headers", [])]
    sent = await producer.send_and_wait(topic, value, partition=partition, headers=headers, **kw)
    return int(sent.offset)


def envelope_with_nul(source: str, where: str) -> bytes:
    """An envelope of `source`'s, well formed but for a NUL: in a note's text (`data.text`) or in the
    actor's id (`actor.id`, a token's sub). A stream and a sequence of its own, so that no real
    stream's order or sequence is touched."""
    now = datetime.now(UTC).isoformat()
    envelope: dict[str, Any] = {
        "event_id": str(uuid4()),
        "event_type": f"{source}.NoteAdded",
        "schema_version": 1,
        "stream_id": f"poison-{uuid4().hex}",
        "case_id": None,
        "stream_version": 1,
        "source": source,
        "source_sequence": 1_000_000_000,
        "occurred_at": now,
        "recorded_at": now,
        "actor": {"kind": "user", "id": "rae", "role": "reviewer"},
        "correlation_id": f"poison-{uuid4().hex}",
        "data": {"text": "spoke to the ward manager"},
    }
    if where == "data.text":
        envelope["data"]["text"] = f"spoke to{NUL}the ward manager"
    else:
        envelope["actor"]["id"] = f"r{NUL}ae"
    return json.dumps(envelope).encode()


def consumed(svc: dict[str, RunningService]) -> dict[str, dict[str, str]]:
    """Topic -> {consuming service: its consumer's name}, from the running services themselves, so
    that a consumer added later is covered (or this test fails until it is)."""
    found: dict[str, dict[str, str]] = {}
    for name, running in svc.items():
        for consumer in running.runtime.consumers:
            found.setdefault(consumer.topic, {})[name] = consumer.name
    return found


def headers_of(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def dead_letters(
    bootstrap: str, topic: str, expected: dict[tuple[int, int], str], groups: dict[str, str]
) -> None:
    """Each poison ((partition, offset) -> the field named) is in `topic`'s DLQ once per consuming
    group, with the reason naming the field."""
    wanted = {(at, group) for at in expected for group in groups.values()}

    def key(record: ConsumerRecord) -> tuple[tuple[int, int], str]:
        h = headers_of(record)
        return (int(h["original_partition"]), int(h["original_offset"])), h["dlq_group"]

    async def all_there() -> list[ConsumerRecord]:
        records = await read_to_end(bootstrap, dlq(topic))
        ours = [r for r in records if headers_of(r).get("original_topic") == topic and key(r) in wanted]
        return ours if {key(r) for r in ours} == wanted else []

    dead = await eventually(all_there, timeout=60, interval=0.5)
    assert Counter(key(r) for r in dead) == Counter(wanted), f"{topic}: each poison once per group"
    for record in dead:
        (at, _), h = key(record), headers_of(record)
        reasons = json.loads(h["dlq_reason"])
        assert [(r["field"], r["type"]) for r in reasons] == [(expected[at], "unstorable_text")], reasons
        assert "NUL" in reasons[0]["message"]


async def read_to_end(bootstrap: str, topic: str) -> list[ConsumerRecord]:
    """Every record on `topic` now."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"{topic}: no partitions"
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += batch
        return records
    finally:
        await consumer.stop()


@asynccontextmanager
async def five_services(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[dict[str, RunningService]]:
    urls = {name: database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}") for name in DEFINITIONS}
    for url in urls.values():
        await db.ensure_database(url)
    try:
        async with AsyncExitStack() as stack:
            svc = {
                name: await stack.enter_async_context(
                    running_service(definition, urls[name], kafka_bootstrap, topic_prefix)
                )
                for name, definition in DEFINITIONS.items()
            }
            yield svc
    finally:
        for url in urls.values():
            await db.drop_database(url)


async def test_a_nul_on_every_consumed_topic_stalls_nothing_and_the_audit_log_ends_complete(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    partner, partner_dlq = partner_topic(topic_prefix), dlq(partner_topic(topic_prefix))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        async with five_services(pg_server_url, kafka_bootstrap, topic_prefix) as svc:
            topics = consumed(svc)
            covered = {partner, partner_dlq, *(service_topic(s, topic_prefix) for s in SOURCES)}
            assert set(topics) == covered, f"consumed topics without a NUL case: {set(topics) - covered}"

            # On every partition of every consumed topic, before anything else: a NUL.
            expected: dict[str, dict[tuple[int, int], str]] = {}
            for source in SOURCES:
                topic = service_topic(source, topic_prefix)
                for partition in PARTITIONS:
                    for field in ("data.text", "actor.id"):
                        at = await send(
                            producer, topic, envelope_with_nul(source, field), partition=partition
                        )
                        expected.setdefault(topic, {})[(partition, at)] = field
            for partition in PARTITIONS:
                body = notification(**{"notifier.organisation": f"Southmead{NUL}Hospital"})
                at = await send(producer, partner, json.dumps(body).encode(), partition=partition)
                expected.setdefault(partner, {})[(partition, at)] = "notifier.organisation"
            # The partner DLQ takes whatever arrives (a rejected notification cannot be refused again):
            # a NUL in its bytes and in the headers it keeps is accounted for all the same.
            strange = f"not a notification{NUL}".encode()
            for partition in PARTITIONS:
                await send(
                    producer,
                    partner_dlq,
                    strange + bytes([partition]),
                    partition=partition,
                    headers=[("correlation_id", b"c\x00d"), ("dlq_reason", b'"a\x00b"')],
                )

            # Then a whole case, through every topic (notified on the partner topic).
            async def notify_on_the_topic(_: Service, body: dict[str, Any]) -> None:
                key = body["notification_id"].encode()
                await producer.send_and_wait(partner, json.dumps(body).encode(), key=key)

            moments = await drive_a_case(svc, notify_on_the_topic)

            for topic, poisons in expected.items():
                groups = {s: f"{topic_prefix}leder.{s}.{name}" for s, name in topics[topic].items()}
                await dead_letters(kafka_bootstrap, topic, poisons, groups)
            await the_log_is_complete(svc)
            await rejected_notifications_accounted(svc["audit"], strange, len(expected[partner]))
            for name, running in svc.items():
                ready = await running.client.get("/readyz")
                assert ready.status_code == 200, (name, ready.text)
                assert ready.json()["checks"]["consumers"] == {"ok": True, "stuck": []}
            history = await svc["audit"].client.get(
                f"/audit/cases/{moments['case_id']}/history", headers=svc["audit"].headers("ig_officer")
            )
            assert "review.ReviewSubmittedForQA" in {e["what"] for e in history.json()["entries"]}
    finally:
        await producer.stop()


async def the_log_is_complete(svc: dict[str, RunningService]) -> None:
    """Every event of every service is in the audit log, once, with the very bytes; no poison is."""
    pool = svc["audit"].runtime.pool

    async def everything_logged() -> bool:
        for source in SOURCES:
            last = await svc[source].runtime.store.last_sequence()
            logged = await pool.fetchval("SELECT count(*) FROM audit_log WHERE source = $1", source)
            if logged < last:
                return False
        return True

    await eventually(everything_logged, timeout=90, interval=0.5)
    for source in SOURCES:
        rows = await pool.fetch(
            "SELECT envelope FROM audit_log WHERE source = $1 ORDER BY source_sequence", source
        )
        assert [r["envelope"] for r in rows] == [
            e for _, e in await svc[source].runtime.store.read_all_raw(0, 10_000)
        ], source
    assert not await pool.fetchval("SELECT count(*) FROM audit_log WHERE stream_id LIKE 'poison-%'")


async def rejected_notifications_accounted(audit_svc: RunningService, strange: bytes, refused: int) -> None:
    """The audit service recorded each partner poison the notification service dead-lettered, and each
    strange record put on the DLQ (its NUL-bearing headers dropped, not fatal)."""
    pool = audit_svc.runtime.pool
    hashes = [hashlib.sha256(strange + bytes([p])).hexdigest() for p in PARTITIONS]

    async def recorded() -> list[dict[str, Any]]:
        rows = await pool.fetch(
            "SELECT envelope FROM audit_log WHERE event_type = 'audit.RejectedNotificationRecorded'"
        )
        found = [Envelope.from_bytes(r["envelope"]).data for r in rows]
        mine = [d for d in found if d["sha256"] in hashes]
        others = [d for d in found if d["sha256"] not in hashes and "unstorable_text" in d["reasons"]]
        return found if len(mine) == len(hashes) and len(others) >= refused else []

    found = await eventually(recorded, timeout=60, interval=0.5)
    assert {d["reasons"] for d in found if d["sha256"] in hashes} == {""}


# --- a message the database refuses, on the real database -------------------------------------------


async def test_a_message_the_database_refuses_is_dead_lettered_after_three_tries_and_the_next_applied(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The consumer here takes any text (no check at its door), so the NUL reaches PostgreSQL, which
    refuses it (22021): tried three times, then dead-lettered with the database's reason."""
    topic = f"{topic_prefix}leder.test.notes"
    await kafka.ensure_topics(kafka_bootstrap, [topic, dlq(topic)], partitions=1)
    await store.pool.execute("CREATE TABLE notes (n serial PRIMARY KEY, body text)")
    tries: Counter[str] = Counter()

    async def apply(conn: asyncpg.Connection, body: str, _: Delivery) -> None:
        tries[body] += 1
        await conn.execute("INSERT INTO notes (body) VALUES ($1)", body)

    consumer: InboxConsumer[str] = InboxConsumer(
        name="notes",
        topic=topic,
        pool=store.pool,
        apply=apply,
        parse=lambda raw: raw.decode(),
        message_id=lambda body: hashlib.sha256(body.encode()).hexdigest(),
    )
    broker = kafka.broker(kafka_bootstrap)
    consumer.subscribe(broker, group_id=f"{topic}.notes")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    await broker.start()
    try:
        for body in (f"a{NUL}b", "after it"):
            await producer.send_and_wait(topic, body.encode(), key=b"k")
        await eventually(lambda: store.pool.fetchval("SELECT count(*) = 1 FROM notes"), timeout=60)
        [dead] = await read_topic(kafka_bootstrap, dlq(topic), at_least=1)
    finally:
        await broker.stop()
        await producer.stop()
    assert await store.pool.fetchval("SELECT body FROM notes") == "after it"
    assert tries == {f"a{NUL}b": 3, "after it": 1}
    h = headers_of(dead)
    assert dead.value == f"a{NUL}b".encode()
    assert h["dlq_error_type"] == "CharacterNotInRepertoireError"
    [reason] = json.loads(h["dlq_reason"])
    assert reason["type"] == "database_refused" and reason["sqlstate"] == "22021", reason
    assert "0x00" in reason["message"], reason


# --- a stuck consumer and /readyz -------------------------------------------------------------------

FAIL_TRANSIENTLY = """
CREATE FUNCTION leder_test_busy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not serialize access (a test holds this consumer)'
        USING ERRCODE = 'serialization_failure';
END $$;
CREATE TRIGGER leder_test_busy BEFORE INSERT ON inbox FOR EACH ROW
    WHEN (NEW.consumer = 'partner-dlq') EXECUTE FUNCTION leder_test_busy();
"""


async def test_a_consumer_stuck_on_a_message_turns_readyz_false_until_it_is_past(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDER_CONSUMER_STUCK_SECONDS", "1")
    topic = dlq(partner_topic(topic_prefix))
    async with running_service(audit, database_url, kafka_bootstrap, topic_prefix) as svc:
        await eventually(lambda: _ready(svc), timeout=60)
        # The database refuses the consumer's every try as a transient failure (40001): tried without
        # limit, never dead-lettered.
        await svc.runtime.pool.execute(FAIL_TRANSIENTLY)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            sent = await producer.send_and_wait(topic, b"a rejected notification", partition=1)
        finally:
            await producer.stop()

        async def stuck() -> dict[str, Any] | None:
            answer = await svc.client.get("/readyz")
            return answer.json() if answer.status_code == 503 else None

        readiness = await eventually(stuck, timeout=60, interval=0.2)
        [on] = readiness["checks"]["consumers"]["stuck"]
        assert readiness["checks"]["consumers"]["ok"] is False
        assert (on["consumer"], on["topic"], on["partition"], on["offset"]) == (
            "partner-dlq",
            topic,
            1,
            sent.offset,
        )
        assert on["tries"] >= 2 and on["seconds"] >= 1
        assert on["last_error"].startswith("SerializationError (40001)"), on

        await svc.runtime.pool.execute("DROP TRIGGER leder_test_busy ON inbox")
        await eventually(lambda: _ready(svc), timeout=60, interval=0.2)
        digest = hashlib.sha256(b"a rejected notification").hexdigest()
        assert await svc.runtime.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE envelope::jsonb -> 'data' ->> 'sha256' = $1", digest
        )
        assert (
            await read_to_end(kafka_bootstrap, dlq(topic)) == []
        )  # a transient failure never sets the message aside


async def _ready(svc: RunningService) -> bool:
    return (await svc.client.get("/readyz")).status_code == 200


# --- reconcile --------------------------------------------------------------------------------------


def _feed_envelope(source: str, sequence: int, **changes: Any) -> str:
    now = datetime.now(UTC).isoformat()
    envelope: dict[str, Any] = {
        "event_id": str(uuid4()),
        "event_type": f"{source}.CaseRead",
        "schema_version": 1,
        "stream_id": f"s-{uuid4().hex}",
        "case_id": None,
        "stream_version": 1,
        "source": source,
        "source_sequence": sequence,
        "occurred_at": now,
        "recorded_at": now,
        "actor": {"kind": "user", "id": "lucy", "role": "lac"},
        "correlation_id": "c",
        "data": {"reason": "a case review"},
    } | changes
    return json.dumps(envelope)


async def test_reconcile_reports_each_bad_record_and_logs_every_other(database_url: str) -> None:
    settings = Settings(
        service="audit", database_url=database_url, kafka_bootstrap="", topic_prefix="", http_port=0
    )
    store = await open_store(audit, settings)
    feed = [
        _feed_envelope("review", 1),
        _feed_envelope("review", 2, data={"reason": f"a{NUL}b"}),  # text no database stores
        "{not json",
        _feed_envelope("review", 4),
        _feed_envelope("governance", 5),  # another service's event
        _feed_envelope("review", 6, actor={"kind": "user", "id": f"lu{NUL}cy"}),
        _feed_envelope("review", 7),
        _feed_envelope("review", 2**63),  # more than the log's bigint holds: the database refuses it
    ]

    async def fetch(source: str, after: int, limit: int) -> tuple[list[str], int]:
        served = feed if source == "review" else []
        start = next((i for i, raw in enumerate(served) if _sequence_at(served, i) > after), len(served))
        return served[start : start + limit], 2**63 if served else 0

    bad: list[BadRecord] = []
    try:
        filled = await reconcile(store, ["notification", "review"], fetch, batch=3, report=bad.append)
        logged = [
            r["source_sequence"]
            for r in await store.pool.fetch(
                "SELECT source_sequence FROM audit_log WHERE source = 'review' ORDER BY source_sequence"
            )
        ]
    finally:
        await store.pool.close()
    assert filled == {"notification": 0, "review": 3}
    assert logged == [1, 4, 7]
    assert [(b.source, b.source_sequence) for b in bad] == [
        ("review", 2),
        ("review", 3),
        ("review", 5),
        ("review", 6),
        ("review", 2**63),
    ]
    reasons = [b.describe() for b in bad]
    assert "data.reason" in reasons[0] and "NUL" in reasons[0]
    assert "Invalid JSON" in reasons[1]
    assert "source 'governance'" in reasons[2]
    assert "actor.id" in reasons[3]
    assert "the audit database refused it" in reasons[4]
    assert all(NUL not in r for r in reasons)


def _sequence_at(feed: list[str], index: int) -> int:
    """A record's place in the feed: its source_sequence, or (not JSON) the one after the one before."""
    try:
        return int(json.loads(feed[index])["source_sequence"])
    except ValueError:
        return _sequence_at(feed, index - 1) + 1
