"""Event store throughput: our store against the eventsourcing library's PostgreSQL recorder and a bare
asyncpg insert of the same rows, on the same server, in the same run. Prints ratios and writes
bench/results.md. `--quick` runs a small workload (CI runs it so the script cannot rot)."""

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
import psutil

from bench.common import machine, server, write_section
from events import Actor
from infra import db
from infra.eventstore import _APPEND_ONE, NOTIFY_CHANNEL, Context, EventStore
from infra.logging import configure_logging
from infra.settings import database_url_for
from tests.support.events import CounterIncremented

CTX = Context(actor=Actor.system("bench"))


async def run_writers(writers: int, commands: int, command: Callable[[int], Awaitable[None]]) -> float:
    """Commands per second with `writers` concurrent writers sharing `commands` commands."""
    per = commands // writers

    async def writer(w: int) -> None:
        for i in range(per):
            await command(w * per + i)

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return per * writers / (time.perf_counter() - started)


@dataclass(frozen=True)
class Cost:
    """CPU time per command: this process's, and the database server's when it runs on this machine."""

    client_us: float
    server_us: float | None

    def __str__(self) -> str:
        server = f"{self.server_us:,.0f}" if self.server_us is not None else "?"
        total = f"{self.client_us + self.server_us:,.0f}" if self.server_us is not None else "?"
        return f"client {self.client_us:,.0f} + server {server} = {total} µs"


async def server_cpu(pool: asyncpg.Pool) -> float | None:
    """CPU seconds used so far by the embedded server's processes (None for a server elsewhere)."""
    if os.environ.get("LEDER_DATABASE_URL"):
        return None
    pid = await pool.fetchval("SELECT pg_backend_pid()")
    try:
        postmaster = psutil.Process(pid).parent()
        assert postmaster is not None
        times = postmaster.cpu_times()
        total: float = times.children_user + times.children_system  # backends that have exited
        for child in postmaster.children():
            with suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return total


async def measured(
    pool: asyncpg.Pool, writers: int, commands: int, command: Callable[[int], Awaitable[None]]
) -> tuple[float, Cost]:
    server_before, client_before = await server_cpu(pool), time.process_time()
    rate = await run_writers(writers, commands, command)
    client, server_after = time.process_time() - client_before, await server_cpu(pool)
    done = commands // writers * writers
    server = None if server_before is None or server_after is None else server_after - server_before
    return rate, Cost(1e6 * client / done, None if server is None else 1e6 * server / done)


async def ours(
    url: str, writers: int, commands: int, batch: int, costs: dict[str, Cost] | None = None
) -> float:
    pool = await db.create_pool(url, max_size=writers + 2)
    await db.migrate(pool)
    store = EventStore(pool, "bench")
    payloads = [CounterIncremented(by=1)] * batch

    async def command(i: int) -> None:
        await store.append(f"case-{uuid4()}", 0, payloads, CTX)

    try:
        rate, cost = await measured(pool, writers, commands, command)
        if costs is not None:
            costs["ours"] = cost
        return rate * batch
    finally:
        await pool.close()


async def bare(
    url: str, writers: int, commands: int, batch: int, costs: dict[str, Cost] | None = None
) -> float:
    """The floor: the same rows, one transaction per command, nothing else."""
    pool = await db.create_pool(url, max_size=writers + 2)
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS bare (id bigserial PRIMARY KEY, event_id uuid, stream_id text,"
        " stream_version int, envelope text)"
    )
    body = json.dumps({"data": {"by": 1}, "padding": "x" * 400})

    async def command(i: int) -> None:
        stream = f"case-{uuid4()}"
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO bare (event_id, stream_id, stream_version, envelope) VALUES ($1, $2, $3, $4)",
                [(uuid4(), stream, v, body) for v in range(batch)],
            )

    try:
        rate, cost = await measured(pool, writers, commands, command)
        if costs is not None:
            costs["bare"] = cost
        return rate * batch
    finally:
        await pool.close()


