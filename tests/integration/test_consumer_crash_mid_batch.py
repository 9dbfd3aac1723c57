"""A consumer that applies batches, killed in the middle of one and again between a batch's commit and
its offset commit: nothing lost, nothing applied twice, each stream in order."""

import asyncio
import os
import sys

import asyncpg

from events import Actor, Envelope
from infra.eventstore import Context, EventStore
from tests.integration.test_consumer_crash import ROOT, _in_stream_order
from tests.support.events import CounterIncremented
from tests.support.waiting import eventually, publish_raw

EVENTS = 60


async def test_a_consumer_killed_mid_batch_and_after_a_batch_commit_loses_nothing_and_doubles_nothing(
    store: EventStore, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.batched"
    written: list[Envelope] = []
    for i in range(EVENTS):
        case = f"case-{i % 4}"
        written += await store.append(
            case, await store.stream_version(case), [CounterIncremented(by=i + 1)], Context(Actor.system("t"))
        )
    # All of them wait in the topic before the consumer starts: its first fetch is a batch.
    await publish_raw(kafka_bootstrap, topic, [(e.kafka_key, e.canonical()) for e in written])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    batched = ["--batch-size", "100"]
    try:
        # Killed while applying the fifth message, its batch's transaction open: nothing of that
        # batch is kept (one transaction per message would have kept the four before it).
        crashed = await _consumer(database_url, kafka_bootstrap, topic, *batched, "--crash-in-apply", "5")
        assert await asyncio.wait_for(crashed.wait(), 60) == 137
        kept = await _effects(pool)
        assert kept < 4, kept

        # Killed after the commit of the batch holding its tenth message, before the offset commit.
        crashed = await _consumer(database_url, kafka_bootstrap, topic, *batched, "--crash-after", "10")
        assert await asyncio.wait_for(crashed.wait(), 60) == 137
        assert await _effects(pool) >= kept + 10

        restarted = await _consumer(database_url, kafka_bootstrap, topic, *batched)
        try:
            # The batch committed before the second kill comes again: found in the inbox, it changes
            # nothing (the helper logs each message ignored so).
            assert restarted.stderr is not None
            await asyncio.wait_for(_line_with(restarted.stderr, b"inbox_duplicate_ignored"), 60)
            await eventually(lambda: pool.fetchval(f"SELECT count(*) >= {EVENTS} FROM effects"), timeout=60)
            await asyncio.sleep(1)  # room for any double application to show
        finally:
            restarted.terminate()
            await restarted.communicate()
        rows = await pool.fetch("SELECT event_id FROM effects ORDER BY n")
        assert len(rows) == EVENTS
        assert {r["event_id"] for r in rows} == {e.event_id for e in written}
        _in_stream_order(written, rows)
    finally:
        await pool.close()


async def _line_with(stream: asyncio.StreamReader, text: bytes) -> None:
    while text not in (line := await stream.readline()):
        assert line, f"the consumer stopped before logging {text!r}"


async def _effects(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM effects")
    return count


async def _consumer(database_url: str, bootstrap: str, topic: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.crashing_consumer", "--database-url", database_url,
        "--bootstrap", bootstrap, "--topic", topic, *extra,
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        # Its log is read after a SIGTERM: written as it goes, not lost in a buffer.
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
