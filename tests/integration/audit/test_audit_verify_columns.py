"""Verification reads each stretch of the log as a binary COPY and cuts each row where its fields lie:
every stored column an entry's check reads is checked on its own (the content hash, the leaf hash,
the tree head after it), a hash of another length than 32 bytes is never read as one (nor can two of
them, one short and one long, pass for two right ones), and a row is checked the same wherever the
COPY's stream happens to be cut, on one core or on every core."""

import hashlib
import io
import random
from collections.abc import AsyncIterator

import pytest

from infra.db import Connection
from infra.eventstore import EventStore
from infra.service import open_store
from infra.settings import Settings
from services.audit import log, merkle, verifier
from services.audit.app import definition
from tests.integration.audit.test_audit_tiles import bulk

N = 3_000
AT = 1_234
UNMATCHED = f"entry {AT} does not match its hash"
CHANGED = f"the history up to entry {AT} is not the one that was logged"


@pytest.fixture
async def audit_log(database_url: str) -> AsyncIterator[EventStore]:
    s = await open_store(definition, Settings("audit", database_url, "", "", 0))
    yield s
    await s.pool.close()


async def both(conn: Connection) -> log.Verification:
    """On one core (read 100 entries a COPY) and on every core (stretches of 512): the same answer."""
    one = await log.verify(conn, log.Trust(bytes(32)), batch=100, processes=1)
    every = await log.verify(
        conn,
        log.Trust(bytes(32)),
        processes=2,
        stretch=512,
        parallel_from=1,
    )
    assert every == one
    return one


@pytest.mark.parametrize(
    ("tamper", "at", "problem"),
    [
        ("content_hash", AT, UNMATCHED),
        ("leaf_hash", AT, UNMATCHED),
        ("root_after", AT, CHANGED),
        ("short_content_hash_long_leaf_hash", AT, UNMATCHED),
        ("short_root_after", AT, CHANGED),
        ("long_root_after", AT, CHANGED),
        ("empty_envelope_rehashed", AT, CHANGED),
        ("empty_content_hash", AT, UNMATCHED),
        ("delete_first_of_a_stretch", 1024, "entry 1024 is missing (the next is 1025)"),
        ("delete_last_of_a_stretch", 1023, "entry 1023 is missing (the next is 1024)"),
    ],
)
async def test_each_stored_column_of_an_entry_is_checked(
    audit_log: EventStore, tamper: str, at: int, problem: str
) -> None:
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, N)
        await conn.execute("SELECT audit_fill_tiles()")
        untouched = await both(conn)
        assert untouched.root_hash == merkle.root(hashes).hex() and untouched.entries == N
        row = await conn.fetchrow(
            "SELECT envelope, content_hash, leaf_hash, root_after FROM audit_log WHERE position = $1", AT
        )
        assert row is not None
        content, leaf, head = bytes(row["content_hash"]), bytes(row["leaf_hash"]), bytes(row["root_after"])
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            set_at = "UPDATE audit_log SET {} WHERE position = $1"
            if tamper == "content_hash":
                await conn.execute(set_at.format("content_hash = $2"), AT, hashlib.sha256(b"other").digest())
            elif tamper == "leaf_hash":
                await conn.execute(set_at.format("leaf_hash = $2"), AT, merkle.leaf_hash(b"other"))
            elif tamper == "root_after":
                await conn.execute(set_at.format("root_after = $2"), AT, bytes(32))
            elif tamper == "short_content_hash_long_leaf_hash":
                # Their concatenation is the right 64 bytes: read at fixed offsets, both would pass.
                await conn.execute(
                    set_at.format("content_hash = $2, leaf_hash = $3"), AT, content[:31], content[31:] + leaf
                )
            elif tamper == "short_root_after":
                await conn.execute(set_at.format("root_after = $2"), AT, head[:31])
            elif tamper == "long_root_after":
                await conn.execute(set_at.format("root_after = $2"), AT, head + b"\x00")
            elif tamper == "empty_envelope_rehashed":
                await conn.execute(
                    set_at.format("envelope = '', content_hash = $2, leaf_hash = $3"),
                    AT,
                    hashlib.sha256(b"").digest(),
                    merkle.leaf_hash(b""),
                )
            elif tamper == "empty_content_hash":
                await conn.execute(set_at.format("envelope = '', content_hash = ''"), AT)
            elif tamper == "delete_first_of_a_stretch":
                await conn.execute("DELETE FROM audit_log WHERE position = 1024")
            elif tamper == "delete_last_of_a_stretch":
                await conn.execute("DELETE FROM audit_log WHERE position = 1023")
        tampered = await both(conn)
    assert not tampered.ok and tampered.root_hash is None
    assert (tampered.first_bad_position, tampered.problem) == (at, problem), tampered
    assert tampered.entries == at


