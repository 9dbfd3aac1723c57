"""The outbox relay and the idempotent inbox: nothing lost, nothing applied twice."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import asyncpg
import pytest
from aiokafka.partitioner import DefaultPartitioner

from events import Actor, Envelope
from events.topics import dlq
from infra import kafka
from infra.embedded import TansuBroker, free_port
from infra.eventstore import Context, EventStore
from infra.inbox import Delivery, InboxConsumer, envelope_order, parse_envelope
from infra.relay import OutboxRelay
from tests.support.events import CounterIncremented, NoteRecorded
from tests.support.waiting import eventually, publish_raw, read_topic

CTX = Context(actor=Actor.system("test"))


async def _record(conn: asyncpg.Connection, envelope: Envelope, _: Delivery) -> None:
    await conn.execute(
        "INSERT INTO applied (event_id, stream_id, stream_version) VALUES ($1, $2, $3)",
        envelope.event_id,
        envelope.stream_id,
        envelope.stream_version,
    )


@asynccontextmanager
async def consuming(
    store: EventStore, bootstrap: str, topic: str, order_patience: float = 60.0
) -> AsyncIterator[InboxConsumer[Envelope]]:
    await store.pool.execute(
        "CREATE TABLE IF NOT EXISTS applied"
        " (n serial PRIMARY KEY, event_id uuid, stream_id text, stream_version int)"
    )
    consumer = InboxConsumer(
        name="recorder",
        topic=topic,
        pool=store.pool,
        apply=_record,
        parse=parse_envelope,
        message_id=lambda e: str(e.event_id),
        order=envelope_order,
        order_patience=order_patience,
    )
    broker = kafka.broker(bootstrap)
    consumer.subscribe(broker, group_id=f"{topic}.recorder")
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()


@asynccontextmanager
async def relaying(store: EventStore, bootstrap: str, topic: str) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(store, bootstrap, topic, partitions=3, batch_size=40, idle_wait=0.1)
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def append_round(store: EventStore, cases: list[str], round_: int) -> None:
    for case in cases:
        version = await store.stream_version(case)
        await store.append(
            case, version, [NoteRecorded(text=f"{case} r{round_}"), CounterIncremented(by=1)], CTX
        )


async def test_commands_succeed_while_the_broker_is_down_and_every_event_arrives_once_in_order(
    store: EventStore, topic_prefix: str
) -> None:
    broker = TansuBroker(free_port())
    broker.start()
    topic = f"{topic_prefix}leder.test.events"
    cases = [f"case-{i}" for i in range(12)]
    try:
        async with relaying(store, broker.bootstrap, topic), consuming(store, broker.bootstrap, topic):
            await append_round(store, cases, 1)
            await eventually(lambda: store.pool.fetchval("SELECT count(*) = 24 FROM applied"))

            broker.stop()
            for round_ in (2, 3, 4):  # the broker is away: commands still succeed
                await append_round(store, cases, round_)
            assert await store.last_sequence() == 96

            broker.start()  # a new, empty broker on the same address
            await eventually(lambda: store.pool.fetchval("SELECT count(*) >= 96 FROM applied"), timeout=60)

            records = await read_topic(broker.bootstrap, topic, at_least=96)
            # Per case, the topic holds the case's versions in order (first sighting of each).
            by_case: dict[str, list[int]] = {}
            for record in sorted(records, key=lambda r: (r.partition, r.offset)):
                envelope = Envelope.from_bytes(record.value)
                assert record.key == envelope.stream_id.encode()
                assert dict(record.headers)["event_type"] == envelope.event_type.encode()
                seen = by_case.setdefault(envelope.stream_id, [])
                if envelope.stream_version not in seen:
                    seen.append(envelope.stream_version)
            assert by_case == {case: list(range(1, 9)) for case in cases}

            # A duplicate put on the topic (as a relay retry would) changes nothing.
            await publish_raw(broker.bootstrap, topic, [(records[0].key, records[0].value)])
            await asyncio.sleep(1.0)
            rows = await store.pool.fetch("SELECT stream_id, stream_version FROM applied ORDER BY n")
            assert len(rows) == 96
            applied: dict[str, list[int]] = {}
            for row in rows:
                applied.setdefault(row["stream_id"], []).append(row["stream_version"])
            assert applied == {case: list(range(1, 9)) for case in cases}
    finally:
        broker.stop()


async def test_relay_publishes_the_canonical_envelope_with_headers(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    case_id = uuid4()
    [written] = await store.append(str(case_id), 0, [NoteRecorded(text="x")], CTX, case_id=case_id)
    await store.append("reviewer-1", 0, [NoteRecorded(text="y")], CTX, case_id=case_id)
    async with relaying(store, kafka_bootstrap, topic):
        record, other = sorted(await read_topic(kafka_bootstrap, topic, at_least=2), key=lambda r: r.key)
    assert record.value == written.canonical()
    # Keyed by stream: a case's own stream is its case id; another stream keeps its own order.
    assert record.key == str(case_id).encode()
    assert other.key == b"reviewer-1"
    headers = {k: v.decode() for k, v in record.headers}
    assert headers == {
        "event_type": "test.NoteRecorded",
        "schema_version": "2",
        "correlation_id": CTX.correlation_id,
    }
    position = await store.pool.fetchval(
        "SELECT published_through FROM relay_position WHERE topic = $1", topic
    )
    assert position == 2


def _envelope_json(event_type: str, data: dict[str, object], version: int = 1) -> bytes:
    return json.dumps(
        {
            "event_id": str(uuid4()),
            "event_type": event_type,
            "schema_version": version,
            "stream_id": f"s-{uuid4()}",
            "case_id": None,
            "stream_version": 1,
            "source": "test",
            "source_sequence": 1,
            "occurred_at": "2026-01-01T00:00:00Z",
            "recorded_at": "2026-01-01T00:00:00Z",
            "actor": {"kind": "system", "id": "t"},
            "correlation_id": "c",
            "data": data,
        }
    ).encode()


async def test_bad_messages_go_to_the_dlq_with_reasons_and_good_ones_after_them_are_handled(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    await kafka.ensure_topics(kafka_bootstrap, [topic, dlq(topic)], partitions=1)
    bad = [
        b"\x00not json at all",
        _envelope_json("test.NoSuchEvent", {}),
        _envelope_json("test.NoteRecorded", {"text": "x" * 500, "author": "a"}, version=2),
        _envelope_json("test.CounterIncremented", {"by": 0}),
        b'{"event_id": "not-a-uuid"}',
    ]
    good = _envelope_json("test.NoteRecorded", {"note": "an old version 1 note"}, version=1)
    async with consuming(store, kafka_bootstrap, topic):
        await publish_raw(kafka_bootstrap, topic, [(b"k", value) for value in [*bad, good]])
        dead = await read_topic(kafka_bootstrap, dlq(topic), at_least=len(bad))
        await eventually(lambda: store.pool.fetchval("SELECT count(*) = 1 FROM applied"))

    assert [r.value for r in dead] == bad  # the original bytes, in order
    reasons = [json.loads(dict(r.headers)["dlq_reason"]) for r in dead]
    assert reasons[0][0]["type"] == "json_invalid"
    assert reasons[1][0] == {
        "field": "event_type",
        "type": "unknown_event_type",
        "message": "unknown event type 'test.NoSuchEvent' version 1",
    }
    assert reasons[2][0]["field"] == "text" and "200" in reasons[2][0]["message"]
    assert reasons[3][0]["field"] == "by"
    assert {r["field"] for r in reasons[4]} >= {"event_id", "event_type", "data"}
    assert all(dict(r.headers)["original_topic"] == topic.encode() for r in dead)
    assert await store.pool.fetchval("SELECT count(*) FROM inbox") == 1


@pytest.mark.parametrize("copies", [2, 5])
async def test_redelivered_messages_change_nothing(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str, copies: int
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    values = [_envelope_json("test.CounterIncremented", {"by": i + 1}) for i in range(3)]
    async with consuming(store, kafka_bootstrap, topic):
        await publish_raw(kafka_bootstrap, topic, [(b"k", v) for v in values * copies])
        await read_topic(kafka_bootstrap, topic, at_least=3 * copies)
        await eventually(lambda: store.pool.fetchval("SELECT count(*) = 3 FROM applied"))
        await asyncio.sleep(0.5)
    assert await store.pool.fetchval("SELECT count(*) FROM applied") == 3


async def test_an_event_ahead_of_its_stream_waits_then_is_set_aside_and_the_partition_flows_on(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    await kafka.ensure_topics(kafka_bootstrap, [topic, dlq(topic)], partitions=1)
    stream = f"s-{uuid4()}"
    first, second = (
        json.loads(_envelope_json("test.CounterIncremented", {"by": n}))
        | {"stream_id": stream, "stream_version": n}
        for n in (1, 2)
    )
    async with consuming(store, kafka_bootstrap, topic, order_patience=1.0):
        # Version 2 before version 1 in the log: it cannot be applied first, so after waiting it goes
        # to the DLQ; version 1 and a later copy of version 2 are applied, in order.
        await publish_raw(
            kafka_bootstrap,
            topic,
            [(stream.encode(), json.dumps(m).encode()) for m in (second, first, second)],
        )
        await eventually(lambda: store.pool.fetchval("SELECT count(*) = 2 FROM applied"))
        [dead] = await read_topic(kafka_bootstrap, dlq(topic), at_least=1)
    rows = await store.pool.fetch("SELECT stream_version FROM applied ORDER BY n")
    assert [r["stream_version"] for r in rows] == [1, 2]
    assert json.loads(dict(dead.headers)["dlq_reason"])[0]["type"] == "out_of_order"


async def test_a_fenced_relay_publishes_nothing_until_the_fence_is_lifted_then_everything_in_order(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    reason: list[str | None] = ["restored"]
    relay = OutboxRelay(
        store, kafka_bootstrap, topic, partitions=1, batch_size=4, idle_wait=0.1, fence=lambda: reason[0]
    )
    for version in range(1, 11):
        await store.append("case-1", version - 1, [CounterIncremented(by=version)], CTX)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _true(relay.fenced_because == "restored"))
        await asyncio.sleep(1.0)  # ten of its waits: it asked again and still published nothing
        assert relay.fenced_because == "restored"
        assert await store.pool.fetchval("SELECT published_through FROM relay_position") in (None, 0)
        await kafka.ensure_topics(kafka_bootstrap, [topic], partitions=1)
        assert not any((await _end_offsets(kafka_bootstrap, topic)).values())

        reason[0] = None
        records = await read_topic(kafka_bootstrap, topic, at_least=10)
        assert relay.fenced_because is None
        versions = [
            Envelope.from_bytes(r.value).stream_version for r in sorted(records, key=lambda r: r.offset)
        ]
        assert versions == list(range(1, 11))
        await eventually(
            lambda: store.pool.fetchval(
                "SELECT published_through = 10 FROM relay_position WHERE topic = $1", topic
            )
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _true(value: bool) -> bool:
    return value


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    reader = kafka.offsets_reader(bootstrap)
    await reader.start()
    try:
        return await kafka.end_offsets(reader, topic)
    finally:
        await reader.stop()


async def test_each_stream_goes_to_the_partition_the_clients_default_partitioner_gives_its_key(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The relay names each record's partition itself (computed once per stream): it must be the one
    the client would choose, or a stream's events published before and after an upgrade would part."""
    topic = f"{topic_prefix}leder.test.events"
    cases = [f"case-{i}" for i in range(30)]
    await append_round(store, cases, 1)
    # Made first: the reader below could otherwise create it, with the broker's default partitions.
    await kafka.ensure_topics(kafka_bootstrap, [topic], partitions=3)
    async with relaying(store, kafka_bootstrap, topic):
        records = await read_topic(kafka_bootstrap, topic, at_least=60)
    choose = DefaultPartitioner()
    assert {r.key: r.partition for r in records} == {
        case.encode(): choose(case.encode(), [0, 1, 2], [0, 1, 2]) for case in cases
    }
    assert len({r.partition for r in records}) == 3
