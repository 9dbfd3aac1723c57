"""A batch's inbox bookkeeping is written at once (issue 18): the streams' last versions read together,
every message decided in Python, and the streams, versions and inbox rows written in one statement.
What the inbox promises stays as when each message recorded itself: each applied once and in order,
a redelivery (whole or in part) a quiet duplicate, a fork an alarm, an id twice in a batch applied
once."""

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from infra.db import Connection
from infra.eventstore import EventStore
from infra.inbox import Delivery, InboxConsumer, content_hash

TOPIC = "leder.test.batch"
Body = dict[str, Any]


class Broker:
    """What the inbox publishes dead letters through: kept here."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, body: bytes, **kwargs: Any) -> None:
        self.published.append({"body": body, **kwargs})


def message(event_id: str, stream: str | None, version: int = 0, text: str = "") -> bytes:
    return json.dumps({"id": event_id, "stream": stream, "version": version, "text": text}).encode()


def order(raw: bytes) -> tuple[str, int] | None:
    body = json.loads(raw)
    return None if body["stream"] is None else (f"src/{body['stream']}", body["version"])


def consumer(store: EventStore, applied: list[str], ordered: bool = True) -> InboxConsumer[dict[str, Any]]:
    async def apply(conn: asyncpg.Connection, body: dict[str, Any], _: Delivery) -> None:
        applied.append(body["id"])
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", body["id"])

    made: InboxConsumer[dict[str, Any]] = InboxConsumer(
        name="batch",
        topic=TOPIC,
        pool=store.pool,
        apply=apply,
        parse=json.loads,
        message_id=lambda body: body["id"],
        order=order if ordered else None,
    )
    made.broker = Broker()  # type: ignore[assignment]
    return made


def batch(*raws: bytes, first_offset: int = 0) -> list[tuple[bytes, Delivery]]:
    return [(raw, Delivery(TOPIC, 0, first_offset + i, None, {})) for i, raw in enumerate(raws)]


async def effects(store: EventStore) -> list[str]:
    return [r["event_id"] for r in await store.pool.fetch("SELECT event_id FROM effects ORDER BY n")]


async def test_a_batch_is_applied_once_in_order_and_its_redelivery_changes_nothing(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    applied: list[str] = []
    c = consumer(store, applied)
    raws = [
        message("a1", "a", 1),
        message("b1", "b", 1),
        message("a2", "a", 2),
        message("a3", "a", 3),
        message("b2", "b", 2),
    ]
    assert await c.handle_batch(batch(*raws)) == {}
    assert await effects(store) == ["a1", "b1", "a2", "a3", "b2"]
    streams = await store.pool.fetch("SELECT stream, last_version FROM inbox_streams ORDER BY stream")
    assert [(r["stream"], r["last_version"]) for r in streams] == [("src/a", 3), ("src/b", 2)]
    versions = await store.pool.fetch(
        "SELECT stream, stream_version, event_id, content_hash FROM inbox_versions ORDER BY event_id"
    )
    assert [(r["stream"], r["stream_version"], r["event_id"], r["content_hash"]) for r in versions] == [
        ("src/a", 1, "a1", content_hash(raws[0])),
        ("src/a", 2, "a2", content_hash(raws[2])),
        ("src/a", 3, "a3", content_hash(raws[3])),
        ("src/b", 1, "b1", content_hash(raws[1])),
        ("src/b", 2, "b2", content_hash(raws[4])),
    ]
    assert await store.pool.fetchval("SELECT count(*) FROM inbox") == 5
    # Delivered again, whole and with the next events behind part of it.
    assert await c.handle_batch(batch(*raws)) == {}
    assert await c.handle_batch(batch(raws[3], raws[4], message("a4", "a", 4), first_offset=3)) == {}
    assert await effects(store) == ["a1", "b1", "a2", "a3", "b2", "a4"]
    assert applied == ["a1", "b1", "a2", "a3", "b2", "a4"]
    assert await store.pool.fetchval("SELECT count(*) FROM inbox_forks") == 0


async def test_an_event_twice_in_one_batch_is_applied_once(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    c = consumer(store, [])
    raws = [message("a1", "a", 1), message("a2", "a", 2), message("a1", "a", 1), message("a2", "a", 2)]
    assert await c.handle_batch(batch(*raws)) == {}
    assert await effects(store) == ["a1", "a2"]
    assert await store.pool.fetchval("SELECT count(*) FROM inbox_forks") == 0
    plain = consumer(store, [], ordered=False)
    plain.name = "plain"
    assert await plain.handle_batch(batch(message("x", None), message("y", None), message("x", None))) == {}
    assert await effects(store) == ["a1", "a2", "x", "y"]


async def test_a_fork_in_a_batch_is_an_alarm_and_its_neighbours_are_applied(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    c = consumer(store, [])
    assert await c.handle_batch(batch(message("a1", "a", 1), message("a2", "a", 2))) == {}
    # Another event at a version applied, and the same id with other bytes: forks both, set aside.
    forked = batch(
        message("b1", "b", 1),
        message("other", "a", 2),
        message("a1", "a", 1, text="edited"),
        message("a3", "a", 3),
        first_offset=2,
    )
    assert await c.handle_batch(forked) == {}
    assert await effects(store) == ["a1", "a2", "b1", "a3"]
    forks = await store.pool.fetch(
        "SELECT stream, stream_version, logged_event_id, other_event_id FROM inbox_forks"
        " ORDER BY kafka_offset"
    )
    assert [tuple(r) for r in forks] == [("src/a", 2, "a2", "other"), ("src/a", 1, "a1", "a1")]
    assert isinstance(c.broker, Broker)
    assert [p["headers"]["dlq_error_type"] for p in c.broker.published] == ["Fork", "Fork"]


async def test_a_message_applied_before_is_not_applied_again_among_new_ones(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    c = consumer(store, [], ordered=False)
    assert await c.handle_batch(batch(message("x", None))) == {}
    assert await c.handle_batch(batch(message("w", None), message("x", None), message("z", None))) == {}
    assert await effects(store) == ["x", "w", "z"]
    assert await store.pool.fetchval("SELECT count(*) FROM inbox") == 3


async def test_two_events_at_one_version_in_one_batch_are_a_fork(store: EventStore) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    c = consumer(store, [])
    assert (
        await c.handle_batch(batch(message("c1", "c", 1), message("rival", "c", 1), message("c2", "c", 2)))
        == {}
    )
    assert await effects(store) == ["c1", "c2"]
    forks = await store.pool.fetch("SELECT stream_version, logged_event_id, other_event_id FROM inbox_forks")
    assert [tuple(r) for r in forks] == [(1, "c1", "rival")]


async def test_a_consumer_given_apply_batch_applies_a_batch_in_one_call_and_a_poison_message_alone(
    store: EventStore,
) -> None:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    calls: list[list[str]] = []

    async def apply(conn: Connection, body: Body, _: Delivery) -> None:
        calls.append([body["id"]])
        if body["text"] == "poison":
            raise ValueError("no event may hold this")
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", body["id"])

    async def apply_batch(conn: Connection, bodies: Sequence[tuple[Body, Delivery]]) -> None:
        calls.append([body["id"] for body, _ in bodies])
        # One statement for the whole batch: a poison message fails it, not knowing which it was.
        await conn.execute(
            "INSERT INTO effects (event_id) SELECT unnest($1::text[])", [body["id"] for body, _ in bodies]
        )
        if any(body["text"] == "poison" for body, _ in bodies):
            raise ValueError("no event may hold this")

    c = consumer(store, [])
    c.apply, c.apply_batch, c.max_tries = apply, apply_batch, 1
    assert await c.handle_batch(batch(message("a1", "a", 1), message("b1", "b", 1))) == {}
    assert calls == [["a1", "b1"]]
    poisoned = batch(message("a2", "a", 2), message("p1", "p", 1, text="poison"), message("b2", "b", 2))
    assert await c.handle_batch(poisoned) == {}
    # The batch failed whole and was rolled back; then each alone: the poison one set aside alone.
    assert calls[1:] == [["a2", "p1", "b2"], ["a2"], ["p1"], ["b2"]]
    assert await effects(store) == ["a1", "b1", "a2", "b2"]
    assert isinstance(c.broker, Broker)
    assert [json.loads(p["body"])["id"] for p in c.broker.published] == ["p1"]
    # A redelivery among new messages: only the new ones are handed over.
    del calls[:]
    assert (
        await c.handle_batch(batch(message("a2", "a", 2), message("a3", "a", 3), message("p2", "p", 2))) == {}
    )
    assert calls == [["a3", "p2"]]
    assert await effects(store) == ["a1", "b1", "a2", "b2", "a3", "p2"]


async def test_a_batch_applied_at_once_gets_only_its_new_messages_and_a_refusal_sets_aside_only_its_own(
    store: EventStore,
) -> None:
    # A consumer given apply_batch (a service that writes a batch's rows in one statement) is handed
    # the batch's new messages together, in order; when that fails for one message's sake, each is
    # handled alone through apply, so only the poison one is set aside.
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, event_id text)")
    together: list[list[str]] = []
    alone: list[str] = []

    async def effect(conn: Connection, body: dict[str, Any]) -> None:
        if body["text"] == "poison":
            raise ValueError("no event may hold this")
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", body["id"])

    async def apply(conn: Connection, body: dict[str, Any], _: Delivery) -> None:
        alone.append(body["id"])
        await effect(conn, body)

    async def apply_batch(conn: Connection, messages: Sequence[tuple[dict[str, Any], Delivery]]) -> None:
        together.append([body["id"] for body, _ in messages])
        for body, _ in messages:
            await effect(conn, body)

    c: InboxConsumer[dict[str, Any]] = InboxConsumer(
        name="together",
        topic=TOPIC,
        pool=store.pool,
        apply=apply,
        apply_batch=apply_batch,
        parse=json.loads,
        message_id=lambda body: body["id"],
        order=order,
        max_tries=1,
    )
    sink = Broker()
    c.broker = sink  # type: ignore[assignment]
    assert await c.handle_batch(batch(message("a1", "a", 1), message("b1", "b", 1))) == {}
    # a1 again (a redelivery) is not handed over; a2 and b2 are, together.
    assert (
        await c.handle_batch(batch(message("a1", "a", 1), message("a2", "a", 2), message("b2", "b", 2))) == {}
    )
    assert together == [["a1", "b1"], ["a2", "b2"]] and alone == []
    poisoned = batch(
        message("a3", "a", 3), message("b3", "b", 3, "poison"), message("a4", "a", 4), first_offset=3
    )
    assert await c.handle_batch(poisoned) == {}
    assert together[-1] == ["a3", "b3", "a4"]  # rolled back, then each alone
    assert alone == ["a3", "b3", "a4"]
    assert await effects(store) == ["a1", "b1", "a2", "b2", "a3", "a4"]
    assert [p["topic"] for p in sink.published] == [f"{TOPIC}.dlq"]