async def test_the_last_entry_a_row_shorter_than_a_regular_one_is_checked(audit_log: EventStore) -> None:
    """A row shorter than the fixed part of a regular one, at the very end of the COPY."""
    async with audit_log.pool.acquire() as conn:
        await bulk(conn, 700)
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                "UPDATE audit_log SET envelope = '', content_hash = '', leaf_hash = '' WHERE position = 699"
            )
        tampered = await both(conn)
    assert (tampered.first_bad_position, tampered.problem) == (699, "entry 699 does not match its hash")
    assert tampered.entries == 699


async def test_a_stretch_is_checked_the_same_wherever_the_stream_is_cut(audit_log: EventStore) -> None:
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, 1_500)
        copied = io.BytesIO()
        await conn.copy_from_query(verifier.rows_query(conn, 0, 1_500), output=copied, format="binary")
    data = copied.getvalue()
    rng = random.Random(5)
    stretch = verifier.Stretch(0, 1_500, [], [1, 1_000, 1_500])
    for cuts in (
        [],
        list(range(1, len(data))),  # a byte at a time
        sorted(rng.sample(range(1, len(data)), 400)),
        sorted(rng.sample(range(1, 200_000), 2_000)),
    ):
        checker = verifier._Checker(stretch)
        checker.begin()
        for lo, hi in zip([0, *cuts], [*cuts, len(data)], strict=True):
            await checker(data[lo:hi])
        checker.end()
        assert checker.problem is None and checker.expected == 1_500
        assert checker.heads == {n: merkle.root(hashes[:n]) for n in (1, 1_000, 1_500)}
        assert checker.own_root() == merkle.root(hashes)


TILES_WRONG = "does not hold the tree's nodes recomputed from the entries"


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("none", None),
        ("a_cell_changed", f"tile 0 of level 1 {TILES_WRONG}"),
        ("a_cell_cut_off", f"tile 0 of level 1 {TILES_WRONG}"),
        ("a_cell_added", f"tile 0 of level 1 {TILES_WRONG}"),
        ("a_tile_removed", f"tile 0 of level 1 {TILES_WRONG}"),
        ("a_tile_made_up", f"tile 7 of level 1 {TILES_WRONG}"),
        ("every_tile_wrong", "tile 0 of level 1 and 1 more tiles do not hold"),
    ],
)
async def test_the_tiles_must_hold_the_nodes_recomputed_from_the_entries(
    audit_log: EventStore, tamper: str, problem: str | None
) -> None:
    """The proofs are read from the tiles: a tile that does not hold the tree's nodes fails the
    verification, the entries themselves checking out (no first bad entry, the root recomputed)."""
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, N)  # level 1, tile 0: the 11 nodes of 256 entries
        await conn.execute("SELECT audit_fill_tiles()")
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            one = "UPDATE audit_tiles SET hashes = {} WHERE level = 1 AND idx = 0"
            if tamper == "a_cell_changed":
                await conn.execute(one.format("overlay(hashes PLACING $1 FROM 32 * 5 + 1)"), bytes(32))
            elif tamper == "a_cell_cut_off":
                await conn.execute(one.format("substring(hashes FROM 1 FOR 32 * 10)"))
            elif tamper == "a_cell_added":
                await conn.execute(one.format("hashes || $1"), bytes(32))
            elif tamper == "a_tile_removed":
                await conn.execute("DELETE FROM audit_tiles")
            elif tamper == "a_tile_made_up":
                await conn.execute("INSERT INTO audit_tiles VALUES (1, 7, $1)", bytes(32))
            elif tamper == "every_tile_wrong":
                await conn.execute("INSERT INTO audit_tiles VALUES (2, 0, $1)", bytes(32))
                await conn.execute(one.format("$1 || substring(hashes FROM 33)"), bytes(32))
        found = await both(conn)
    assert found.first_bad_position is None and found.entries == N
    assert found.root_hash == merkle.root(hashes).hex()
    if problem is None:
        assert found.ok and found.problem == "no signed checkpoint yet", found
    else:
        assert not found.ok and found.problem is not None and found.problem.startswith(problem), found


async def test_a_tile_above_the_stretches_is_checked_against_the_nodes_merged_from_them(
    audit_log: EventStore,
) -> None:
    """Level 2 (nodes of 65,536 entries): on every core, made by merging the stretches' own roots."""
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, (1 << 16) + 300)
        await conn.execute("SELECT audit_fill_tiles()")
        assert await conn.fetchval("SELECT count(*) FROM audit_tiles WHERE level = 2") == 1
        assert (await both(conn)).ok
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE audit_tiles SET hashes = $1 WHERE level = 2", merkle.leaf_hash(b"x"))
        found = await both(conn)
    assert not found.ok and found.root_hash == merkle.root(hashes).hex()
    assert found.problem is not None and found.problem.startswith(f"tile 0 of level 2 {TILES_WRONG}"), found
