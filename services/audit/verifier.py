"""The check of one stretch of the audit log, for a verification of the whole log on every core.

A stretch [lo, hi) starts at a multiple of a power of two, so the tree heads after its entries need
from the entries before it only their perfect subtrees (the tree's right edge at lo), which the
caller gives. Each stretch is then checked entry by entry (`check`), in a process of its own:
`python -m services.audit.verifier` reads one task a line on stdin (JSON, the first line how to
connect) and writes one result a line. A log too small to be worth the processes is checked by
`log.verify` as one stretch, in its own process, with the same `check`. Its imports are few on
purpose: starting a checker must cost little beside the seconds it saves."""

import asyncio
import hashlib
import json
import re
import struct
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg

from services.audit import merkle  # the standard library only

if TYPE_CHECKING:
    from infra.db import Connection  # a type only: a checker imports little

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
    # The tree's nodes the tiles hold that the stretch completes, as (tile level, index at that level's
    # height, hash): what the tiles must hold (merkle.tile_cells), for a stretch that checked out.
    cells: list[tuple[int, int, bytes]] = field(default_factory=list)


_EMPTY, _LEAF, _NODE = hashlib.sha256(), hashlib.sha256(b"\x00"), hashlib.sha256(b"\x01")
# A row as the binary COPY below sends it when every hash is 32 bytes long: its field count, then each
# field's length and value (the position, the content hash, the leaf hash, the tree head after it),
# then the envelope's length, its bytes following.
_ROW = struct.Struct(">hiqi32si32si32si")
_REGULAR = (5, 8, 32, 32, 32)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no header extension
_COPY_TRAILER = b"\xff\xff"
_ROWS = (
    "SELECT position, content_hash, leaf_hash, root_after, {envelope} FROM audit_log"
    " WHERE position >= {lo:d} AND position < {hi:d} ORDER BY position"
)


def rows_query(conn: "Connection", lo: int, hi: int) -> str:
    """The rows of entries lo..hi-1 for a binary COPY, each envelope as its UTF-8 bytes: a text column
    is sent in the client's encoding, UTF-8 on an asyncpg connection unless changed since, which
    spares the server a conversion a row (convert_to, otherwise)."""
    utf8 = conn.get_settings().client_encoding.upper() in ("UTF8", "UTF-8")
    return _ROWS.format(envelope="envelope" if utf8 else "convert_to(envelope, 'UTF8')", lo=lo, hi=hi)


async def check(
    conn: "Connection",
    stretch: Stretch,
    chunk: int = 1 << 16,
    progress: Callable[[int], None] | None = None,
) -> Checked:
    """Each entry's content hash and leaf hash from its bytes, and the tree head after it, in order;
    stops at the first that does not check out. The stretch is read as one binary COPY of each `chunk`
    positions (`progress` told the entries checked after each), so `conn` must be in a transaction
    that sees one snapshot (repeatable read) for the answer to be one state of the log."""
    checker = _Checker(stretch)
    for lo in range(stretch.lo, stretch.hi, chunk):
        checker.begin()
        await conn.copy_from_query(
            rows_query(conn, lo, min(lo + chunk, stretch.hi)), output=checker, format="binary"
        )
        checker.end()
        if checker.problem is not None:
            return Checked(
                stretch.lo,
                checker.expected - stretch.lo,
                checker.problem,
                checker.next_position,
                None,
                checker.heads,
            )
        if progress:
            progress(checker.expected)
    if checker.expected != stretch.hi:
        return Checked(stretch.lo, checker.expected - stretch.lo, "missing", None, None, checker.heads)
    own = checker.own_root()
    return Checked(stretch.lo, stretch.hi - stretch.lo, None, None, own, checker.heads, checker.cells)


def _leaf(raw: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + raw).digest()


def _state(node: bytes) -> "hashlib._Hash":
    h = _NODE.copy()
    h.update(node)
    return h


