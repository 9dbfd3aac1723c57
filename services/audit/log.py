"""The audit log: appending entries, signed checkpoints, proofs, and verification of the whole log."""

import asyncio
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events import Envelope
from infra.db import Connection, connect_like
from infra.inbox import Fork, Held
from services.audit import keys, links, merkle, note, order, verifier

_APPEND_LOCK = 27_182_818
_ROOT = Path(__file__).resolve().parents[2]  # where `python -m services.audit.verifier` runs
PARALLEL_FROM = 1 << 17  # entries: below, starting checker processes costs more than it saves


@dataclass(frozen=True)
class EventSignature:
    """The publishing service's signature of an event as it arrived (infra.signing): kept with the
    entry, outside its leaf hash, so a third party can check who published what the log holds."""

    signature: str
    key_id: str
    topic: str


@dataclass(frozen=True)
class Arrival:
    """An event to log: its bytes as they arrived, read, and the signature it came with (if any)."""

    raw: bytes
    envelope: Envelope
    signed: EventSignature | None = None


async def append(
    conn: Connection, raw: bytes, envelope: Envelope, signed: EventSignature | None = None
) -> bool:
    """Log an event once, at the next position; False if it is already in the log (the same event id
    at the same source sequence, byte for byte). Fork if the log holds another event at its source
    sequence, or its id with other bytes: never logged, never taken for a duplicate (issue 20)."""
    [logged] = await append_many(conn, [Arrival(raw, envelope, signed)])
    return logged


# What the log holds of each event a batch names, by event id or by place, and the tree's right edge
# and next position: read in one statement (the append lock taken), each row carrying the edge.
_HELD = (
    "SELECT n.next, f.hashes, f.sizes, h.event_id, h.content_hash, h.source, h.source_sequence"
    " FROM (SELECT coalesce(max(position) + 1, 0) AS next FROM audit_log) n"
    " LEFT JOIN log_frontier f ON true"
    " LEFT JOIN ("
    "   SELECT event_id, content_hash, source, source_sequence FROM audit_log"
    "   WHERE event_id = any($1::uuid[])"
    "   UNION ALL SELECT l.event_id, l.content_hash, l.source, l.source_sequence"
    "   FROM unnest($2::text[], $3::bigint[]) AS k(source, source_sequence)"
    "   JOIN audit_log l USING (source, source_sequence)"
    " ) h ON true"
)
# The entries, the right edge after them and the tile cells they complete, in one statement: each
# cell appended to its tile (a tile's first makes it), the tiles' lengths returned to check.
_WRITE = (
    "WITH entries AS (INSERT INTO audit_log (position, event_id, source, source_sequence, event_type,"
    "   stream_id, case_id, occurred_at, actor_id, actor_role, envelope, content_hash, leaf_hash, root_after,"
    "   event_signature, event_key_id, event_topic)"
    "   SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::text[],"
    "     $7::uuid[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::bytea[],"
    "     $14::bytea[], $15::text[], $16::text[], $17::text[])),"
    " edge AS (INSERT INTO log_frontier (hashes, sizes) VALUES ($18, $19)"
    "   ON CONFLICT (only_row) DO UPDATE SET hashes = $18, sizes = $19)"
    " INSERT INTO audit_tiles (level, idx, hashes)"
    " SELECT * FROM unnest($20::smallint[], $21::bigint[], $22::bytea[])"
    " ON CONFLICT (level, idx) DO UPDATE SET hashes = audit_tiles.hashes || excluded.hashes"
    " RETURNING level, idx, octet_length(hashes) AS length"
)
_Held = tuple[Any, bytes, str, int]  # event id, content hash, source, source sequence


