"""A consumer killed between its database commit and its offset commit."""

import asyncio
import sys
from pathlib import Path

import asyncpg

from events import Actor, Envelope
from infra.eventstore import Context, EventStore
from tests.support.events import CounterIncremented
from tests.support.waiting import eventually, publish_raw

ROOT = Path(__file__).parents[2]


async def run_consumer(
    database_url: str, bootstrap: str, topic: str, crash_after: int = 0
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.crashing_consumer",
        "--database-url",
        database_url,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--crash-after",
        str(crash_after),
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_consumer_killed_after_its_commit_and_before_its_offset_commit_changes_nothing_on_redelivery(
    store: EventStore, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    # Events of a few cases, made by a real store so they are valid envelopes.
    written: list[Envelope] = []
    for i in range(30):
        case = f"case-{i % 3}"
        written += await store.append(
            case,
            await store.stream_version(case),
            [CounterIncremented(by=i + 1)],
            Context(actor=Actor.system("test")),
        )
    await publish_raw(kafka_bootstrap, topic, [(e.kafka_key, e.canonical()) for e in written])
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        crashing = await run_consumer(database_url, kafka_bootstrap, topic, crash_after=10)
        assert await asyncio.wait_for(crashing.wait(), 60) == 137
        assert await pool.fetchval("SELECT count(*) FROM effects") == 10

        restarted = await run_consumer(database_url, kafka_bootstrap, topic)
        try:
            await eventually(lambda: pool.fetchval("SELECT count(*) >= 30 FROM effects"), timeout=60)
            await asyncio.sleep(1)  # room for any double application to show
        finally:
            restarted.terminate()
            _, stderr = await restarted.communicate()
        rows = await pool.fetch("SELECT event_id FROM effects ORDER BY n")
        assert [r["event_id"] for r in rows] == [e.event_id for e in _in_stream_order(written, rows)]
        assert len({r["event_id"] for r in rows}) == 30
        # The tenth message was committed but not its offset: it came again, and was ignored.
        assert b"inbox_duplicate_ignored" in stderr
    finally:
        await pool.close()


def _in_stream_order(written: list[Envelope], rows: list[asyncpg.Record]) -> list[Envelope]:
    """The written events in the order they were applied, checked to respect each stream's order."""
    by_id = {e.event_id: e for e in written}
    applied = [by_id[r["event_id"]] for r in rows]
    for stream in {e.stream_id for e in written}:
        versions = [e.stream_version for e in applied if e.stream_id == stream]
        assert versions == sorted(versions), stream
    return applied
