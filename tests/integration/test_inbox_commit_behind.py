"""A consumer's offsets are committed behind its batches (infra.inbox.OffsetCommitter): the next batch
is applied while a commit is still on its way, what is finally committed is the latest offset of each
partition, and a commit that fails stops nothing."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from infra import kafka
from infra.db import Connection
from infra.eventstore import EventStore
from infra.inbox import Delivery, InboxConsumer
from leder.recovery import committed_offsets
from tests.support.waiting import eventually

Body = dict[str, Any]
Commit = Callable[[AIOKafkaConsumer, dict[TopicPartition, int]], Coroutine[Any, Any, None]]
REAL_COMMIT: Commit = AIOKafkaConsumer.commit


async def _apply(conn: Connection, body: Body, _: Delivery) -> None:
    await conn.execute("INSERT INTO effects (message_id) VALUES ($1)", body["id"])


@asynccontextmanager
async def consuming(store: EventStore, bootstrap: str, topic: str) -> AsyncIterator[InboxConsumer[Body]]:
    await store.pool.execute("CREATE TABLE effects (n serial PRIMARY KEY, message_id text)")
    consumer: InboxConsumer[Body] = InboxConsumer(
        name="effects",
        topic=topic,
        pool=store.pool,
        apply=_apply,
        parse=json.loads,
        message_id=lambda body: body["id"],
        batch_size=3,
    )
    broker = kafka.broker(bootstrap)
    consumer.subscribe(broker, group_id=f"{topic}.effects")
    await kafka.start_broker(broker)
    try:
        yield consumer
    finally:
        await broker.stop()
    # The committer ended with its subscriber: no task left behind.
    await eventually(lambda: _true(not consumer._committers), timeout=5)


async def _true(value: bool) -> bool:
    return value


async def publish(bootstrap: str, topic: str, ids: range) -> None:
    """Each message to partition 0 or 1 in turn."""
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        for i in ids:
            await producer.send_and_wait(topic, json.dumps({"id": f"m{i}"}).encode(), partition=i % 2)
    finally:
        await producer.stop()


async def committed(bootstrap: str, topic: str) -> dict[int, int]:
    return await committed_offsets(bootstrap, f"{topic}.effects", topic)


async def effects(store: EventStore) -> int:
    count: int = await store.pool.fetchval("SELECT count(*) FROM effects")
    return count


async def test_batches_are_applied_while_a_commit_is_on_its_way_and_the_latest_offsets_are_committed(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"{topic_prefix}leder.test.commit-behind"
    await kafka.ensure_topics(kafka_bootstrap, [topic], partitions=2)
    commits: list[dict[TopicPartition, int]] = []
    gate = asyncio.Event()

    async def slow_commit(self: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        commits.append(dict(offsets))
        if len(commits) == 1:
            await gate.wait()  # the broker slow to answer the first commit
        await REAL_COMMIT(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", slow_commit)
    async with consuming(store, kafka_bootstrap, topic):
        await publish(kafka_bootstrap, topic, range(1))
        await eventually(lambda: _true(len(commits) == 1))
        # Twenty more, in batches of at most three, all applied while the first commit is held.
        await publish(kafka_bootstrap, topic, range(1, 21))
        await eventually(lambda: _true_async(effects(store), 21))
        assert len(commits) == 1 and not gate.is_set()

        gate.set()
        ends = {TopicPartition(topic, 0): 11, TopicPartition(topic, 1): 10}
        group = f"{topic}.effects"
        await eventually(
            lambda: _true_async(committed_offsets(kafka_bootstrap, group, topic), {0: 11, 1: 10})
        )
        # What came while the first commit was held went in one commit: each partition's latest offset.
        assert commits[1:] == [ends], commits


async def test_a_commit_that_fails_stops_nothing_and_a_later_one_commits_the_latest_offsets(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = f"{topic_prefix}leder.test.commit-fails"
    await kafka.ensure_topics(kafka_bootstrap, [topic], partitions=2)
    failures = 3
    tried: list[dict[TopicPartition, int]] = []

    async def failing_commit(self: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        nonlocal failures
        tried.append(dict(offsets))
        if failures:
            failures -= 1
            raise CommitFailedError("the group rebalanced")
        await REAL_COMMIT(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", failing_commit)
    async with consuming(store, kafka_bootstrap, topic) as consumer:
        sent = 0
        while sent < 5:  # one at a time, each its own commit: three fail, then two go through
            await publish(kafka_bootstrap, topic, range(sent, sent + 1))
            sent += 1
            await eventually(lambda n=sent: _true_async(effects(store), n))  # type: ignore[misc]
            await eventually(lambda n=sent: _true(len(tried) == n))  # type: ignore[misc]
            if sent == 1:
                committer = next(iter(consumer._committers.values()))
        await eventually(lambda: _true_async(committed(kafka_bootstrap, topic), {0: 3, 1: 2}))
        assert failures == 0
        # The same committer throughout: the failures did not end it.
        assert list(consumer._committers.values()) == [committer]


async def _true_async(value: Coroutine[Any, Any, Any], expected: Any) -> bool:
    got = await value
    return bool(got == expected)