async def append_many(conn: Connection, arrivals: Sequence[Arrival]) -> list[bool]:
    """`append` for each event in turn, with the same outcome for each (False for one already logged,
    Fork for one that forks, the log's or an earlier one of these), in three round trips whatever
    their number: the append lock, what the log holds of them, and the entries written. Every entry
    still keeps its own tree head (root_after), as logging them one at a time leaves it."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
    rows = await conn.fetch(
        _HELD,
        [a.envelope.event_id for a in arrivals],
        [a.envelope.source for a in arrivals],
        [a.envelope.source_sequence for a in arrivals],
    )
    position: int = rows[0]["next"]
    edge = rows[0]
    frontier = list(zip(edge["sizes"], map(bytes, edge["hashes"]), strict=True)) if edge["sizes"] else []
    by_id: dict[Any, _Held] = {}
    by_place: dict[tuple[str, int], _Held] = {}
    for row in rows:
        if row["event_id"] is not None:
            known = (row["event_id"], bytes(row["content_hash"]), row["source"], row["source_sequence"])
            by_id[known[0]] = by_place[known[2], known[3]] = known
    logged: list[bool] = []
    written: list[tuple[int, Arrival, bytes, bytes, bytes]] = []  # position, arrival, digest, leaf, root
    cells: list[tuple[int, int, int, bytes]] = []
    for arrival in arrivals:
        envelope = arrival.envelope
        digest = hashlib.sha256(arrival.raw).digest()
        place = (envelope.source, envelope.source_sequence)
        # By id first, as one event's own row says more than another's at its place.
        held = by_id.get(envelope.event_id) or by_place.get(place)
        if held is not None:
            same_place = (held[2], held[3]) == place
            if held[0] == envelope.event_id and held[1] == digest and same_place:
                logged.append(False)
                continue
            raise Fork(
                held=Held(str(held[0]), held[1].hex()),
                other=Held(str(envelope.event_id), digest.hex()),
                source=envelope.source,
                source_sequence=envelope.source_sequence,
                why="the log holds another event at this source sequence"
                if held[0] != envelope.event_id
                else "the log holds this event id with other bytes"
                + ("" if same_place else f" at {held[2]} sequence {held[3]}"),
            )
        leaf = merkle.leaf_hash(arrival.raw)
        frontier, completed = merkle.push_completing(frontier, leaf)
        cells += merkle.tile_cells(position, completed)  # once in 256 entries, and rarer above
        written.append((position, arrival, digest, leaf, merkle.frontier_root(frontier)))
        by_id[envelope.event_id] = by_place[place] = (envelope.event_id, digest, *place)
        logged.append(True)
        position += 1
    if not written:
        return logged
    tiles = _tiles(cells)
    entries = [(p, a.envelope, a.signed) for p, a, _, _, _ in written]
    lengths = await conn.fetch(
        _WRITE,
        [p for p, _, _ in entries],
        [e.event_id for _, e, _ in entries],
        [e.source for _, e, _ in entries],
        [e.source_sequence for _, e, _ in entries],
        [e.event_type for _, e, _ in entries],
        [e.stream_id for _, e, _ in entries],
        [e.case_id for _, e, _ in entries],
        [e.occurred_at for _, e, _ in entries],
        [e.actor.id for _, e, _ in entries],
        [e.actor.role for _, e, _ in entries],
        [a.raw.decode() for _, a, _, _, _ in written],
        [digest for _, _, digest, _, _ in written],
        [leaf for _, _, _, leaf, _ in written],
        [root for _, _, _, _, root in written],
        [s.signature if s else None for _, _, s in entries],
        [s.key_id if s else None for _, _, s in entries],
        [s.topic if s else None for _, _, s in entries],
        [h for _, h in frontier],
        [n for n, _ in frontier],
        [level for level, _, _, _ in tiles],
        [index for _, index, _, _ in tiles],
        [hashes for _, _, _, hashes in tiles],
    )
    landed = {(row["level"], row["idx"]): row["length"] for row in lengths}
    for level, index, end, _ in tiles:
        if landed.get((level, index)) != 32 * end:
            raise RuntimeError(f"tile {index} of level {level} does not end where hash {end - 1} belongs")
    for p, envelope, _ in entries:
        await links.link(conn, p, envelope)  # an action's events only: none for most entries
    return logged


def _tiles(cells: list[tuple[int, int, int, bytes]]) -> list[tuple[int, int, int, bytes]]:
    """The cells appended, as (level, tile index, the offset its last lands at + 1, their hashes) per
    tile: one statement changes each tile once. A tile's cells come in order, one after another; each
    must land at its offset, or the tiles do not describe this log (a log whose tiles were never
    filled: migration 008)."""
    tiles: dict[tuple[int, int], tuple[int, list[bytes]]] = {}
    for level, index, offset, node in cells:
        end, nodes = tiles.setdefault((level, index), (offset, []))
        if offset != end:
            raise RuntimeError(f"tile {index} of level {level}: hash {offset} follows hash {end - 1}")
        nodes.append(node)
        tiles[level, index] = (offset + 1, nodes)
    return [(level, index, end, b"".join(nodes)) for (level, index), (end, nodes) in tiles.items()]


_LEAVES = "SELECT leaf_hash FROM audit_log WHERE $1::bigint IS NULL OR position < $1 ORDER BY position"
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, no flags, no header extension
_HASH_ROW = b"\x00\x01\x00\x00\x00\x20"  # one field, of 32 bytes


async def leaf_hashes(conn: Connection, tree_size: int | None = None) -> list[bytes]:
    """The leaf hashes in log order (of the first `tree_size` entries). A checkpoint and a proof need
    all of them: read as one binary COPY, a million take a fraction of the time rows take."""
    copied = io.BytesIO()
    await conn.copy_from_query(_LEAVES, tree_size, output=copied, format="binary")
    hashes = hashes_from_copy(copied.getvalue())
    if hashes is None:  # a leaf hash that is not 32 bytes (a tampered row): read row by row
        hashes = [bytes(r["leaf_hash"]) for r in await conn.fetch(_LEAVES, tree_size)]
    return hashes


def hashes_from_copy(copied: bytes) -> list[bytes] | None:
    """The values of a binary COPY of one bytea column when every value is 32 bytes long; None if
    any is not. Then each row is the same 38 bytes, so the checks and the cutting run in C."""
    body = len(copied) - len(_COPY_HEADER) - 2
    if not copied.startswith(_COPY_HEADER) or not copied.endswith(b"\xff\xff") or body % 38:
        return None
    n, start = body // 38, len(_COPY_HEADER)
    end = start + 38 * n
    if any(copied[start + k : end : 38] != bytes([b]) * n for k, b in enumerate(_HASH_ROW)):
        return None
    return [copied[at : at + 32] for at in range(start + 6, end, 38)]


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    root_hash: bytes

    def as_json(self) -> dict[str, object]:
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "proof": [h.hex() for h in self.path],
            "root_hash": self.root_hash.hex(),
        }


async def inclusion_proof(
    conn: Connection, position: int, tree_size: int | None = None
) -> InclusionProof | None:
    """The proof that entry `position` is in the tree of the first `tree_size` entries (default: all
    of them), with that tree's root; None if the log has no such tree or the entry is not in it."""
    n = await log_size(conn) if tree_size is None else tree_size
    if not 0 <= position < n:
        return None
    ranges = merkle.inclusion_ranges(position, n)
    try:
        leaf, *path = await range_hashes(conn, [(position, position + 1), *ranges])
    except LookupError:  # the leaf and its path cover every entry of the tree: one is not in the log
        return None
    return InclusionProof(position, n, leaf, path, merkle.root_from_inclusion(position, n, leaf, path))


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    path: list[bytes]


