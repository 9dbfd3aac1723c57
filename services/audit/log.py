"""The audit log: appending entries, signed checkpoints, proofs, and verification of the whole log."""

import asyncio
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events import Envelope
from infra.db import Connection, connect_like
from infra.inbox import Fork, Held
from services.audit import keys, links, merkle, note

_APPEND_LOCK = 27_182_818


@dataclass(frozen=True)
class EventSignature:
    """The publishing service's signature of an event as it arrived (infra.signing): kept with the
    entry, outside its leaf hash, so a third party can check who published what the log holds."""

    signature: str
    key_id: str
    topic: str


async def append(
    conn: Connection, raw: bytes, envelope: Envelope, signed: EventSignature | None = None
) -> bool:
    """Log an event once, at the next position; False if it is already in the log (the same event id
    at the same source sequence, byte for byte). Fork if the log holds another event at its source
    sequence, or its id with other bytes: never logged, never taken for a duplicate (issue 20)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK)
    digest = hashlib.sha256(raw).digest()
    held = await conn.fetchrow(
        "SELECT event_id, content_hash, source, source_sequence FROM audit_log"
        " WHERE event_id = $1 OR (source = $2 AND source_sequence = $3)"
        " ORDER BY (event_id = $1) DESC LIMIT 1",
        envelope.event_id,
        envelope.source,
        envelope.source_sequence,
    )
    if held is not None:
        same_place = (held["source"], held["source_sequence"]) == (envelope.source, envelope.source_sequence)
        if held["event_id"] == envelope.event_id and bytes(held["content_hash"]) == digest and same_place:
            return False
        raise Fork(
            held=Held(str(held["event_id"]), bytes(held["content_hash"]).hex()),
            other=Held(str(envelope.event_id), digest.hex()),
            source=envelope.source,
            source_sequence=envelope.source_sequence,
            why="the log holds another event at this source sequence"
            if held["event_id"] != envelope.event_id
            else "the log holds this event id with other bytes"
            + ("" if same_place else f" at {held['source']} sequence {held['source_sequence']}"),
        )
    position = await conn.fetchval("SELECT coalesce(max(position) + 1, 0) FROM audit_log")
    row = await conn.fetchrow("SELECT hashes, sizes FROM log_frontier")
    frontier = list(zip(row["sizes"], map(bytes, row["hashes"]), strict=True)) if row else []
    leaf = merkle.leaf_hash(raw)
    frontier = merkle.push(frontier, leaf)
    await conn.execute(
        "INSERT INTO audit_log (position, event_id, source, source_sequence, event_type, stream_id, case_id,"
        " occurred_at, actor_id, actor_role, envelope, content_hash, leaf_hash, root_after,"
        " event_signature, event_key_id, event_topic)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        position,
        envelope.event_id,
        envelope.source,
        envelope.source_sequence,
        envelope.event_type,
        envelope.stream_id,
        envelope.case_id,
        envelope.occurred_at,
        envelope.actor.id,
        envelope.actor.role,
        raw.decode(),
        digest,
        leaf,
        merkle.frontier_root(frontier),
        signed.signature if signed else None,
        signed.key_id if signed else None,
        signed.topic if signed else None,
    )
    await conn.execute(
        "INSERT INTO log_frontier (hashes, sizes) VALUES ($1, $2)"
        " ON CONFLICT (only_row) DO UPDATE SET hashes = $1, sizes = $2",
        [h for _, h in frontier],
        [n for n, _ in frontier],
    )
    await links.link(conn, position, envelope)
    return True


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
    hashes = await leaf_hashes(conn, tree_size)
    if (tree_size is not None and tree_size > len(hashes)) or not 0 <= position < len(hashes):
        return None
    tree = await asyncio.to_thread(merkle.levels, hashes)  # a million hashes: off the event loop
    return InclusionProof(position, len(hashes), hashes[position], merkle.path(position, tree), tree[-1][0])


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
    """Sign the tree head with the key from the file, publish it as a signed note to the checkpoint
    log outside the database, then record it: KeyMissing if either is not configured."""
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
) -> Verification:
    """Recompute every entry's hashes from its stored bytes, check positions run 0..n-1 without a hole,
    then recompute the tree and check it against every published checkpoint and the latest signed one,
    each signature checked with the key given."""
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
    sha256 = hashlib.sha256
    edge = merkle.RightEdge()
    top = merkle.EMPTY_ROOT
    expected = 0

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

    async with conn.transaction():
        cursor = conn.cursor(
            "SELECT position, envelope, content_hash, leaf_hash, root_after FROM audit_log ORDER BY position",
            prefetch=batch,
        )
        # Millions of entries: each row unpacked, nothing built per entry that is not needed.
        async for position, envelope, content_hash, leaf_hash, root_after in cursor:
            if position != expected:
                missing = f"entry {expected} is missing (the next is {position})"
                return result(False, expected, missing, read_through=False)
            raw = envelope.encode()
            leaf = sha256(b"\x00" + raw).digest()
            if sha256(raw).digest() != content_hash or leaf != leaf_hash:
                unmatched = f"entry {position} does not match its hash"
                return result(False, position, unmatched, read_through=False)
            top = edge.add(leaf)
            if top != root_after:
                changed = f"the history up to entry {position} is not the one that was logged"
                return result(False, position, changed, read_through=False)
            expected += 1
            if expected in signed_sizes:
                roots[expected] = top
            if progress and expected % batch == 0:
                progress(expected, total)
    if progress:
        progress(expected, total)
    first_bad, problems = _against_published(published, roots, expected)
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