class _Checker:
    """One stretch's check as COPY streams its rows in: each row cut out of the binary COPY where it
    lies (a row whose hashes are all 32 bytes has its fixed fields at fixed offsets), never decoded
    into a record. The tree head after each entry is the fold of the tree's right edge, kept as
    SHA-256 states that have hashed 0x01 and the edge's node already: each of the dozen hashes an
    entry takes is a copy, an update and a digest (OpenSSL 3 makes a fresh state cost twice a copy)."""

    def __init__(self, stretch: Stretch) -> None:
        self.lo = stretch.lo
        self.signed = set(stretch.signed)
        self.heads: dict[int, bytes] = {}
        self.expected = stretch.lo
        self.problem: str | None = None  # "missing", "unmatched" or "changed", at `expected`
        self.next_position: int | None = None
        # The tree's right edge, largest first: the stretch's left edge, then its own perfect subtrees.
        self.states = [_state(node) for node in stretch.left]
        self.own_from = len(self.states)
        self.last = b""  # the smallest subtree of the edge, whose state is the last
        self.cells: list[tuple[int, int, bytes]] = []
        self.pending = b""
        self.header = True

    def begin(self) -> None:
        self.pending, self.header = b"", True

    async def __call__(self, data: bytes) -> None:
        if self.problem is not None:
            return  # the rest of the COPY is read, not looked at
        buf = self.pending + data if self.pending else data
        at = 0
        if self.header:
            if len(buf) < len(_COPY_HEADER):
                self.pending = buf
                return
            if not buf.startswith(_COPY_HEADER):
                raise ValueError("not a binary COPY without a header extension")
            at, self.header = len(_COPY_HEADER), False
        self.pending = buf[self._rows(buf, at) :]

    def end(self) -> None:
        """After a COPY: what is left is its trailer, or a row too short to be a regular one."""
        if self.problem is not None or self.pending == _COPY_TRAILER:
            return
        row = _fields(self.pending, 0)
        if row is None:
            raise ValueError("the COPY ended inside a row")
        self._irregular(*row)

    def own_root(self) -> bytes:
        own = self.last
        for h in reversed(self.states[self.own_from : -1]):
            h = h.copy()
            h.update(own)
            own = h.digest()
        return own

    def _rows(self, buf: bytes, at: int) -> int:
        """Check the whole rows in buf from `at`: where the first incomplete one starts."""
        unpack, fixed, end = _ROW.unpack_from, _ROW.size, len(buf)
        leaf_copy, content_copy, node_copy = _LEAF.copy, _EMPTY.copy, _NODE.copy
        lo, signed, heads, states = self.lo, self.signed, self.heads, self.states
        expected, last = self.expected, self.last
        try:
            while end - at >= fixed:
                (
                    fields,
                    position_size,
                    position,
                    content_size,
                    content_hash,
                    leaf_size,
                    leaf_hash,
                    root_size,
                    root_after,
                    size,
                ) = unpack(buf, at)
                if (fields, position_size, content_size, leaf_size, root_size) != _REGULAR or size < 0:
                    row = _fields(buf, at)
                    if row is None:  # a short row cut where this buffer ends
                        return at
                    self.expected = expected
                    self._irregular(*row)
                    return end
                start = at + fixed
                if end - start < size:
                    return at
                at = start + size
                raw = buf[start:at]
                if position != expected:
                    self.problem, self.next_position = "missing", position
                    return end
                h = leaf_copy()
                h.update(raw)
                leaf = h.digest()
                h = content_copy()
                h.update(raw)
                if h.digest() != content_hash or leaf != leaf_hash:
                    self.problem = "unmatched"
                    return end
                node, n = leaf, expected - lo
                if n & 0xFF == 0xFF:  # once in 256 entries: a node the tiles hold is completed
                    node = self._merge_into_cells(node, n, expected)
                else:
                    while n & 1:  # equal perfect subtrees merge: as many as the count's trailing one bits
                        h = states.pop()  # the state is not kept: no copy
                        h.update(node)
                        node = h.digest()
                        n >>= 1
                top = node
                for h in reversed(states):
                    h = h.copy()
                    h.update(top)
                    top = h.digest()
                if top != root_after:
                    self.problem = "changed"
                    return end
                h = node_copy()
                h.update(node)
                states.append(h)
                last = node
                expected += 1
                if expected in signed:
                    heads[expected] = top
            return at
        finally:
            self.expected, self.last = expected, last

    def _merge_into_cells(self, node: bytes, n: int, position: int) -> bytes:
        """The merges an entry makes (its count's trailing one bits), as the loop makes them, each node
        of a height the tiles hold kept as the cell the tiles must hold (merkle.tile_cells)."""
        height = 0
        while n & 1:
            h = self.states.pop()
            h.update(node)
            node = h.digest()
            n >>= 1
            height += 1
            if height % merkle.TILE_HEIGHT == 0:
                self.cells.append((height // merkle.TILE_HEIGHT, position >> height, node))
        return node

    def _irregular(
        self,
        position: int | None,
        content_hash: bytes | None,
        leaf_hash: bytes | None,
        root_after: bytes | None,
        raw: bytes | None,
    ) -> None:
        """A row with a field of another length than a hash's (or none): where it fails. Its tree
        head is checked only if its own hashes check out, so it is not of a hash's length."""
        if position != self.expected:
            self.problem, self.next_position = "missing", position
        elif raw is None or (hashlib.sha256(raw).digest(), _leaf(raw)) != (content_hash, leaf_hash):
            self.problem = "unmatched"
        else:
            self.problem = "changed"


def _fields(buf: bytes, at: int) -> tuple[Any, ...] | None:
    """A row of the COPY read field by field, whatever their lengths: (position, content hash, leaf
    hash, tree head, envelope bytes), None for a NULL; None if buf ends inside it."""
    if len(buf) - at < 2:
        return None
    (count,) = struct.unpack_from(">h", buf, at)
    at += 2
    values: list[bytes | None] = []
    for _ in range(count):
        if len(buf) - at < 4:
            return None
        (size,) = struct.unpack_from(">i", buf, at)
        at += 4
        if size < 0:
            values.append(None)
            continue
        if len(buf) - at < size:
            return None
        values.append(buf[at : at + size])
        at += size
    if count != 5 or values[0] is None or len(values[0]) != 8:
        raise ValueError(f"a row of the COPY with {count} fields, or a position that is not a bigint")
    return (int.from_bytes(values[0], "big", signed=True), *values[1:])


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
    out["cells"] = [[level, index, node.hex()] for level, index, node in checked.cells]
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
        [(level, index, bytes.fromhex(node)) for level, index, node in got["cells"]],
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
