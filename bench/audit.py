"""Audit benchmarks (issue 9, item 3; issue 18, item 3): verification of the whole log (target at least
200,000 entries per second), replay of a case with 1,000 events (target p99 under 50 ms, measured as
the service runs it: with the heap start-up built frozen), and inclusion proofs in a log of 1,000,000
entries (target p99 under 5 ms), read from the tree's tiles.

The log is made of real cases: a few run through the four case services' own code (bench/world.py),
one of them with exactly 1,000 events, copied under fresh ids (every id, sequence number and time
rewritten in the canonical text, so each copy is a valid envelope) and interleaved as concurrent
cases are, over two years. The entries are written with COPY, each one's content hash, leaf hash and
tree head after it computed with the log's own Merkle code and the tree's right edge stored as
log.append leaves it, then the tiles are filled by migration 008's audit_fill_tiles() (what it does
to a log that had none); the last entries go through log.append itself, a checkpoint is signed with
log.sign_checkpoint, and the table is vacuumed, as autovacuum would have done in a long-lived log.
Every figure is then measured through the functions the service's API and CLI call, on a database
migrated with the audit service's migrations, and checked: the log verifies, the replayed case has
its 1,000 events and its final state, and every proof verifies with the standard-library verifier
against the signed checkpoint.

`--quick` (CI) builds a log of 20,000 entries, checks the same things and writes nothing to
bench/results.md; the full run (1,000,000 entries) writes its section."""

import argparse
import asyncio
import gc
import hashlib
import heapq
import os
import random
import re
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg

from bench.common import machine, server, write_section
from bench.world import hire_staff, long_case, open_world, run_cases
from events import Envelope
from events.canonical import format_datetime
from infra import db
from infra.local import audit_key_files
from infra.logging import configure_logging
from infra.service import open_store
from infra.settings import Settings, database_url_for
from services.audit import keys, log, merkle, store, verifier
from services.audit.app import definition as audit_service
from services.audit.replay import state_as_of

VERIFY_TARGET = 200_000  # entries per second
REPLAY_TARGET = 0.050  # p99, seconds
PROOF_TARGET = 0.005  # p99, seconds
CASE_EVENTS = 1_000
COLUMNS = [
    "position", "event_id", "source", "source_sequence", "event_type", "stream_id", "case_id",
    "occurred_at", "actor_id", "actor_role", "envelope", "content_hash", "leaf_hash", "root_after",
]  # fmt: skip
# What a copy rewrites in an envelope's canonical text: every id, the sequence, the two times.
SLOTS = re.compile(
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r'|"source_sequence":(?P<sequence>\d+)'
    r'|"(?P<time>occurred_at|recorded_at)":"[^"]+"'
)


@dataclass
class Template:
    """One event of a template case, its canonical text cut where a copy differs."""

    envelope: Envelope
    texts: list[str]  # the literal text around the slots
    slots: list[tuple[str, str]]  # ("id", the original id) | ("sequence", "") | ("time", key)

    @classmethod
    def of(cls, raw: str) -> "Template":
        texts, slots, at = [], [], 0
        for match in SLOTS.finditer(raw):
            texts.append(raw[at : match.start()])
            if match["id"]:
                slots.append(("id", match["id"]))
            elif match["sequence"]:
                slots.append(("sequence", ""))
            else:
                slots.append(("time", match["time"]))
            at = match.end()
        texts.append(raw[at:])
        return cls(Envelope.from_bytes(raw), texts, slots)


@dataclass
class Copy:
    """One copy of a template case: its own ids, and its events' times."""

    events: list[Template]
    times: list[datetime]
    ids: dict[str, str] = field(default_factory=dict)

    def id(self, old: str) -> str:
        new = self.ids.get(old)
        if new is None:
            new = self.ids[old] = str(uuid4())
        return new

    def render(self, i: int, sequence: int) -> tuple[str, Envelope, str, str | None]:
        """The i-th event's canonical text, its template's envelope, its stream and its case."""
        template = self.events[i]
        stamp = format_datetime(self.times[i])
        parts = [template.texts[0]]
        for (kind, value), text in zip(template.slots, template.texts[1:], strict=True):
            if kind == "id":
                parts.append(self.id(value))
            elif kind == "sequence":
                parts.append(f'"source_sequence":{sequence}')
            else:
                parts.append(f'"{value}":"{stamp}"')
            parts.append(text)
        e = template.envelope
        stream = SLOTS.sub(lambda m: self.id(m[0]) if m["id"] else m[0], e.stream_id)
        return "".join(parts), e, stream, self.id(str(e.case_id)) if e.case_id else None


