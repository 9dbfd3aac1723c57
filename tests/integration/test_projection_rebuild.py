"""Projections: updated with each append, and rebuilt from the event store to the same result."""

import random
from collections.abc import Sequence
from typing import Any

import asyncpg

from events import Actor, Envelope
from infra import db
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.projections import Decoded, Row, copy_rows, rebuild
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


class FoldingCaseCounters(CaseCounters):
    """The same read model, folded in memory by a rebuild and written once per row."""

    name = "case_counters_folded"
    tables: Sequence[str] = ("case_counters_folded",)

    async def apply(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        await super().apply(_Renamed(conn), envelope)

    def fold(self) -> "CountersFold":
        return CountersFold()


class _Renamed:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, query: str, *args: Any) -> str:
        return await self.conn.execute(query.replace("case_counters", "case_counters_folded"), *args)


class CountersFold:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for envelope, payload in events:
            row = self.rows.setdefault(
                envelope.stream_id,
                {"stream_id": envelope.stream_id, "total": 0, "notes": [], "last_version": 0},
            )
            if isinstance(payload, CounterIncremented):
                row["total"] += payload.by
            if isinstance(payload, NoteRecorded):
                row["notes"].append(payload.text)
            row["last_version"] = envelope.stream_version

    async def write(self, conn: Connection) -> None:
        await copy_rows(conn, "case_counters_folded", self.rows.values())


class Counting:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.conn, name)
        if name not in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table"):
            return method

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return await method(*args, **kwargs)

        return counted


async def test_a_folding_projection_rebuilds_in_pages_with_a_few_statements_to_what_apply_builds(
    database_url: str,
) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        for table in ("case_counters", "case_counters_folded"):
            await pool.execute(
                f"CREATE TABLE {table} (stream_id text PRIMARY KEY, total int NOT NULL,"
                " notes text[] NOT NULL, last_version int NOT NULL)"
            )
        # One projection folds, the other is replayed event by event: both rebuild to their live rows.
        store = EventStore(pool, "test", [CaseCounters(), FoldingCaseCounters()])
        rng = random.Random(11)
        for i in range(300):
            stream = f"case-{rng.randrange(30)}"
            payloads = [CounterIncremented(by=rng.randint(1, 9)), NoteRecorded(text=f"n{i}")][
                : rng.randint(1, 2)
            ]
            await store.append(stream, await store.stream_version(stream), payloads, CTX)
        events = await store.last_sequence()
        folded = "SELECT * FROM case_counters_folded ORDER BY stream_id"
        live = [tuple(r) for r in await pool.fetch(folded)]
        assert live == await snapshot(pool) and len(live) == 30

        await pool.execute("UPDATE case_counters_folded SET total = -1")
        assert await rebuild(store, [FoldingCaseCounters()], batch=64) == events
        assert [tuple(r) for r in await pool.fetch(folded)] == live

        async with pool.acquire() as conn, conn.transaction():
            counting = Counting(conn)
            assert await rebuild(store, [FoldingCaseCounters()], batch=64, conn=counting) == events  # type: ignore[arg-type]
            # TRUNCATE, a read per page and one after the last, one COPY: none per event.
            assert counting.statements == 1 + -(-events // 64) + 1 + 1
            assert [tuple(r) for r in await conn.fetch(folded)] == live

        await pool.execute("UPDATE case_counters SET total = -1; UPDATE case_counters_folded SET total = -1")
        assert await rebuild(store, batch=50) == events
        assert await snapshot(pool) == live
        assert [tuple(r) for r in await pool.fetch(folded)] == live
    finally:
        await pool.close()