async def consistency_proof(conn: Connection, first: int, second: int) -> ConsistencyProof | None:
    """The proof that the tree of the first `first` entries is a prefix of the tree of the first
    `second`, with both roots; None if the log has no tree of `second` or `first` is not in 1..second."""
    if not 0 < first <= second:
        return None
    path = merkle.consistency_ranges(first, second)
    try:
        first_root, second_root, *hashes = await range_hashes(conn, [(0, first), (0, second), *path])
    except LookupError:  # the second tree has entries the log does not
        return None
    return ConsistencyProof(first, second, first_root, second_root, hashes)


async def log_size(conn: Connection) -> int:
    size: int = await conn.fetchval("SELECT coalesce(max(position) + 1, 0) FROM audit_log")
    return size


async def range_hashes(conn: Connection, ranges: list[tuple[int, int]]) -> list[bytes]:
    """MTH(D[lo:hi]) of each range as RFC 9162's recursion cuts the tree, from the tiles: each range
    is at most log n perfect subtrees, each one tile's cells (or, below height 8, up to 255 leaf
    hashes) hashed up, so a proof reads O(log n) nodes in two queries."""
    subtrees = {s for lo, hi in ranges for s in merkle.perfect_subtrees(lo, hi)}
    found = await _subtree_hashes(conn, subtrees)
    out = []
    for lo, hi in ranges:
        parts = [found[s] for s in merkle.perfect_subtrees(lo, hi)]
        top = parts[-1] if parts else merkle.EMPTY_ROOT
        for part in reversed(parts[:-1]):
            top = merkle.node_hash(part, top)
        out.append(top)
    return out


