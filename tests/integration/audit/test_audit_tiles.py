"""The audit log's tiles in PostgreSQL: the migration's fill and each append leave the tiles of the
tree, proofs read from them are byte for byte the RFC 9162 proofs over every leaf, and a full tile
never changes."""

import hashlib
import json
import random
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from events import Actor, Envelope
from infra import db
from infra.db import Connection
from infra.eventstore import EventStore
from infra.service import open_store
from infra.settings import Settings
from services.audit import log, merkle
from services.audit.app import definition

COLUMNS = [
    "position", "event_id", "source", "source_sequence", "event_type", "stream_id", "occurred_at",
    "actor_id", "envelope", "content_hash", "leaf_hash", "root_after",
]  # fmt: skip
START = datetime(2026, 3, 2, tzinfo=UTC)
REHASH = "UPDATE audit_log SET envelope = $2, content_hash = $3, leaf_hash = $4 WHERE position = $1"


@pytest.fixture
async def audit_log(database_url: str) -> AsyncIterator[EventStore]:
    s = await open_store(definition, Settings("audit", database_url, "", "", 0))
    yield s
    await s.pool.close()


async def bulk(conn: Connection, n: int) -> list[bytes]:
    """n entries written as a log filled before tiles existed: rows and right edge, no tile."""
    frontier: list[tuple[int, bytes]] = []
    rows, hashes = [], []
    for position in range(n):
        raw = json.dumps({"entry": position}).encode()
        leaf = merkle.leaf_hash(raw)
        frontier = merkle.push(frontier, leaf)
        hashes.append(leaf)
        rows.append(
            (
                position, uuid4(), "bulk", position + 1, "bulk.Entry", "bulk", START, "bulk", raw.decode(),
                hashlib.sha256(raw).digest(), leaf, merkle.frontier_root(frontier),
            )
        )  # fmt: skip
    await conn.copy_records_to_table("audit_log", records=rows, columns=COLUMNS)
    await conn.execute(
        "INSERT INTO log_frontier (hashes, sizes) VALUES ($1, $2)",
        [h for _, h in frontier],
        [size for size, _ in frontier],
    )
    return hashes


def entry(sequence: int) -> Envelope:
    at = START + timedelta(minutes=sequence)
    return Envelope(
        event_id=uuid4(), event_type="notification.CaseOpened", schema_version=1, stream_id=f"s-{sequence}",
        case_id=uuid4(), stream_version=1, source="notification", source_sequence=sequence,
        occurred_at=at, recorded_at=at, actor=Actor(kind="user", id="lena.lac", role="lac"),
        correlation_id="tiles", data={"n": sequence},
    )  # fmt: skip


async def stored_tiles(conn: Connection) -> dict[tuple[int, int], bytes]:
    rows = await conn.fetch("SELECT level, idx, hashes FROM audit_tiles")
    return {(r["level"], r["idx"]): bytes(r["hashes"]) for r in rows}


async def test_filled_and_appended_tiles_give_the_rfc_proofs(audit_log: EventStore) -> None:
    async with audit_log.pool.acquire() as conn:
        assert await stored_tiles(conn) == {}  # migrated while empty: nothing to fill
        hashes = await bulk(conn, 65_400)
        await conn.execute("SELECT audit_fill_tiles()")  # what migration 008 runs on a log it finds
        assert await stored_tiles(conn) == merkle.tiles_of(hashes)
        with pytest.raises(asyncpg.RaiseError):
            await conn.execute("SELECT audit_fill_tiles()")
        # Appends past 65,536: a level-1 tile is completed and a level-2 tile begun, in the append.
        for sequence in range(1, 201):
            e = entry(sequence)
            async with conn.transaction():
                assert await log.append(conn, e.canonical(), e)
            hashes.append(merkle.leaf_hash(e.canonical()))
        tiles = await stored_tiles(conn)
        assert tiles == merkle.tiles_of(hashes) and (2, 0) in tiles
        n = len(hashes)
        tree = merkle.levels(hashes)
        rng = random.Random(18)
        for position in [0, 1, 255, 256, 65_535, 65_536, n - 1, *rng.sample(range(n), 20)]:
            proof = await log.inclusion_proof(conn, position)
            assert proof is not None
            assert (proof.leaf_index, proof.tree_size, proof.leaf_hash) == (position, n, hashes[position])
            assert proof.path == merkle.path(position, tree) and proof.root_hash == tree[-1][0]
        for size in [1, 257, 65_536, 65_537, rng.randrange(1, n)]:
            sized = merkle.levels(hashes[:size])
            for position in {0, size - 1, rng.randrange(size)}:
                proof = await log.inclusion_proof(conn, position, size)
                assert proof is not None and proof.path == merkle.path(position, sized)
                assert proof.root_hash == sized[-1][0]
        for first, second in [(1, n), (65_536, n), (1_000, 65_537), (n, n)]:
            consistency = await log.consistency_proof(conn, first, second)
            assert consistency is not None
            assert consistency.path == merkle.consistency_proof(first, hashes[:second])
            assert consistency.first_root == merkle.root(hashes[:first])
            assert consistency.second_root == merkle.root(hashes[:second])
        assert await log.inclusion_proof(conn, n) is None
        assert await log.inclusion_proof(conn, 5, n + 1) is None
        assert await log.inclusion_proof(conn, 5, 5) is None
        assert await log.consistency_proof(conn, 1, n + 1) is None
        assert await log.consistency_proof(conn, 0, n) is None
        assert await log.consistency_proof(conn, 3, 2) is None
        assert (await log.verify(conn, log.Trust(b""))).root_hash == tree[-1][0].hex()


