"""Projections: updated with each append, and rebuilt from the event store to the same result."""

import random
from collections.abc import Sequence

import asyncpg

from events import Actor, Envelope
from infra import db
from infra.eventstore import Context, EventStore
from infra.projections import rebuild
from tests.support.events import CounterIncremented, NoteRecorded

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))


class CaseCounters:
    """A read model: per stream, the running total, the notes and the version seen."""

    name = "case_counters"
    tables: Sequence[str] = ("case_counters",)

    async def apply(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        payload = envelope.payload()
        by = payload.by if isinstance(payload, CounterIncremented) else 0
        notes = [payload.text] if isinstance(payload, NoteRecorded) else []
        await conn.execute(
            """
            INSERT INTO case_counters (stream_id, total, notes, last_version) VALUES ($1, $2, $3, $4)
            ON CONFLICT (stream_id) DO UPDATE SET total = case_counters.total + $2,
                notes = case_counters.notes || $3, last_version = $4
            """,
            envelope.stream_id,
            by,
            notes,
            envelope.stream_version,
        )


async def snapshot(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    return [tuple(r) for r in await pool.fetch("SELECT * FROM case_counters ORDER BY stream_id")]


async def test_a_projection_rebuilt_from_scratch_equals_the_live_one(database_url: str) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        await pool.execute(
            "CREATE TABLE case_counters (stream_id text PRIMARY KEY, total int NOT NULL,"
            " notes text[] NOT NULL, last_version int NOT NULL)"
        )
        store = EventStore(pool, "test", [CaseCounters()])
        rng = random.Random(7)
        for i in range(400):
            stream = f"case-{rng.randrange(40)}"
            payload = (
                CounterIncremented(by=rng.randint(1, 9)) if rng.random() < 0.7 else NoteRecorded(text=f"n{i}")
            )
            await store.append(stream, await store.stream_version(stream), [payload], CTX)
        live = await snapshot(pool)
        assert len(live) == 40 and sum(r[1] for r in live) > 0  # type: ignore[misc]

        await pool.execute("UPDATE case_counters SET total = -1")  # a read model gone wrong
        replayed = await rebuild(store)

        assert replayed == 400
        assert await snapshot(pool) == live
    finally:
        await pool.close()