def templates_of(envelopes: Sequence[str]) -> list[list[Template]]:
    """The world's events, in the order they happened across the services, as cases to copy: each
    case with everything about it (a reviewer's or a panel's stream is a unit of its own)."""
    events = sorted((Template.of(raw) for raw in envelopes), key=lambda t: t.envelope.recorded_at)
    unit_of_stream: dict[str, str] = {}
    units: dict[str, list[Template]] = {}
    for t in events:
        e = t.envelope
        case_ids = e.data.get("case_ids") or [None]
        key = unit_of_stream.setdefault(e.stream_id, str(e.case_id or case_ids[0] or e.stream_id))
        units.setdefault(key, []).append(t)
    return list(units.values())


@dataclass
class Entry:
    text: str
    envelope: Envelope  # the template's: source, type, actor
    event_id: str
    stream: str
    case_id: str | None
    occurred_at: datetime
    sequence: int


def entries(
    units: list[list[Template]], long: list[Template], n: int, long_copies: int, rng: random.Random
) -> tuple[Iterator[Entry], list[str]]:
    """`n` entries: copies of the units, one after another, each case's events spread over its months,
    all merged in time order; `long_copies` copies of the long case among them, early enough to end."""
    start = datetime.now(UTC) - timedelta(days=3 * 365)
    span = timedelta(days=2 * 365)
    per_unit = sum(len(u) for u in units) / len(units)
    every = span / max(1, int((n - long_copies * len(long)) / per_unit))
    long_starts = [start + span * (0.1 + 0.4 * k / max(1, long_copies)) for k in range(long_copies)]
    long_case_ids: list[str] = []
    long_done: set[int] = set()

    def copy_of(events: list[Template], begins: datetime) -> Copy:
        lasts = timedelta(days=rng.uniform(30, 200))
        offsets = sorted(rng.random() for _ in events)
        return Copy(events, [begins + lasts * f for f in offsets])

    def generate() -> Iterator[Entry]:
        sequences: dict[str, int] = {}
        heap: list[tuple[datetime, int, int, Copy]] = []
        started = 0
        for k, begins in enumerate(long_starts):
            c = copy_of(long, begins)
            long_case_ids.append(c.id(next(str(t.envelope.case_id) for t in long if t.envelope.case_id)))
            heapq.heappush(heap, (c.times[0], -1 - k, 0, c))
        made = 0
        while made < n:
            next_start = start + every * started
            if not heap or next_start <= heap[0][0]:
                c = copy_of(units[started % len(units)], next_start)
                heapq.heappush(heap, (c.times[0], started, 0, c))
                started += 1
                continue
            _, key, i, c = heapq.heappop(heap)
            source = c.events[i].envelope.source
            sequences[source] = sequence = sequences.get(source, 0) + 1
            text, e, stream, case_id = c.render(i, sequence)
            yield Entry(text, e, c.id(str(e.event_id)), stream, case_id, c.times[i], sequence)
            made += 1
            if i + 1 < len(c.events):
                heapq.heappush(heap, (c.times[i + 1], key, i + 1, c))
            elif key < 0:
                long_done.add(key)
        for key in range(long_copies):
            if -1 - key not in long_done:
                raise AssertionError("a copy of the long case did not end inside the log: make it longer")

    return generate(), long_case_ids


