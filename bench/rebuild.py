"""Projection rebuild rate per service (issue 9, item 4): events per second of `leder rebuild`
(infra.projections.rebuild), target at least 50,000 per service.

Each case service's event store is filled with cases that went through all four case services' own
code (bench/world.py), then with copies of them: every case again under fresh ids (and, for the
notification service, a fresh person sealed under the copy's own key), each of its original appends
appended again through the event store, so the projections are built live as in production, until
the store holds the workload's number of events. The rebuild is then timed, and afterwards every
projection table must hold exactly what the live appends had built. The audit service has no
projections (its log is its record), so it has nothing to rebuild.

`--quick` (CI) runs a few thousand events per service, checks the same things and writes nothing to
bench/results.md; the full run (100,000 events per service) writes its section."""

import argparse
import asyncio
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID, uuid4

from bench.common import machine, server, write_section
from bench.world import SERVICES, hire_staff, open_world, run_cases
from events import Envelope, decode_payload
from events.notification import SealedPersonalData
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.logging import configure_logging
from infra.projections import Decoder, rebuild
from leder.people import nhs_number_for
from services.notification.personal import data_key, seal, unseal_with_stored_key

TARGET = 50_000
# Reviewers and QA panels are shared by the cases, not copied with them.
SHARED_STREAMS = ("reviewer-", "qa-panel-")
UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Batch = list[Envelope]  # what one command appended: one stream, one recorded_at


async def all_events(store: EventStore) -> list[Envelope]:
    events: list[Envelope] = []
    while batch := await store.read_all(events[-1].source_sequence if events else 0, 5000):
        events += batch
    return events


def units_of(events: Sequence[Envelope]) -> tuple[list[list[Batch]], set[str]]:
    """The store's events as units to copy (a case with everything about it; a notification that
    opened none), each a list of its original appends, and the ids of what the units share."""
    unit_of_stream: dict[str, str] = {}
    units: dict[str, list[Batch]] = {}
    shared: set[str] = set()
    for e in events:
        if e.stream_id.startswith(SHARED_STREAMS):
            shared.update(UUID_TEXT.findall(e.model_dump_json(include={"data"})))
            continue
        case_ids = e.data.get("case_ids") or [None]
        key = unit_of_stream.setdefault(e.stream_id, str(e.case_id or case_ids[0] or e.stream_id))
        batches = units.setdefault(key, [])
        last = batches[-1][-1] if batches else None
        if last and (last.stream_id, last.recorded_at) == (e.stream_id, e.recorded_at):
            batches[-1].append(e)
        else:
            batches.append([e])
    return list(units.values()), shared


class Copier:
    """Appends copies of units under fresh ids through the store's own append."""

    def __init__(self, store: EventStore, shared: set[str]) -> None:
        self.store = store
        self.shared = shared
        self.people = 0
        # A copied case is another case: its reference must be its own (the read model keeps them unique).
        self.references = 0

    async def copy(self, unit: list[Batch], n: int) -> int:
        ids: dict[str, str] = {}
        people: dict[str, str] = {}

        def fresh(match: re.Match[str]) -> str:
            old = match.group()
            return old if old in self.shared else ids.setdefault(old, str(uuid4()))

        def remap(value: Any) -> Any:
            if isinstance(value, str):
                return UUID_TEXT.sub(fresh, value)
            if isinstance(value, dict):
                return {k: remap(v) for k, v in value.items()}
            if isinstance(value, list):
                return [remap(v) for v in value]
            return value

        versions: dict[str, int] = {}
        appended = 0
        for batch in unit:
            first = batch[0]
            stream = remap(first.stream_id)
            payloads = []
            for e in batch:
                data = remap(e.data)
                if "personal" in e.data:
                    data["personal"] = await self._reseal(e.data["personal"], data["personal"], people, n)
                if e.event_type == "notification.CaseOpened" and data.get("reference"):
                    data["reference"] = self._reference()
                payloads.append(decode_payload(e.event_type, e.schema_version, data))
            context = Context(first.actor, remap(first.correlation_id))
            case_id = UUID(remap(str(first.case_id))) if first.case_id else None
            await self.store.append(stream, versions.get(stream, 0), payloads, context, case_id=case_id)
            versions[stream] = versions.get(stream, 0) + len(payloads)
            appended += len(payloads)
        return appended

    def _reference(self) -> str:
        self.references += 1
        year, number = divmod(self.references - 1, 99_999)
        return f"LDR-{9000 + year}-{number + 1:05d}"

    async def _reseal(
        self, old: dict[str, Any], new: dict[str, Any], people: dict[str, str], n: int
    ) -> dict[str, Any]:
        """The copy's person is another person (their own NHS number and name), sealed under the
        copy's own key, as the notification service seals everyone."""
        async with self.store.pool.acquire() as conn:
            details = await unseal_with_stored_key(conn, SealedPersonalData.model_validate(old))
            if details is None:
                return new  # destroyed at the end of its retention: the copy's key never exists either
            if details.nhs_number:
                if details.nhs_number not in people:
                    self.people += 1
                    people[details.nhs_number] = nhs_number_for(10_000_000 + self.people)
                details = details.model_copy(update={"nhs_number": people[details.nhs_number]})
            details = details.model_copy(update={"family_name": f"{details.family_name} {n}"})
            key_id = new["key_id"]
            return seal(await data_key(conn, key_id, create=True), key_id, details).model_dump(mode="json")