async def statement_alone(url: str, writers: int, commands: int) -> float:
    """Our one-event append statement with its parameters made in advance: the store without the
    envelope building and serialising that happens in Python before it."""
    pool = await db.create_pool(url, max_size=writers + 2)
    await db.migrate(pool)
    head, tail = json.dumps({"data": {"by": 1}, "padding": "x" * 400})[:-1] + ',"source_sequence":', "}"
    now = datetime.now(UTC)

    async def command(i: int) -> None:
        stream = f"case-{uuid4()}"
        await pool.fetchrow(_APPEND_ONE, uuid4(), stream, 1, None, "T", 1, now, head, tail, 0, NOTIFY_CHANNEL)

    try:
        return await run_writers(writers, commands, command)
    finally:
        await pool.close()


def eventsourcing_library(url: str, writers: int, commands: int, batch: int) -> float:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    parts = urlsplit(url)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or "",
        pool_size=writers,
        max_overflow=0,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    state = json.dumps({"data": {"by": 1}, "padding": "x" * 400}).encode()
    per = commands // writers

    def writer() -> None:
        for _ in range(per):
            originator = uuid4()
            recorder.insert_events(
                [StoredEvent(originator, v + 1, "bench:CounterIncremented", state) for v in range(batch)]
            )

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    datastore.close()
    return per * writers * batch / elapsed


async def read_rates(url: str, events: int) -> tuple[float, float]:
    pool = await db.create_pool(url, max_size=4)
    await db.migrate(pool)
    store = EventStore(pool, "bench")
    for start in range(0, events, 100):
        await store.append("one-case", start, [CounterIncremented(by=1)] * 100, CTX)
    started = time.perf_counter()
    read = await store.read_stream("one-case")
    stream_rate = len(read) / (time.perf_counter() - started)
    started = time.perf_counter()
    total, position = 0, 0
    while batch := await store.read_all(position, 5000):
        total += len(batch)
        position = batch[-1].source_sequence
    replay_rate = total / (time.perf_counter() - started)
    await pool.close()
    return stream_rate, replay_rate


def _ceiling(cost: Cost) -> str:
    """The rate the CPU allows: the client is one Python process, so at most one core's worth."""
    if cost.server_us is None:
        return "?"
    shared = (os.cpu_count() or 1) * 1e6 / (cost.client_us + cost.server_us)
    return f"{min(shared, 1e6 / cost.client_us):,.0f}"


async def fresh(server_url: str) -> str:
    url = database_url_for(server_url, f"bench_{uuid4().hex[:10]}")
    await db.ensure_database(url)
    return url