async def fill(pool: asyncpg.Pool, made: Iterator[Entry], n: int, tail: int, chunk: int = 20_000) -> float:
    """The first n - tail entries with COPY, hashed with the log's own code, and their tiles filled as
    migration 008 fills them (its seconds returned); the rest through log.append itself, which carries
    on from the right edge and the tiles written here."""
    frontier: list[tuple[int, bytes]] = []
    rows: list[tuple[object, ...]] = []
    async with pool.acquire() as conn:
        for position in range(n - tail):
            entry = next(made)
            raw = entry.text.encode()
            leaf = merkle.leaf_hash(raw)
            frontier = merkle.push(frontier, leaf)
            e = entry.envelope
            rows.append(
                (
                    position, UUID(entry.event_id), e.source, entry.sequence, e.event_type, entry.stream,
                    UUID(entry.case_id) if entry.case_id else None, entry.occurred_at, e.actor.id,
                    e.actor.role, entry.text, hashlib.sha256(raw).digest(), leaf,
                    merkle.frontier_root(frontier),
                )
            )  # fmt: skip
            if len(rows) == chunk or position == n - tail - 1:
                await conn.copy_records_to_table("audit_log", records=rows, columns=COLUMNS)
                rows = []
        await conn.execute(
            "INSERT INTO log_frontier (hashes, sizes) VALUES ($1, $2)",
            [h for _, h in frontier],
            [size for size, _ in frontier],
        )
        started = time.perf_counter()
        await conn.execute("SELECT audit_fill_tiles()")
        tiles_seconds = time.perf_counter() - started
        for entry in made:
            envelope = Envelope.from_bytes(entry.text)
            if envelope.canonical().decode() != entry.text:
                raise AssertionError(f"a copied event is not canonical: {entry.text}")
            async with conn.transaction():
                assert await log.append(conn, entry.text.encode(), envelope)
    return tiles_seconds


