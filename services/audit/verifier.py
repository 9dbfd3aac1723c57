"""The check of one stretch of the audit log, for a verification of the whole log on every core.

A stretch [lo, hi) starts at a multiple of a power of two, so the tree heads after its entries need
from the entries before it only their perfect subtrees (the tree's right edge at lo), which the
caller gives. Each stretch is then checked as `log.verify` checks the whole log, entry by entry, in
a process of its own: `python -m services.audit.verifier` reads one task a line on stdin (JSON, the
first line how to connect) and writes one result a line. Its imports are few on purpose: starting a
checker must cost little beside the seconds it saves."""

import asyncio
import hashlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

_SNAPSHOT = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


@dataclass(frozen=True)
class Stretch:
    lo: int
    hi: int
    left: list[bytes]  # the perfect subtrees of entries 0..lo-1, largest first
    signed: list[int]  # tree sizes in (lo, hi] whose heads the caller wants


@dataclass(frozen=True)
class Checked:
    lo: int
    checked: int  # entries that checked out, from lo
    problem: str | None  # "missing", "unmatched" or "changed", at lo + checked
    next_position: int | None  # for "missing": the next position in the stretch, if any
    own_root: bytes | None  # the root of the stretch's own subtree, when every entry checked out
    heads: dict[int, bytes]  # the tree head at each signed size asked for


async def check(
    conn: "asyncpg.Connection[asyncpg.Record]", stretch: Stretch, prefetch: int = 10_000
) -> Checked:
    """Each entry's content hash and leaf hash from its bytes, and the tree head after it, in order;
    stops at the first that does not check out. `conn` must be in a transaction (for its cursor)."""
    # Copies of a state that has hashed the prefix: OpenSSL 3 makes a fresh SHA-256 cost twice what
    # a copy does, and each entry takes a dozen.
    empty, leaf_prefix, node_prefix = hashlib.sha256(), hashlib.sha256(b"\x00"), hashlib.sha256(b"\x01")
    left, signed = stretch.left, set(stretch.signed)
    local: list[bytes] = []  # the stretch's own perfect subtrees so far, largest first
    heads: dict[int, bytes] = {}
    expected = stretch.lo
    cursor = conn.cursor(
        "SELECT position, convert_to(envelope, 'UTF8'), content_hash, leaf_hash, root_after FROM audit_log"
        " WHERE position >= $1 AND position < $2 ORDER BY position",
        stretch.lo,
        stretch.hi,
        prefetch=prefetch,
    )
    async for position, raw, content_hash, leaf_hash, root_after in cursor:
        if position != expected:
            return Checked(stretch.lo, expected - stretch.lo, "missing", position, None, heads)
        h = leaf_prefix.copy()
        h.update(raw)
        leaf = h.digest()
        h = empty.copy()
        h.update(raw)
        if h.digest() != content_hash or leaf != leaf_hash:
            return Checked(stretch.lo, expected - stretch.lo, "unmatched", None, None, heads)
        node, n = leaf, expected - stretch.lo
        while n & 1:  # equal perfect subtrees merge: as many as the count's trailing one bits
            h = node_prefix.copy()
            h.update(local.pop())
            h.update(node)
            node = h.digest()
            n >>= 1
        local.append(node)
        top = node
        for i in range(len(local) - 2, -1, -1):
            h = node_prefix.copy()
            h.update(local[i])
            h.update(top)
            top = h.digest()
        for i in range(len(left) - 1, -1, -1):
            h = node_prefix.copy()
            h.update(left[i])
            h.update(top)
            top = h.digest()
        if top != root_after:
            return Checked(stretch.lo, expected - stretch.lo, "changed", None, None, heads)
        expected += 1
        if expected in signed:
            heads[expected] = top
    if expected != stretch.hi:
        return Checked(stretch.lo, expected - stretch.lo, "missing", None, None, heads)
    own = local[-1]
    for i in range(len(local) - 2, -1, -1):
        own = hashlib.sha256(b"\x01" + local[i] + own).digest()
    return Checked(stretch.lo, expected - stretch.lo, None, None, own, heads)


def encode_stretch(stretch: Stretch) -> str:
    return json.dumps(
        {
            "lo": stretch.lo,
            "hi": stretch.hi,
            "left": [h.hex() for h in stretch.left],
            "signed": stretch.signed,
        }
    )


def decode_stretch(line: str) -> Stretch:
    task = json.loads(line)
    return Stretch(task["lo"], task["hi"], [bytes.fromhex(h) for h in task["left"]], task["signed"])


def encode_checked(checked: Checked) -> str:
    out: dict[str, Any] = asdict(checked)
    out["own_root"] = checked.own_root.hex() if checked.own_root else None
    out["heads"] = {str(size): head.hex() for size, head in checked.heads.items()}
    return json.dumps(out)


def decode_checked(line: str) -> Checked:
    got = json.loads(line)
    return Checked(
        got["lo"],
        got["checked"],
        got["problem"],
        got["next_position"],
        bytes.fromhex(got["own_root"]) if got["own_root"] else None,
        {int(size): bytes.fromhex(head) for size, head in got["heads"].items()},
    )


async def _serve() -> None:
    """One connection, in the snapshot the caller exported, for every stretch given on stdin."""
    connect = json.loads(sys.stdin.readline())
    snapshot = connect.pop("snapshot")
    if not _SNAPSHOT.match(snapshot):
        raise ValueError(f"not a snapshot id: {snapshot!r}")
    conn = await asyncpg.connect(**connect)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for line in sys.stdin:
                checked = await check(conn, decode_stretch(line))
                sys.stdout.write(encode_checked(checked) + "\n")
                sys.stdout.flush()
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(_serve())