async def fill(store: EventStore, target: int, concurrency: int = 6) -> None:
    """Copies of the store's units, `concurrency` at a time, until the store holds `target` events."""
    units, shared = units_of(await all_events(store))
    copier = Copier(store, shared)
    total = await store.last_sequence()
    copies = iter(range(10**9))

    async def worker() -> None:
        nonlocal total
        while total < target:
            n = next(copies)
            appended = await copier.copy(units[n % len(units)], n // len(units) + 1)
            total += appended

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def snapshot(store: EventStore) -> dict[str, list[str]]:
    """Every row of every projection table, as text, in order."""
    return {
        table: [r[0] for r in await store.pool.fetch(f'SELECT t::text FROM "{table}" t ORDER BY 1')]
        for projection in store.projections
        for table in projection.tables
    }


@dataclass
class Statement:
    """One projection statement over a rebuild: how often, how long, and on how many rows' keys."""

    count: int = 0
    seconds: float = 0.0
    keys: set[Any] = field(default_factory=set)  # its first argument: the row it is about


class _TimedConnection:
    def __init__(self, conn: Connection, stats: dict[str, Statement]) -> None:
        self._conn = conn
        self._stats = stats

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table"):
            return method

        async def timed(query: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(query, *args, **kwargs)
            finally:
                statement = self._stats.setdefault(query, Statement())
                statement.count += 1
                statement.seconds += time.perf_counter() - started
                statement.keys.add(args[0] if args and not isinstance(args[0], list) else None)

        return timed


async def profile(store: EventStore) -> dict[str, Statement]:
    """Each statement a rebuild sends (reading the events, the projections' own, the COPYs), counted
    and timed: the same rebuild again, in a transaction that is then rolled back."""
    stats: dict[str, Statement] = {}
    async with store.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await rebuild(store, conn=cast(Connection, _TimedConnection(conn, stats)))
        finally:
            await transaction.rollback()
    return stats


@dataclass
class Figures:
    service: str
    events: int
    seconds: float
    statements: dict[str, Statement]
    parse_seconds: float
    decoded: int  # events of the types the projections read: those the rebuild decodes
    load: float  # the machine's 1-minute load average when the rebuild ended (2 cores, shared)

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def limit(self) -> str:
        """What bounds the rate, from what was measured: the round trips and what the server does in
        them, or the Python per event."""
        count = sum(s.count for s in self.statements.values())
        seconds = sum(s.seconds for s in self.statements.values())
        per_event, mean = count / self.events, seconds / max(count, 1)
        decoding = self.decoded / self.parse_seconds
        said = (
            f"{count:,} round trips to PostgreSQL ({_rate(per_event)}: reading the events in"
            f" pages, COPY of the folded rows, and any statement of a projection that does not fold),"
            f" {mean * 1e3:.1f} ms on average with the server's work, are"
            f" {min(seconds / self.seconds, 1):.0%} of the time (a page is read while the one before is"
            f" decoded: the overlap is counted in both); the rest is Python. The rebuild reads and"
            f" decodes only the events of the types its projections read ({self.decoded:,} of"
            f" {self.events:,}), on the trusted path (infra.projections.Decoder: one pydantic JSON pass"
            f" into the payload class), which alone runs at {decoding:,.0f} events/s"
        )
        if per_event < 0.01:
            return said  # a few statements for the whole rebuild: none stands out per event
        frequent = {sql: s for sql, s in self.statements.items() if s.count >= count / 100}
        sql, slowest = max(frequent.items(), key=lambda kv: kv[1].seconds / kv[1].count)
        rest = (seconds - slowest.seconds) / max(count - slowest.count, 1)
        if count > slowest.count and slowest.seconds / slowest.count > 2 * rest:
            said += (
                f". The slowest, `{' '.join(sql.split())[:60]}…` ({slowest.count / self.events * 100:.0f}"
                f" per 100 events), averages {slowest.seconds / slowest.count * 1e6:.0f} µs against"
                f" {rest * 1e6:.0f} µs for the others"
            )
            if len(slowest.keys) * 100 <= slowest.count:
                said += (
                    f": it updates the same {len(slowest.keys)} rows again and again, and the rebuild is"
                    " one transaction, in which PostgreSQL keeps every version of a row until it commits"
                )
        return said


async def measure(name: str, store: EventStore) -> Figures:
    before = await snapshot(store)
    events = await store.last_sequence()
    started = time.perf_counter()
    replayed = await rebuild(store)
    seconds = time.perf_counter() - started
    load = os.getloadavg()[0]
    after = await snapshot(store)
    if replayed != events:
        raise AssertionError(f"{name}: the rebuild replayed {replayed} events of {events}")
    if after != before:
        changed = [t for t in before if before[t] != after[t]]
        raise AssertionError(f"{name}: rebuilt tables {changed} differ from the live ones")
    wanted = {t for p in store.projections for t in getattr(p, "event_types", ())}
    rows = [r for r in await store.read_after(0, events) if r.event_type in wanted]
    decode = Decoder()
    started = time.perf_counter()
    for row in rows:
        decode(row.event_type, row.schema_version, row.envelope)  # as the rebuild decodes its events
    parse_seconds = time.perf_counter() - started
    return Figures(name, events, seconds, await profile(store), parse_seconds, len(rows), load)


async def main(
    quick: bool, events: int, cases: int, write: bool = True, services: Sequence[str] = tuple(SERVICES)
) -> list[Figures]:
    figures = []
    with server() as server_url:
        world = await open_world(server_url)
        try:
            await hire_staff(world)
            started = time.perf_counter()
            await run_cases(world, cases)
            print(f"{cases} cases through the services in {time.perf_counter() - started:.0f} s:", flush=True)
            print("  " + ", ".join(f"{k} {v:,}" for k, v in (await world.counts()).items()), flush=True)
            for name in services:
                store = world.store(name)
                started = time.perf_counter()
                await fill(store, events)
                filled = time.perf_counter() - started
                print(f"{name}: {await store.last_sequence():,} events in {filled:.0f} s", flush=True)
                figures.append(await measure(name, store))
        finally:
            await world.close()
    lines = [
        "| service | events | rebuild (s) | events/s | target | | load average |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        met = "met" if f.rate >= TARGET else "missed"
        lines.append(
            f"| {f.service} | {f.events:,} | {f.seconds:.1f} | {f.rate:,.0f} | ≥ {TARGET:,} | {met}"
            f" | {f.load:.2f} |"
        )
    if len(figures) == len(SERVICES):
        lines.append("| audit | no projections (its log is its record) | | | | n/a | |")
    print("\n".join(lines))
    limits = [f"- {f.service}: {f.limit}." for f in figures]
    print("\n".join(limits))
    if write and not quick:
        write_section(
            "Projection rebuild",
            "\n".join(
                [
                    *lines,
                    "",
                    "What limits each figure:",
                    "",
                    *limits,
                    "",
                    f"Machine: {machine()}. Workload: {cases} cases through the four case services'"
                    f" own code (bench/world.py), copied under fresh ids to {events:,} events per"
                    " service; `python -m bench.rebuild`.",
                ]
            ),
        )
    return figures


def _rate(per_event: float) -> str:
    """Round trips per event in words a reader can take in: "1.60 per event", "one per 2,632 events"."""
    if per_event >= 0.1 or per_event == 0:
        return f"{per_event:.2f} per event"
    return f"one per {1 / per_event:,.0f} events"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few thousand events; writes no results")
    parser.add_argument("--events", type=int, help="events per service (default 100,000; quick 2,000)")
    parser.add_argument("--cases", type=int, help="cases run through the services (default 300; quick 20)")
    parser.add_argument("--no-write", action="store_true", help="the full workload, without writing results")
    parser.add_argument(
        "--service",
        action="append",
        choices=list(SERVICES),
        help="only this service's rebuild (repeatable; implies --no-write): every service's by default",
    )
    args = parser.parse_args()
    configure_logging("bench", "WARNING")
    asyncio.run(
        main(
            args.quick,
            args.events or (2_000 if args.quick else 100_000),
            args.cases or (20 if args.quick else 300),
            write=not (args.no_write or args.service),
            services=args.service or tuple(SERVICES),
        )
    )