async def test_a_full_tile_never_changes_and_a_partial_one_only_grows(audit_log: EventStore) -> None:
    async with audit_log.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO audit_tiles VALUES (1, 0, $1), (1, 1, $2)", bytes(32 * 256), b"\x01" * 64
        )
        for change in [
            "UPDATE audit_tiles SET hashes = hashes WHERE level = 1 AND idx = 0",  # full
            "UPDATE audit_tiles SET hashes = '\\x00'::bytea || hashes WHERE level = 1 AND idx = 1",
            "UPDATE audit_tiles SET idx = 2 WHERE level = 1 AND idx = 1",
            "DELETE FROM audit_tiles WHERE level = 1 AND idx = 1",
            "TRUNCATE audit_tiles",
        ]:
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(change)
        await conn.execute(
            "UPDATE audit_tiles SET hashes = hashes || $1 WHERE level = 1 AND idx = 1", bytes(32)
        )  # growing is what an append does
        assert await conn.fetchval("SELECT octet_length(hashes) FROM audit_tiles WHERE idx = 1") == 96


@pytest.mark.parametrize(
    "tamper",
    ["none", "change_a_byte", "delete_an_entry", "rewrite_history", "tiles_lie", "signed_then_changed"],
)
async def test_verification_on_every_core_answers_as_one_pass_does(
    audit_log: EventStore, tamper: str
) -> None:
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, 5_000)
        await conn.execute("SELECT audit_fill_tiles()")
        for size in (1_024, 2_000, 4_096):  # checkpoints (signed by no pinned key): heads at their sizes
            await conn.execute(
                "INSERT INTO checkpoints VALUES ($1, $2, now() + make_interval(secs => $5), $3, $4)",
                size,
                merkle.root(hashes[:size]),
                bytes(64),
                bytes(32),
                size,
            )
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            if tamper == "change_a_byte":
                await conn.execute("UPDATE audit_log SET envelope = '{\"entry\": 1}' WHERE position = 3000")
            elif tamper == "delete_an_entry":
                await conn.execute("DELETE FROM audit_log WHERE position BETWEEN 2500 AND 2600")
            elif tamper == "rewrite_history":
                forged = b'{"forged": true}'
                await conn.execute(
                    REHASH,
                    1_500,
                    forged.decode(),
                    hashlib.sha256(forged).digest(),
                    merkle.leaf_hash(forged),
                )
            elif tamper == "tiles_lie":
                await conn.execute(
                    "UPDATE audit_tiles SET hashes = $1 || substring(hashes FROM 33)", bytes(32)
                )
            elif tamper == "signed_then_changed":
                # Every hash after entry 3,000 recomputed: only the checkpoint of 4,096 tells.
                await conn.execute("DELETE FROM audit_tiles")
                frontier: list[tuple[int, bytes]] = []
                for position, leaf in enumerate(hashes):
                    if position == 3_000:
                        raw = b'{"entry": "rewritten"}'
                        leaf = merkle.leaf_hash(raw)
                        await conn.execute(
                            REHASH,
                            position,
                            raw.decode(),
                            hashlib.sha256(raw).digest(),
                            leaf,
                        )
                    frontier = merkle.push(frontier, leaf)
                    if position >= 3_000:
                        await conn.execute(
                            "UPDATE audit_log SET root_after = $2 WHERE position = $1",
                            position,
                            merkle.frontier_root(frontier),
                        )
                await conn.execute("SELECT audit_fill_tiles()")
        one = await log.verify(conn, log.Trust(bytes(32)), processes=1)
        seen: list[int] = []
        every = await log.verify(
            conn,
            log.Trust(bytes(32)),
            lambda done, _: seen.append(done),
            processes=2,
            stretch=512,
            parallel_from=1,
        )
    assert every == one
    assert seen and seen == sorted(seen)
    expected = {
        "none": None,
        "change_a_byte": 3_000,
        "delete_an_entry": 2_500,
        "rewrite_history": 1_500,
        "tiles_lie": None,
        "signed_then_changed": 2_000,
    }[tamper]
    assert one.first_bad_position == expected, one
    assert (one.root_hash is not None) == (tamper in ("none", "tiles_lie", "signed_then_changed")), one


async def test_migration_008_fills_the_tiles_of_a_log_it_finds(database_url: str, tmp_path: Path) -> None:
    """A log written before tiles existed: migrated to 008, proofs read from the tiles it filled, and
    appends carry on from them."""
    before = tmp_path / "audit" / "migrations"  # named as the service's own: audit/00N_....sql
    before.mkdir(parents=True)
    for sql in sorted(definition.migration_folders[0].glob("*.sql")):
        if sql.name < "008":
            shutil.copy(sql, before / sql.name)
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool, before)
        async with pool.acquire() as conn:
            hashes = await bulk(conn, 4 * 256 - 24)
            assert await conn.fetchval("SELECT to_regclass('audit_tiles')") is None
        assert await db.migrate(pool, *definition.migration_folders) == ["audit/008_merkle_tiles.sql"]
        async with pool.acquire() as conn:
            assert await stored_tiles(conn) == merkle.tiles_of(hashes)
            proof = await log.inclusion_proof(conn, 700)
            assert proof is not None and proof.path == merkle.inclusion_proof(700, hashes)
            for sequence in range(1, 25):  # to the next full block of 256: a tile cell appended
                e = entry(sequence)
                async with conn.transaction():
                    assert await log.append(conn, e.canonical(), e)
                hashes.append(merkle.leaf_hash(e.canonical()))
            assert await stored_tiles(conn) == merkle.tiles_of(hashes)
            assert len((await stored_tiles(conn))[1, 0]) == 4 * 32
    finally:
        await pool.close()
