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