async def _subtree_hashes(conn: Connection, subtrees: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Each perfect subtree's hash (height, index), from the tiles and, below height 8, the leaf
    hashes: LookupError if they do not hold it."""
    spans = sorted((i << h, (i + 1) << h) for h, i in subtrees if h < merkle.TILE_HEIGHT)
    tiles = sorted({merkle.subtree_cells(h, i)[:2] for h, i in subtrees if h >= merkle.TILE_HEIGHT})
    rows = await conn.fetch(
        # Each span and tile looked up by its index (LATERAL ... LIMIT: never a join the planner may
        # turn into a scan of the log).
        "SELECT 0::smallint AS level, l.position AS idx, l.leaf_hash AS hashes"
        " FROM unnest($1::bigint[], $2::bigint[]) AS s (lo, hi), LATERAL (SELECT position, leaf_hash"
        " FROM audit_log WHERE position >= s.lo AND position < s.hi ORDER BY position LIMIT 128) AS l"
        " UNION ALL SELECT t.level, t.idx, t.hashes"
        " FROM unnest($3::smallint[], $4::bigint[]) AS k (level, idx), LATERAL (SELECT level, idx, hashes"
        " FROM audit_tiles WHERE (level, idx) = (k.level, k.idx) LIMIT 1) AS t",
        [lo for lo, _ in spans],
        [hi for _, hi in spans],
        [level for level, _ in tiles],
        [index for _, index in tiles],
    )  # one round trip: the leaf hashes (level 0, by position) and the tiles
    leaves = {row["idx"]: bytes(row["hashes"]) for row in rows if row["level"] == 0}
    stored = {(row["level"], row["idx"]): bytes(row["hashes"]) for row in rows if row["level"]}

    def subtree(height: int, index: int) -> bytes:
        if height < merkle.TILE_HEIGHT:
            lo = index << height
            nodes = [leaves.get(p) for p in range(lo, lo + (1 << height))]
            if any(node is None for node in nodes):
                raise LookupError(f"the log has no leaf hash for some of entries {lo}..{lo + len(nodes) - 1}")
            return merkle.perfect_root(nodes)  # type: ignore[arg-type]
        level, tile, offset, count = merkle.subtree_cells(height, index)
        cells = stored.get((level, tile), b"")[32 * offset : 32 * (offset + count)]
        if len(cells) != 32 * count:
            raise LookupError(f"tile {tile} of level {level} lacks the nodes of subtree {index} at {height}")
        return merkle.perfect_root([cells[at : at + 32] for at in range(0, len(cells), 32)])

    return {(h, i): subtree(h, i) for h, i in subtrees}


def checkpoint_message(tree_size: int, root_hash: bytes, signed_at: datetime) -> bytes:
    """What is signed: a line a verifier can rebuild from the checkpoint's three fields."""
    return f"leder-audit-checkpoint\n{tree_size}\n{root_hash.hex()}\n{signed_at.isoformat()}\n".encode()


public_bytes = keys.public_bytes


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root_hash: bytes
    signed_at: datetime
    signature: bytes
    public_key: bytes

    @property
    def key_fingerprint(self) -> str:
        """SHA-256 of the raw public key, hex: how a person compares the key with the one published."""
        return fingerprint(self.public_key)

    def as_json(self) -> dict[str, object]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "signed_at": self.signed_at.isoformat(),
            "signature": self.signature.hex(),
            "public_key": self.public_key.hex(),
            "algorithm": "Ed25519",
            "key_id": self.key_fingerprint[:16],
            "key_fingerprint": self.key_fingerprint,
        }

    def signature_valid(self, public_key: bytes) -> bool:
        """Signed by `public_key`: the key the verifier was given, never the one the checkpoint names
        (whoever forges a checkpoint names their own key in it)."""
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(
                self.signature, checkpoint_message(self.tree_size, self.root_hash, self.signed_at)
            )
            return True
        except (InvalidSignature, ValueError):
            return False