async def paired_ratios(server_url: str, pairs: int, commands: int) -> list[float]:
    """Ours over the eventsourcing library at 16 writers x 1 event, `pairs` times, each pair run back
    to back: on a machine others share, one run's ratio swings with their load, the median less."""
    ratios = []
    for _ in range(pairs):
        rate = await ours(await fresh(server_url), 16, commands, 1)
        theirs = await asyncio.to_thread(eventsourcing_library, await fresh(server_url), 16, commands, 1)
        ratios.append(rate / theirs)
        print(
            f"pair: ours {rate:,.0f}, eventsourcing {theirs:,.0f} events/s, {rate / theirs:.2f}x"
            f" (load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return ratios


async def main(quick: bool, target_only: bool = False, record: bool = True, pairs: int = 0) -> None:
    commands = 400 if quick else 4000
    lines = [
        "| workload | ours (events/s) | eventsourcing (events/s) | bare insert (events/s)"
        " | ours / eventsourcing | ours / bare |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    load_before = os.getloadavg()[0]
    target: dict[str, float] = {}
    target_costs: dict[str, Cost] = {}
    alone = 0.0
    with server() as server_url:
        for writers, batch in ((16, 1),) if target_only else ((1, 1), (16, 1), (1, 10), (16, 10)):
            n = commands if batch == 1 else commands // 5
            costs: dict[str, Cost] = {}
            rates = {
                "ours": await ours(await fresh(server_url), writers, n, batch, costs),
                "eventsourcing": await asyncio.to_thread(
                    eventsourcing_library, await fresh(server_url), writers, n, batch
                ),
                "bare": await bare(await fresh(server_url), writers, n, batch, costs),
            }
            row = (
                f"| {writers} writer(s), {batch} event(s)/command | {rates['ours']:,.0f} |"
                f" {rates['eventsourcing']:,.0f} | {rates['bare']:,.0f} |"
                f" {rates['ours'] / rates['eventsourcing']:.2f}x | {rates['ours'] / rates['bare']:.2f}x |"
            )
            print(row, flush=True)
            lines.append(row)
            if (writers, batch) == (16, 1):
                target = {
                    "eventsourcing": rates["ours"] / rates["eventsourcing"],
                    "bare": rates["ours"] / rates["bare"],
                }
                target_costs = costs
                alone = await statement_alone(await fresh(server_url), writers, n)
        ratios = await paired_ratios(server_url, pairs, commands) if pairs else []
        if ratios:
            print(f"median of {len(ratios)} pairs: {statistics.median(ratios):.2f}x", flush=True)
        if target_only:
            print(f"statement alone {alone:,.0f} events/s; costs {target_costs}")
            print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
            return
        stream_rate, replay_rate = await read_rates(await fresh(server_url), 1000 if quick else 10_000)
    print(f"stream read {stream_rate:,.0f} events/s; replay (read everything) {replay_rate:,.0f} events/s")
    lines += [
        "",
        f"Stream read: {stream_rate:,.0f} events/s. Replay of the whole store: {replay_rate:,.0f} events/s.",
        "",
        "Targets at 16 writers, one event per command:",
        "",
        f"- at least 5x the eventsourcing library: **{target['eventsourcing']:.2f}x**,"
        f" {'met' if target['eventsourcing'] >= 5 else 'missed'};",
        f"- at least half the bare insert: **{target['bare']:.2f}x**,"
        f" {'met' if target['bare'] >= 0.5 else 'missed'}.",
        "",
        (
            "CPU time per command there (client: this Python process; server: every PostgreSQL"
            f" process): ours {target_costs['ours']}, bare insert {target_costs['bare']}. On"
            f" {os.cpu_count()} cores shared by client and server, the client on one at most, that"
            " bounds a rate at"
            f" {_ceiling(target_costs['ours'])} and {_ceiling(target_costs['bare'])} commands/s."
            if not quick
            # The kernel counts CPU time in 10 ms ticks: too coarse for a run this short.
            else "CPU time per command: not measured in a --quick run."
        ),
        "",
        *(
            [
                f"The same, {len(ratios)} more times, ours and the library's back to back each time:"
                f" {', '.join(f'{r:.2f}x' for r in ratios)}; median **{statistics.median(ratios):.2f}x**.",
                "",
            ]
            if ratios
            else []
        ),
        f"Our append statement alone there, its parameters made in advance (no envelopes built in"
        f" Python): {alone:,.0f} events/s.",
        "",
        f"Machine: {machine()}; load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f}"
        f" after (the client, the server and anything else running share the cores). Workload:"
        f" {commands} commands{' (--quick)' if quick else ''}; each command a new stream; events of"
        " ~450 bytes.",
    ]
    print("\n".join(lines[-10:-2]))
    if record:
        write_section("Event store", "\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--target-only",
        action="store_true",
        help="only the target's workload (16 writers, one event per command), printed, not recorded",
    )
    parser.add_argument("--no-record", action="store_true", help="print the figures; leave bench/results.md")
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="run ours and the library's at 16 writers x 1 event this many more times, back to back,"
        " and give the median ratio",
    )
    configure_logging("bench", "WARNING")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.target_only, not (args.no_record or args.target_only), args.pairs))