def percentile(samples: Sequence[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


@dataclass
class Figures:
    entries: int
    entry_bytes: float
    verify_seconds: float
    verify_cpu: float  # this process's and its checker processes'
    read_seconds: float
    tiles_seconds: float
    replay: list[float]  # as the service runs it: the heap start-up built frozen
    replay_unfrozen: list[float]
    replay_fetch: list[float]
    replay_parse: list[float]
    replay_fold: list[float]
    full_collections: int  # during the frozen replays
    full_collections_unfrozen: int
    replay_objects: int
    proofs: list[float]
    consistency: list[float]
    replay_cpu: list[float]  # this process's CPU time of each frozen replay: what the load does not change
    proofs_cpu: list[float]

    def rows(self) -> list[tuple[str, str, str, str]]:
        verify_rate = self.entries / self.verify_seconds
        p99 = percentile(self.replay, 99)
        proof_p99 = percentile(self.proofs, 99)
        return [
            (
                f"verification of the whole log ({self.entries:,} entries)",
                f"{verify_rate:,.0f} entries/s ({self.verify_seconds:.1f} s)",
                f"≥ {VERIFY_TARGET:,} entries/s",
                "met" if verify_rate >= VERIFY_TARGET else "missed",
            ),
            (
                f"replay of a case with {CASE_EVENTS:,} events (heap frozen after start-up)",
                f"p50 {percentile(self.replay, 50) * 1e3:.1f} ms, p95 {percentile(self.replay, 95) * 1e3:.1f}"
                f" ms, p99 {p99 * 1e3:.1f} ms",
                f"p99 < {REPLAY_TARGET * 1e3:.0f} ms",
                "met" if p99 < REPLAY_TARGET else "missed",
            ),
            (
                f"inclusion proof, log of {self.entries:,}",
                f"p50 {percentile(self.proofs, 50) * 1e3:,.2f} ms, p99 {proof_p99 * 1e3:,.2f} ms",
                f"p99 < {PROOF_TARGET * 1e3:.0f} ms",
                "met" if proof_p99 < PROOF_TARGET else "missed",
            ),
            (
                f"consistency proof, log of {self.entries:,}",
                f"p50 {percentile(self.consistency, 50) * 1e3:,.2f} ms,"
                f" p99 {percentile(self.consistency, 99) * 1e3:,.2f} ms",
                "none set",
                "n/a",
            ),
        ]

    def limits(self) -> list[str]:
        per_entry = self.verify_seconds / self.entries * 1e6
        read = self.read_seconds / self.entries * 1e6
        hashes_per_entry = 2 + statistics.mean(bin(k).count("1") for k in range(1, self.entries, 997))
        replay, fetch, parse, fold = (
            statistics.median(x) * 1e3
            for x in (self.replay, self.replay_fetch, self.replay_parse, self.replay_fold)
        )
        return [
            f"Verification cuts the log into stretches at multiples of a power of two, each checked by a"
            f" process of its own (one per core, {os.cpu_count()} here) in one snapshot, the tree's right"
            f" edge at each stretch's start taken from the tiles and proved by the stretches before it;"
            f" each stretch is read as binary COPY and each row cut where its fields lie, never decoded"
            f" into a record: {per_entry:.1f} µs of wall time per entry,"
            f" {self.verify_cpu / self.entries * 1e6:.1f} µs of CPU in the checkers and this process"
            f" (PostgreSQL's own work not counted), receiving the COPY alone taking {read:.1f} µs an entry"
            f" in one process. Each entry is about {hashes_per_entry:.0f} SHA-256 (two over its"
            f" {self.entry_bytes:,.0f} bytes, the others for the tree head after it, which its stored"
            " tree head is checked against: one per perfect subtree of the tree's right edge, inherent"
            " to checking every entry's), each a copy of a state that has hashed its prefix, an update"
            " and a digest, about 0.45 µs in Python for the 65 bytes of a node: most"
            " of it is OpenSSL 3's work to copy and finish a state, not the hashing itself."
            " Two cores are shared by the checkers and the PostgreSQL backends serving them.",
            f"Replay (median {replay:.1f} ms) is reading the case's {CASE_EVENTS:,} rows ({fetch:.1f} ms),"
            f" parsing their envelopes with pydantic ({parse:.1f} ms) and folding them ({fold:.1f} ms),"
            f" each timed apart. Parsing the case makes {self.replay_objects:,} objects the collector"
            f" tracks; with the heap start-up built frozen (gc.freeze(), as every service does after"
            f" start-up), {self.full_collections} full collections ran in {len(self.replay)} replays;"
            f" unfrozen, {self.full_collections_unfrozen} ran and p99 was"
            f" {percentile(self.replay_unfrozen, 99) * 1e3:.1f} ms.",
            f"An inclusion proof reads O(log n) nodes: the perfect subtrees its path is made of, each from"
            f" one tile of the tree's inner nodes (C2SP tlog-tiles, height 8) or, below height 8, up to 255"
            f" leaf hashes, in one query, and hashes them up (at most 127 hashes a subtree). Filling the"
            f" tiles of the {self.entries:,}-entry log (migration 008's audit_fill_tiles, in PostgreSQL)"
            f" took {self.tiles_seconds:.1f} s.",
            f"The cores are shared with other work (the load average below): this process's own CPU time"
            f" per replay was p50 {percentile(self.replay_cpu, 50) * 1e3:.1f} ms, p99"
            f" {percentile(self.replay_cpu, 99) * 1e3:.1f} ms; per inclusion proof p50"
            f" {percentile(self.proofs_cpu, 50) * 1e3:.2f} ms, p99"
            f" {percentile(self.proofs_cpu, 99) * 1e3:.2f} ms (PostgreSQL's not counted); the rest of each"
            " wall time is waiting for a core or for the database.",
        ]


async def discard(data: bytes) -> None:
    pass


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def timed_replays(
    pool: asyncpg.Pool, long_case_ids: list[str], replays: int, cpu: list[float] | None = None
) -> tuple[list[float], int]:
    """GET /audit/cases/{id}/state's work, `replays` times: the times (and CPU times into `cpu`), and
    the full collections."""
    times = []
    full_collections = gc.get_stats()[2]["collections"]
    for i in range(replays):
        case_id = UUID(long_case_ids[i % len(long_case_ids)])
        started, used = time.perf_counter(), time.process_time()
        logged = await store.case_entries(pool, case_id)  # what GET /audit/cases/{id}/state runs
        state = state_as_of(str(case_id), [e for _, e in logged], datetime.now(UTC))
        times.append(time.perf_counter() - started)
        if cpu is not None:
            cpu.append(time.process_time() - used)
        if (len(logged), state.events_seen, state.status) != (CASE_EVENTS, CASE_EVENTS, "closed"):
            raise AssertionError(f"case {case_id}: {len(logged)} entries, state {state}")
    return times, gc.get_stats()[2]["collections"] - full_collections


async def measure(
    pool: asyncpg.Pool, long_case_ids: list[str], proofs: int, replays: int, tiles_seconds: float
) -> Figures:
    rng = random.Random(11)
    # What a service does once started (infra/service.py): the heap built so far is frozen, so that
    # the collector's full passes do not walk it.
    gc.collect()
    gc.freeze()
    async with pool.acquire() as conn:
        checkpoint = await log.sign_checkpoint(conn)
        await conn.execute("VACUUM (ANALYZE) audit_log")
        entry_bytes = await conn.fetchval("SELECT avg(octet_length(envelope)) FROM audit_log")
        started, cpu = time.perf_counter(), time.process_time() + children_cpu()
        verified = await log.verify(conn, log.configured_trust())
        verify_seconds = time.perf_counter() - started
        verify_cpu = time.process_time() + children_cpu() - cpu
        if not verified.ok or verified.checkpoint_tree_size != checkpoint.tree_size:
            raise AssertionError(f"the log does not verify: {verified}")
        started = time.perf_counter()
        # The same read as the checkers' (binary COPY), without the hashing: what reading costs.
        await conn.copy_from_query(
            verifier.rows_query(conn, 0, checkpoint.tree_size), output=discard, format="binary"
        )
        read_seconds = time.perf_counter() - started

    replay_cpu: list[float] = []
    replay, full_collections = await timed_replays(pool, long_case_ids, replays, replay_cpu)
    gc.unfreeze()  # the same replays with nothing frozen: what freezing removes
    replay_unfrozen, full_collections_unfrozen = await timed_replays(pool, long_case_ids, replays)
    # Where the time goes: the same steps timed apart.
    replay_fetch, replay_parse, replay_fold = [], [], []
    replay_objects = 0
    for i in range(replays):
        case_id = UUID(long_case_ids[i % len(long_case_ids)])
        started = time.perf_counter()
        rows = await pool.fetch(
            "SELECT position, envelope FROM audit_log WHERE case_id = $1 ORDER BY occurred_at, position",
            case_id,
        )
        replay_fetch.append(time.perf_counter() - started)
        tracked = len(gc.get_objects()) if i == 0 else 0
        started = time.perf_counter()
        envelopes = [Envelope.from_bytes(row["envelope"]) for row in rows]
        replay_parse.append(time.perf_counter() - started)
        if i == 0:
            replay_objects = len(gc.get_objects()) - tracked
        started = time.perf_counter()
        state_as_of(str(case_id), envelopes, datetime.now(UTC))
        replay_fold.append(time.perf_counter() - started)

    times, consistency, proofs_cpu = [], [], []
    public_key = keys.pinned_public_key()
    async with pool.acquire() as conn:
        size = checkpoint.tree_size
        for position in rng.sample(range(size), proofs):
            started, used = time.perf_counter(), time.process_time()
            proof = await log.inclusion_proof(conn, position, size)  # GET /audit/proofs/inclusion
            times.append(time.perf_counter() - started)
            proofs_cpu.append(time.process_time() - used)
            envelope = await conn.fetchval("SELECT envelope FROM audit_log WHERE position = $1", position)
            if not (
                proof is not None
                and checkpoint.signature_valid(public_key)
                and proof.root_hash == checkpoint.root_hash
                and proof.leaf_hash == merkle.leaf_hash(envelope.encode())
                and merkle.verify_inclusion(position, size, proof.leaf_hash, proof.path, checkpoint.root_hash)
            ):
                raise AssertionError(f"the proof of entry {position} does not verify")
        for first in rng.sample(range(1, size + 1), proofs):
            started = time.perf_counter()
            proved = await log.consistency_proof(conn, first, size)
            consistency.append(time.perf_counter() - started)
            first_root = await conn.fetchval(
                "SELECT root_after FROM audit_log WHERE position = $1", first - 1
            )
            if not (
                proved is not None
                and proved.second_root == checkpoint.root_hash
                and proved.first_root == bytes(first_root)
                and merkle.verify_consistency(
                    first, size, proved.first_root, checkpoint.root_hash, proved.path
                )
            ):
                raise AssertionError(f"the consistency proof from {first} does not verify")
    return Figures(
        checkpoint.tree_size, entry_bytes, verify_seconds, verify_cpu, read_seconds, tiles_seconds, replay,
        replay_unfrozen, replay_fetch, replay_parse, replay_fold, full_collections, full_collections_unfrozen,
        replay_objects, times, consistency, replay_cpu, proofs_cpu,
    )  # fmt: skip


async def main(quick: bool, n: int, proofs: int, replays: int, write: bool = True) -> Figures:
    rng = random.Random(7)
    with server() as server_url:
        started = time.perf_counter()
        world = await open_world(server_url)
        try:
            await hire_staff(world)
            await run_cases(world, 12 if quick else 40)
            long = await long_case(world, 10**6, CASE_EVENTS)
            raws = [raw for s in world.services.values() for _, raw in await s.store.read_all_raw(0, 10**6)]
        finally:
            await world.close()
        units = templates_of(raws)
        [long_unit] = [u for u in units if u[0].envelope.case_id == long]
        units.remove(long_unit)
        print(f"{len(raws):,} events of {len(units) + 1} cases made in {time.perf_counter() - started:.0f} s")
        url = database_url_for(server_url, f"bench_audit_{uuid4().hex[:8]}")
        settings = Settings("audit", url, "127.0.0.1:9", "", 0)
        audit = await open_store(audit_service, settings)
        # The audit log's keys and published checkpoints live in files, never in its database.
        key_folder = Path(tempfile.mkdtemp(prefix="bench-audit-keys-"))
        private, public = audit_key_files(key_folder)
        os.environ["LEDER_AUDIT_SIGNING_KEY_FILE"] = str(private)
        os.environ["LEDER_AUDIT_PUBLIC_KEY_FILE"] = str(public)
        os.environ["LEDER_AUDIT_CHECKPOINT_LOG"] = str(key_folder / "checkpoints.log")
        try:
            started = time.perf_counter()
            made, long_case_ids = entries(units, long_unit, n, 2 if quick else 10, rng)
            tiles_seconds = await fill(audit.pool, made, n, tail=100)
            print(f"{n:,} entries logged in {time.perf_counter() - started:.0f} s", flush=True)
            del made, units, long_unit, raws  # the copies' templates: not part of what is measured
            figures = await measure(audit.pool, long_case_ids, proofs, replays, tiles_seconds)
        finally:
            await audit.pool.close()
            await db.drop_database(url)
    one, five, fifteen = os.getloadavg()
    load = f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} (1, 5, 15 min) after the run"
    print(load)
    lines = ["| figure | measured | target | |", "| --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in figures.rows()]
    print("\n".join(lines))
    print("\n".join(figures.limits()))
    if write and not quick:
        write_section(
            "Audit",
            "\n".join(
                [
                    *lines,
                    "",
                    "What limits each figure:",
                    "",
                    *(f"- {limit}" for limit in figures.limits()),
                    "",
                    f"Machine: {machine()}, {load}. Workload: a log of {n:,} entries copied from cases run"
                    f" through the four case services (bench/world.py), {len(long_case_ids)} copies of a case"
                    f" with {CASE_EVENTS:,} events among them; {replays} replays, {proofs} inclusion and"
                    f" {proofs} consistency proofs of random entries against the signed checkpoint;"
                    " `python -m bench.audit`.",
                ]
            ),
        )
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a log of 20,000 entries; writes no results")
    parser.add_argument("--entries", type=int, help="entries in the log (default 1,000,000; quick 20,000)")
    parser.add_argument("--proofs", type=int, help="inclusion proofs timed (default 50; quick 20)")
    parser.add_argument("--replays", type=int, help="replays timed (default 200; quick 50)")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="a full run that prints its figures, bench/results.md untouched",
    )
    args = parser.parse_args()
    configure_logging("bench", "WARNING")
    asyncio.run(
        main(
            args.quick,
            args.entries or (20_000 if args.quick else 1_000_000),
            args.proofs or (20 if args.quick else 50),
            args.replays or (50 if args.quick else 200),
            not args.no_write,
        )
    )