def fingerprint(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


async def sign_checkpoint(conn: Connection) -> Checkpoint:
    """Sign the tree head with the key from the file, publish the entries' order since the previous
    checkpoint (services.audit.order) and the tree head as a signed note to the checkpoint log outside
    the database, then record it: KeyMissing if either is not configured."""
    key = keys.signing_key()
    published_to = keys.checkpoint_log()
    if published_to is None:
        raise keys.KeyMissing("no checkpoint log to publish to: set LEDER_AUDIT_CHECKPOINT_LOG")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
        hashes = await leaf_hashes(conn)
        signed_at = datetime.now(UTC).replace(microsecond=0)
        top = merkle.root(hashes)
        signature = key.sign(checkpoint_message(len(hashes), top, signed_at))
        checkpoint = Checkpoint(len(hashes), top, signed_at, signature, public_bytes(key))
        signed_note = note.signed(keys.origin(), len(hashes), top, key, checkpoint.public_key)
        # The order the checkpoint commits to, outside the database too: what rebuilds a restored log.
        await order.publish(conn, published_to, len(hashes))
        await asyncio.to_thread(keys.publish, published_to, signed_note)
        await conn.execute(
            "INSERT INTO checkpoints VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            checkpoint.tree_size,
            top,
            signed_at,
            signature,
            checkpoint.public_key,
        )
    return checkpoint


async def latest_checkpoint(conn: Connection) -> Checkpoint | None:
    row = await conn.fetchrow("SELECT * FROM checkpoints ORDER BY signed_at DESC, tree_size DESC LIMIT 1")
    if row is None:
        return None
    return Checkpoint(
        row["tree_size"],
        bytes(row["root_hash"]),
        row["signed_at"],
        bytes(row["signature"]),
        bytes(row["public_key"]),
    )


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_bad_position: int | None = None
    problem: str | None = None
    checkpoint_tree_size: int | None = None
    root_hash: str | None = None  # of the whole log as recomputed (hex), when every entry checked out
    checkpoint: dict[str, object] | None = None  # the latest signed checkpoint, which was checked


@dataclass(frozen=True)
class Trust:
    """What a verification trusts, all from outside the database: the public key it was given, and
    the checkpoints published as they were signed (each already checked against that key), with
    whatever was wrong with the file that holds them."""

    public_key: bytes
    published: list[note.Published] = field(default_factory=list)
    published_problems: list[str] = field(default_factory=list)


def trust_from(public_key: bytes, checkpoint_log: Path | None) -> Trust:
    if checkpoint_log is None:
        return Trust(public_key)
    found, problems = keys.published(checkpoint_log, public_key, keys.origin())
    return Trust(public_key, found, problems)


def configured_trust() -> Trust:
    """The service's own: its pinned public key and its checkpoint log (KeyMissing without a key)."""
    return trust_from(keys.pinned_public_key(), keys.checkpoint_log())


async def verify(
    conn: Connection,
    trust: Trust,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 10_000,
    *,
    processes: int | None = None,
    stretch: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> Verification:
    """Recompute every entry's hashes from its stored bytes, check positions run 0..n-1 without a hole,
    then recompute the tree and check it against every published checkpoint and the latest signed one,
    each signature checked with the key given, and against the tiles the proofs are read from. A log of
    `parallel_from` entries or more is checked in stretches (`stretch` entries, a power of two; by
    default a few per process), one process per core (`processes`), in one snapshot: the same answer,
    sooner."""
    # The checkpoints first: one signed while the log is read covers entries the reading cannot see.
    checkpoint = await latest_checkpoint(conn)
    checkpoints = await conn.fetch(
        "SELECT tree_size, root_hash FROM checkpoints WHERE tree_size <= $1 ORDER BY tree_size",
        checkpoint.tree_size if checkpoint else -1,
    )
    published = sorted({(p.tree_size, p.root_hash) for p in trust.published})
    signed_sizes = {row["tree_size"] for row in checkpoints} | {size for size, _ in published}
    roots = {0: merkle.EMPTY_ROOT}  # the recomputed tree head at each signed size
    total = await conn.fetchval("SELECT count(*) FROM audit_log") if progress else 0
    workers = processes or os.cpu_count() or 1
    connect = _connect_kwargs(conn) if workers > 1 and not conn.is_in_transaction() else None
    if connect is not None and await log_size(conn) >= parallel_from:
        on_every_core = _on_every_core(conn, connect, workers, stretch, signed_sizes, roots, progress, total)
        expected, top, failure, tiles = await on_every_core
    else:
        expected, top, failure, tiles = await _on_one_core(conn, signed_sizes, roots, progress, total, batch)

    def result(
        ok: bool, first_bad: int | None = None, problem: str | None = None, read_through: bool = True
    ) -> Verification:
        """With the latest checkpoint, and the recomputed root when every entry checked out."""
        whole = top.hex() if read_through else None
        if checkpoint is None:
            return Verification(ok, expected, first_bad, problem, root_hash=whole)
        return Verification(
            ok, expected, first_bad, problem, checkpoint.tree_size, whole, checkpoint.as_json()
        )

    if failure is not None:
        return result(False, failure[0], failure[1], read_through=False)
    if progress:
        progress(expected, total)
    first_bad, problems = _against_published(published, roots, expected)
    problems += tiles
    problems += trust.published_problems
    if checkpoint is None:
        if published:
            problems.append(f"the database holds no checkpoint, yet {len(published)} were published")
        if problems:
            return result(False, first_bad, "; ".join(problems))
        return result(True, problem="no signed checkpoint yet")
    if not checkpoint.signature_valid(trust.public_key):
        problems.append(
            f"the latest checkpoint (tree size {checkpoint.tree_size}) is not signed by the pinned key"
            f" (fingerprint {fingerprint(trust.public_key)}; it names {checkpoint.key_fingerprint})"
        )
    if checkpoint.tree_size > expected:
        first_bad = expected if first_bad is None else min(first_bad, expected)
        problems.append(f"the checkpoint covers {checkpoint.tree_size} entries, the log has {expected}")
    elif roots[checkpoint.tree_size] != checkpoint.root_hash:
        divergence = _first_divergence([(r["tree_size"], bytes(r["root_hash"])) for r in checkpoints], roots)
        first_bad = divergence if first_bad is None else min(first_bad, divergence)
        problems.append("the log does not match the signed checkpoint")
    if (checkpoint.tree_size, checkpoint.root_hash) not in set(published):
        problems.append(
            f"the latest checkpoint (tree size {checkpoint.tree_size}) is not among the published ones"
        )
    if problems:
        return result(False, first_bad, "; ".join(problems))
    return result(True)


# Entries checked, the tree head after them, the failure, what the tiles get wrong (when none failed).
Outcome = tuple[int, bytes, tuple[int, str] | None, list[str]]


async def _on_one_core(
    conn: Connection,
    signed_sizes: set[int],
    roots: dict[int, bytes],
    progress: Callable[[int, int], None] | None,
    total: int,
    batch: int,
) -> Outcome:
    """Every entry in turn, in this process, as one stretch (verifier.check): its hashes, then the tree
    head after it, read `batch` entries at a time in one snapshot (the caller's, if it has begun one)."""
    ours = not conn.is_in_transaction()
    own = {"isolation": "repeatable_read", "readonly": True} if ours else {}
    async with conn.transaction(**own):  # type: ignore[arg-type]
        bounds = await conn.fetchrow("SELECT min(position) AS first, max(position) AS last FROM audit_log")
        if bounds is None or bounds["first"] is None:
            return 0, merkle.EMPTY_ROOT, None, await _tiles_against(conn, [], ours)
        if bounds["first"] != 0:
            return 0, merkle.EMPTY_ROOT, (0, f"entry 0 is missing (the next is {bounds['first']})"), []
        end: int = bounds["last"] + 1
        whole = verifier.Stretch(0, end, [], sorted({s for s in signed_sizes if s <= end} | {end}))
        told = (lambda done: progress(done, total)) if progress else None
        checked = await verifier.check(conn, whole, batch, told)
        roots.update((n, h) for n, h in checked.heads.items() if n in signed_sizes)
        at = checked.checked
        if checked.problem == "missing":
            missing = f"entry {at} is missing (the next is {checked.next_position})"
            return at, merkle.EMPTY_ROOT, (at, missing), []
        if checked.problem == "unmatched":
            return at, merkle.EMPTY_ROOT, (at, f"entry {at} does not match its hash"), []
        if checked.problem == "changed":
            changed = f"the history up to entry {at} is not the one that was logged"
            return at, merkle.EMPTY_ROOT, (at, changed), []
        return end, checked.heads[end], None, await _tiles_against(conn, checked.cells, ours)


async def _on_every_core(
    conn: Connection,
    connect: dict[str, Any],
    workers: int,
    stretch: int | None,
    signed_sizes: set[int],
    roots: dict[int, bytes],
    progress: Callable[[int, int], None] | None,
    total: int,
) -> Outcome:
    """The log cut into stretches at multiples of a power of two, each checked by a process of its own
    (services/audit/verifier.py) in this transaction's snapshot, given the tree's right edge where it
    starts as the tiles have it. Taken in order, each stretch's own root extends the edge the next
    needed: a stretch given another edge (tiles that lie) is checked again here with the true one, so
    the answer is the one a single pass gives."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        bounds = await conn.fetchrow("SELECT min(position) AS first, max(position) AS last FROM audit_log")
        if bounds is None or bounds["first"] is None:
            return 0, merkle.EMPTY_ROOT, None, await _tiles_against(conn, [], True)
        if bounds["first"] != 0:
            return 0, merkle.EMPTY_ROOT, (0, f"entry 0 is missing (the next is {bounds['first']})"), []
        end: int = bounds["last"] + 1
        size = stretch or max(1 << 12, 1 << (-(-end // (4 * workers)) - 1).bit_length())
        if size & (size - 1):
            raise ValueError(f"a stretch of {size} entries: not a power of two")
        stretches = [
            verifier.Stretch(
                lo, min(lo + size, end), [], sorted(s for s in signed_sizes if lo < s <= lo + size)
            )
            for lo in range(0, end, size)
        ]
        stretches[-1].signed.append(end)  # the head of the whole log
        edges = await _edges_from_tiles(conn, [s.lo for s in stretches])
        stretches = [replace(s, left=edges.get(s.lo, [])) for s in stretches]
        procs = [
            await _checker(connect | {"snapshot": snapshot}, stretches[w::workers]) for w in range(workers)
        ]
        try:
            edge: list[tuple[int, bytes]] = []  # the true right edge at each stretch's start
            head = merkle.EMPTY_ROOT
            cells: list[tuple[int, int, bytes]] = []  # the nodes the tiles must hold
            for k, s in enumerate(stretches):
                line = await procs[k % workers].stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise RuntimeError(f"the checker of entries {s.lo}..{s.hi - 1} stopped without an answer")
                checked = verifier.decode_checked(line.decode())
                if [h for _, h in edge] != s.left:
                    checked = await verifier.check(conn, replace(s, left=[h for _, h in edge]))
                roots.update((n, h) for n, h in checked.heads.items() if n in signed_sizes)
                at = s.lo + checked.checked
                if checked.problem == "missing":
                    after = checked.next_position
                    if after is None:
                        after = await conn.fetchval(
                            "SELECT min(position) FROM audit_log WHERE position > $1", at
                        )
                    return at, head, (at, f"entry {at} is missing (the next is {after})"), []
                if checked.problem == "unmatched":
                    return at, head, (at, f"entry {at} does not match its hash"), []
                if checked.problem == "changed":
                    changed = f"the history up to entry {at} is not the one that was logged"
                    return at, head, (at, changed), []
                cells += checked.cells
                if s is stretches[-1]:
                    head = checked.heads[end]
                if checked.own_root is not None:
                    edge.append((s.hi - s.lo, checked.own_root))
                    while len(edge) > 1 and edge[-1][0] == edge[-2][0]:
                        (n, left), (_, right) = edge[-2], edge[-1]
                        edge[-2:] = [(n * 2, merkle.node_hash(left, right))]
                        height = n.bit_length()  # of the merged node, of 2n entries ending at s.hi - 1
                        if height % merkle.TILE_HEIGHT == 0:
                            cells.append((height // merkle.TILE_HEIGHT, (s.hi - 1) >> height, edge[-1][1]))
                if progress:
                    progress(s.hi, total)
            return end, head, None, await _tiles_against(conn, cells, True)
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()


async def _tiles_against(conn: Connection, cells: list[tuple[int, int, bytes]], exact: bool) -> list[str]:
    """The stored tiles against the nodes recomputed from the entries (`cells`: every node of a tile
    level the log completes): each tile must hold its nodes, in order, and, read in the snapshot the
    entries were (`exact`), nothing more; otherwise a tile may have grown since with entries not read."""
    want: dict[tuple[int, int], list[tuple[int, bytes]]] = {}
    for level, index, node in cells:
        tile = (level, index >> merkle.TILE_HEIGHT)
        want.setdefault(tile, []).append((index & (merkle.TILE_WIDTH - 1), node))
    stored = {
        (r["level"], r["idx"]): bytes(r["hashes"]) for r in await conn.fetch("SELECT * FROM audit_tiles")
    }
    wrong = []
    for tile in sorted(want.keys() | stored.keys()):
        nodes = b"".join(node for _, node in sorted(want.get(tile, [])))
        held = stored.get(tile, b"")
        if (held if exact else held[: len(nodes)]) != nodes:
            wrong.append(tile)
    if not wrong:
        return []
    (level, index), more = wrong[0], len(wrong) - 1
    return [
        f"tile {index} of level {level}"
        + (f" and {more} more tiles do not hold" if more else " does not hold")
        + " the tree's nodes recomputed from the entries (the proofs are read from them)"
    ]


async def _checker(connect: dict[str, Any], stretches: list[verifier.Stretch]) -> asyncio.subprocess.Process:
    """A checker process, given how to connect and its stretches (on stdin, closed after them)."""
    root = str(_ROOT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.audit.verifier",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=root,
        limit=1 << 20,
    )
    assert proc.stdin is not None
    proc.stdin.write(
        "".join(
            f"{line}\n" for line in [json.dumps(connect), *map(verifier.encode_stretch, stretches)]
        ).encode()
    )
    await proc.stdin.drain()
    proc.stdin.close()
    return proc


async def _edges_from_tiles(conn: Connection, starts: list[int]) -> dict[int, list[bytes]]:
    """The tree's right edge at each start, as the tiles have it (what the checkers start from: the
    stretches before are checked meanwhile, and prove or disprove it)."""
    wanted = {start: merkle.perfect_subtrees(0, start) for start in starts}
    try:
        found = await _subtree_hashes(conn, {s for subtrees in wanted.values() for s in subtrees})
    except LookupError:
        return {}  # no tiles (yet): each stretch after the first is checked again here
    return {start: [found[s] for s in subtrees] for start, subtrees in wanted.items()}


def _connect_kwargs(conn: Connection) -> dict[str, Any] | None:
    """How another process reaches the same database as `conn`, read from asyncpg's connection; None
    when that cannot be told (a password that is not a string, TLS that verifies certificates)."""
    addr, params = getattr(conn, "_addr", None), getattr(conn, "_params", None)
    if addr is None or params is None or not isinstance(params.password, str | None):
        return None
    mode = getattr(getattr(params, "sslmode", None), "name", "disable")
    if mode not in ("disable", "allow", "prefer", "require"):
        return None
    if isinstance(addr, str):  # a Unix socket: /run/postgresql/.s.PGSQL.5432
        folder, _, port = addr.rpartition("/.s.PGSQL.")
        addr = (folder, int(port))
    return {
        "host": addr[0],
        "port": addr[1],
        "user": params.user,
        "password": params.password,
        "database": params.database,
        "ssl": mode,
    }


def _against_published(
    published: list[tuple[int, bytes]], roots: dict[int, bytes], entries: int
) -> tuple[int | None, list[str]]:
    """The recomputed history against each published checkpoint: the first entry that may have been
    changed (just after the last published checkpoint that still agrees), and what disagrees."""
    good = 0
    for size, root in published:
        if size > entries:
            return good, [
                f"the published checkpoint of tree size {size} covers more entries than the log has"
                f" ({entries}): entries from {good} on were removed or rewritten"
            ]
        if roots[size] != root:
            return good, [
                f"the published checkpoint of tree size {size} (root {root.hex()}) disagrees with the"
                f" log (root {roots[size].hex()}): the first bad entry is entry {good}, the first after"
                " the last published checkpoint that agrees"
            ]
        good = size
    return None, []


async def verify_off_the_loop(pool: asyncpg.Pool, trust: Trust) -> Verification:
    """`verify` in a thread of its own, on a connection of its own: recomputing millions of hashes
    must not hold up the requests the service's event loop is serving meanwhile."""

    async def own_connection() -> Verification:
        conn = await connect_like(pool)
        try:
            return await verify(conn, trust)
        finally:
            await conn.close()

    return await asyncio.to_thread(lambda: asyncio.run(own_connection()))


def _first_divergence(checkpoints: list[tuple[int, bytes]], roots: dict[int, bytes]) -> int:
    """An entry inserted or replaced wholesale (hashes and all) keeps its own hashes consistent; find the
    first position whose leaf is not the one earlier checkpoints committed to."""
    good = 0
    for size, root in checkpoints:
        if roots[size] == root:
            good = size
        else:
            return good  # the first bad entry lies between the last good checkpoint and this one
    return good
