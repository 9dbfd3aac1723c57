"""Pipeline latency and throughput: from a partner's notification published on the partner topic to
the case in the LAC's allocation queue, through the whole system as `leder up` runs it (five service
processes, the embedded PostgreSQL with fsync on, the in-memory tansu broker), in its own temporary
folder and on free ports.

Each notification is timed from the publisher's send to the commit of the allocation service's
`CaseAwaitingAllocation` (its queue projection is written in that same transaction). The commit is
seen by a separate watcher process LISTENing on the allocation database's event-store channel, so
neither the publisher's work nor the services are slowed by the observation; the notification
database is watched the same way, to split the time between the two hops.

Prints a table and writes its section of bench/results.md. Exits non-zero if any notification was
lost or doubled. `--quick` runs a few seconds per rate (CI runs it so the script cannot rot).

`--instances 1,2` measures the same workload on a fresh stack for each count of instances of every
service (as `leder up --instances N` runs them) and says what the second instance changed, with the
load average: on two cores a second process of each service adds no core to work on."""

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import machine, write_section
from events.topics import SERVICES, partner_topic
from infra import kafka
from infra.embedded import free_port
from infra.eventstore import NOTIFY_CHANNEL, EventStore
from infra.inbox import Delivery
from infra.logging import configure_logging
from infra.service import open_store
from infra.settings import Settings, database_url_for
from infra.tokens import TokenIssuer
from leder.people import NewPeople
from leder.stack import Stack
from services.notification.app import definition as notification_service
from services.notification.consumers import partner_notifications
from tests.e2e.test_leder_up import five_free_ports

TITLE = "Pipeline: partner notification to allocation queue"
WATCHED = ("notification", "allocation")
P99_TARGET_MS = 100.0
P99_TARGET_RATE = 100
SUSTAINED_TARGET = 300  # issue 18's table; the rate its text hopes for is the fastest paced run
FASTEST_PACED = 1000
# A run is abandoned when no case reaches the queue for this long: what has not arrived by then is lost.
STALL_SECONDS = 30.0


# --- what the partners send -------------------------------------------------------------------------


class People:
    """Eligible adults with a learning disability, each a new person: each notification opens a case."""

    def __init__(self) -> None:
        # Distinct names as well as NHS numbers (leder/people.py): real intake rarely shares them, and
        # the name-and-dates match would otherwise scan every earlier bench case.
        self._people = NewPeople(400_000_000, family_name=lambda n: f"Bench-{n}")
        self._died = datetime.now(UTC).date() - timedelta(days=10)

    def next(self) -> tuple[str, bytes]:
        # Distinct dates of birth too, for the same reason.
        born = date(1940, 1, 1) + timedelta(days=(self._people.count + 1) % 20_000)
        body = self._people.notification(
            **{"person.date_of_birth": born.isoformat(), "death.date_of_death": self._died.isoformat()}
        )
        return body["notification_id"], json.dumps(body).encode()


# --- the watcher: commits seen through LISTEN, in its own process -----------------------------------


def _watch(urls: dict[str, str], out: "mp.Queue[Any]", stop: EventType) -> None:
    asyncio.run(_listen(urls, out, stop))


async def _listen(urls: dict[str, str], out: "mp.Queue[Any]", stop: EventType) -> None:
    seen: list[tuple[str, str, float]] = []
    connections = []

    def recorder(service: str) -> Callable[[Any, int, str, object], None]:
        def on_commit(_conn: Any, _pid: int, _channel: str, stream: object) -> None:
            # NOTIFY is delivered at commit, so its arrival is when the events became visible.
            seen.append((service, str(stream), time.time()))

        return on_commit

    for service, url in urls.items():
        conn = await asyncpg.connect(url)
        await conn.add_listener(NOTIFY_CHANNEL, recorder(service))
        connections.append(conn)
    out.put("listening")
    while not stop.is_set():
        await asyncio.sleep(0.02)
        if seen:
            batch, seen[:] = seen[:], []
            out.put(batch)
    for conn in connections:
        await conn.close()


class Watcher:
    def __init__(self, urls: dict[str, str]) -> None:
        context = mp.get_context("spawn")
        self._out: mp.Queue[Any] = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(target=_watch, args=(urls, self._out, self._stop), daemon=True)
        # First commit of each stream, per watched service: a case's stream is named by its case id.
        self.first: dict[str, dict[str, float]] = {s: {} for s in urls}

    def start(self) -> None:
        self._process.start()
        if self._out.get(timeout=30) != "listening":
            raise RuntimeError("the watcher did not start")

    def drain(self) -> None:
        while True:
            try:
                batch = self._out.get_nowait()
            except queue.Empty:
                return
            for service, stream, at in batch:
                self.first[service].setdefault(stream, at)

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    @property
    def pid(self) -> int | None:
        return self._process.pid


# --- one run: publish at a rate, wait for the queue, check and measure ------------------------------


@dataclass
class Run:
    label: str
    asked: float | None  # notifications per second; None: as fast as the producer goes
    sent_at: dict[str, float] = field(default_factory=dict)
    published_in: float = 0.0
    case_of: dict[str, UUID] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    first_hop: list[float] = field(default_factory=list)
    second_hop: list[float] = field(default_factory=list)
    first_in_queue: float = math.inf
    last_in_queue: float = 0.0
    # From the first to the last case each watched service committed: how fast it drained the run.
    span: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process while in flight
    cpu_wall: float = 0.0
    machine_cpu: float = 0.0  # CPU seconds of every process on the machine meanwhile, ours or not
    consumed: dict[str, int] = field(default_factory=dict)  # messages each service's inboxes took
    recorded: dict[str, int] = field(default_factory=dict)  # events each service appended (and relayed)

    @property
    def kept_up(self) -> bool:
        """Whether cases reached the queue as fast as they were sent (no backlog grew)."""
        if self.asked is None or len(self.latencies) < 2:
            return False
        span = self.last_in_queue - self.first_in_queue
        return span > 0 and (len(self.latencies) - 1) / span >= 0.9 * self.asked

    @property
    def count(self) -> int:
        return len(self.sent_at)

    @property
    def published_rate(self) -> float:
        return self.count / self.published_in if self.published_in else math.inf

    @property
    def in_queue_rate(self) -> float:
        """End to end: notifications per second from the first send to the last case in the queue."""
        span = self.last_in_queue - min(self.sent_at.values())
        return len(self.latencies) / span if span > 0 else math.inf

    @property
    def ok(self) -> bool:
        return not (self.lost or self.doubled or self.wrong)


def machine_cpu_seconds() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank: always a latency that was observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


class Pipeline:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        # What the stack wrote down for the other commands: its broker, server and token key.
        env = dict(
            line.split("=", 1) for line in (stack.folder / "env").read_text().splitlines() if "=" in line
        )
        self.bootstrap = env["LEDER_KAFKA_BOOTSTRAP"]
        self.server = env["LEDER_DATABASE_URL"]
        self.urls = {s: database_url_for(self.server, f"leder_{s}") for s in WATCHED}
        self.queue_url = f"{stack.url('allocation')}/allocation-queue"
        self.issuer = TokenIssuer.from_file(env["LEDER_TOKEN_SIGNING_KEY_FILE"])
        self.people = People()
        self.watcher = Watcher(self.urls)
        self.producer: AIOKafkaProducer | None = None
        self.pools: dict[str, asyncpg.Pool] = {}
        self.idle: dict[str, float] = {}  # cores each process uses with nothing to do
        self.idle_machine = 0.0  # cores the whole machine used meanwhile

    async def __aenter__(self) -> "Pipeline":
        await asyncio.to_thread(self.watcher.start)
        # As a partner system would: acks from every replica, no idempotence (tansu has none).
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False
        )
        await self.producer.start()
        for service in SERVICES:
            url = database_url_for(self.server, f"leder_{service}")
            self.pools[service] = await asyncpg.create_pool(url, min_size=1, max_size=2)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self.producer is not None:
            await self.producer.stop()
        for pool in self.pools.values():
            await pool.close()
        self.watcher.stop()

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Each part of the system, for its CPU time: the services, PostgreSQL (all its backends),
        the broker, and this script with its watcher."""
        found: dict[str, list[psutil.Process]] = {
            name: [psutil.Process(p.pid)] for name, p in self.stack.services.items()
        }
        if self.stack.postgres is not None and (pid := self.stack.postgres.pid()):
            postmaster = psutil.Process(pid)
            found["postgres"] = [postmaster, *postmaster.children(recursive=True)]
        if self.stack.broker is not None and self.stack.broker.process is not None:
            found["tansu"] = [psutil.Process(self.stack.broker.process.pid)]
        found["bench"] = [psutil.Process()] + ([psutil.Process(w)] if (w := self.watcher.pid) else [])
        return found

    def cpu_seconds(self) -> dict[tuple[str, int, float], float]:
        """CPU seconds so far of each process, by part of the system and process identity."""
        seen: dict[tuple[str, int, float], float] = {}
        for name, procs in self.processes().items():
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    seen[(name, proc.pid, proc.create_time())] = times.user + times.system
                except psutil.NoSuchProcess:
                    continue  # a PostgreSQL backend that ended meanwhile
        return seen

    @staticmethod
    def cpu_between(
        before: dict[tuple[str, int, float], float], after: dict[tuple[str, int, float], float]
    ) -> dict[str, float]:
        """CPU seconds each part used between two snapshots. A process that started meanwhile counts
        whole; one that ended meanwhile is missed, not subtracted (PostgreSQL's autovacuum workers
        come and go)."""
        used = {name: 0.0 for name, _, _ in before}
        for key, seconds in after.items():
            used[key[0]] = used.get(key[0], 0.0) + seconds - before.get(key, 0.0)
        return used

    async def measure_idle(self, seconds: float) -> None:
        """What the stack costs with nothing to do (its consumers' polling, say), to tell it apart from
        what each notification costs."""
        before, machine_before, started = self.cpu_seconds(), machine_cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        after, wall = self.cpu_seconds(), time.monotonic() - started
        self.idle = {k: v / wall for k, v in self.cpu_between(before, after).items()}
        self.idle_machine = (machine_cpu_seconds() - machine_before) / wall

    async def run(self, label: str, asked: float | None, count: int) -> Run:
        run = Run(label, asked)
        messages = [self.people.next() for _ in range(count)]
        counts_before = await self.counts()
        cpu_before, machine_before, started = self.cpu_seconds(), machine_cpu_seconds(), time.monotonic()
        await self._publish(run, messages)
        await self._wait_for_queue(run)
        # The CPU window closes when every service has consumed what the run caused (review,
        # governance and audit may still be at it when the last case is queued).
        counts_after = await self._settle()
        cpu_after, run.cpu_wall = self.cpu_seconds(), time.monotonic() - started
        run.machine_cpu = machine_cpu_seconds() - machine_before
        run.cpu = self.cpu_between(cpu_before, cpu_after)
        run.consumed = {k: counts_after[k][0] - v[0] for k, v in counts_before.items()}
        run.recorded = {k: counts_after[k][1] - v[1] for k, v in counts_before.items()}
        await self._check(run)
        return run

    async def _publish(self, run: Run, messages: list[tuple[str, bytes]]) -> None:
        assert self.producer is not None
        topic = partner_topic()
        acks = []
        started = time.time()
        for i, (notification_id, body) in enumerate(messages):
            if run.asked is not None:
                # Paced by schedule, not by gaps: a late send is followed by an early one.
                delay = started + i / run.asked - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            run.sent_at[notification_id] = time.time()
            acks.append(await self.producer.send(topic, key=notification_id.encode(), value=body))
        run.published_in = time.time() - started
        await asyncio.gather(*acks)  # a send the broker refused raises here

    async def _wait_for_queue(self, run: Run) -> None:
        """Until as many new cases are in the allocation queue as notifications were sent, or until
        none has arrived for STALL_SECONDS."""
        queued = self.watcher.first["allocation"]
        before = {s for s, at in queued.items() if at < min(run.sent_at.values())}
        progress_at, arrived = time.monotonic(), 0
        while True:
            await asyncio.sleep(0.1)
            self.watcher.drain()
            now_arrived = len(queued.keys() - before)
            if now_arrived >= run.count:
                return
            if now_arrived > arrived:
                progress_at, arrived = time.monotonic(), now_arrived
            elif time.monotonic() - progress_at > STALL_SECONDS:
                return

    async def counts(self) -> dict[str, tuple[int, int]]:
        """For each service, how many messages its inboxes have taken and events it has recorded."""
        counts = {}
        for service, pool in self.pools.items():
            consumed: int = await pool.fetchval("SELECT count(*) FROM inbox")
            counts[service] = (consumed, await EventStore(pool, service).last_sequence())
        return counts

    async def _settle(self, timeout: float = 60.0) -> dict[str, tuple[int, int]]:
        """Until no service's inbox takes anything for a second."""
        deadline = time.monotonic() + timeout
        last = await self.counts()
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            now = await self.counts()
            if now == last:
                break
            last = now
        return last

    async def _check(self, run: Run) -> None:
        """Every notification opened exactly one case (one `CaseOpened` caused by it), which is queued
        exactly once (one `CaseAwaitingAllocation`) and is in the LAC's queue (its HTTP API)."""
        ids = list(run.sent_at)
        outcome = {
            str(r["notification_id"]): (r["outcome"], r["case_id"])
            for r in await self.pools["notification"].fetch(
                "SELECT notification_id, outcome, case_id FROM notifications"
                " WHERE notification_id = ANY($1::uuid[])",
                ids,
            )
        }
        # The notification's id is the correlation id of everything it caused (no header was sent).
        opened = await self._caused("notification", "notification.CaseOpened", ids)
        queued_events = await self._caused("allocation", "allocation.CaseAwaitingAllocation", ids)
        async with httpx.AsyncClient(timeout=60) as client:
            token = self.issuer.mint("bench", "lac")
            response = await client.get(self.queue_url, headers={"Authorization": f"Bearer {token}"})
            response.raise_for_status()
        in_queue = {case["case_id"] for case in response.json()["cases"]}
        committed = self.watcher.first
        for notification_id, sent in run.sent_at.items():
            got = outcome.get(notification_id)
            if got is not None and got[0] != "case_opened":
                run.wrong.append(f"{notification_id}: {got[0]}")
                continue
            if got is None or str(got[1]) not in in_queue or str(got[1]) not in committed["allocation"]:
                run.lost.append(notification_id)
                continue
            if len(opened.get(notification_id, [])) != 1 or len(queued_events.get(notification_id, [])) != 1:
                run.doubled.append(notification_id)
                continue
            case_id = str(got[1])
            if opened[notification_id] != [case_id] or queued_events[notification_id] != [case_id]:
                run.wrong.append(f"{notification_id}: its events name another case")
                continue
            run.case_of[notification_id] = got[1]
            at = committed["allocation"][case_id]
            run.latencies.append(at - sent)
            run.first_in_queue = min(run.first_in_queue, at)
            run.last_in_queue = max(run.last_in_queue, at)
            if case_id in committed["notification"]:
                run.first_hop.append(committed["notification"][case_id] - sent)
                run.second_hop.append(at - committed["notification"][case_id])
        for service in WATCHED:
            moments = [committed[service][str(c)] for c in run.case_of.values()]
            run.span[service] = max(moments, default=0.0) - min(moments, default=0.0)

    async def _caused(self, service: str, event_type: str, ids: list[str]) -> dict[str, list[str]]:
        """The case ids of the events of `event_type` each notification caused, in `service`'s store."""
        store, wanted = EventStore(self.pools[service], service), set(ids)
        caused: dict[str, list[str]] = {}
        position = 0
        # Read through the store (it owns the events table), after the run: no figure is timed here.
        while batch := await store.read_after(position, 5000):
            for recorded in batch:
                if recorded.event_type == event_type:
                    envelope = json.loads(recorded.envelope)
                    if envelope["correlation_id"] in wanted:
                        caused.setdefault(envelope["correlation_id"], []).append(str(envelope["case_id"]))
            position = batch[-1].source_sequence
        return caused


# --- the report --------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds >= 0.01 else f"{seconds * 1000:.1f}"


def rate(value: float) -> str:
    return "-" if math.isinf(value) else f"{value:,.0f}"


def row(run: Run) -> str:
    lat = run.latencies or [math.nan]
    return (
        f"| {run.label} | {run.count:,} | {rate(run.published_rate)} | {rate(run.in_queue_rate)} |"
        f" {ms(percentile(lat, 50))} | {ms(percentile(lat, 95))} | {ms(percentile(lat, 99))} |"
        f" {ms(max(lat))} | {len(run.lost)} | {len(run.doubled)} |"
    )


def drained(run: Run) -> dict[str, float]:
    """Each watched service's rate: the run's cases over the time from its first commit to its last."""
    return {s: len(run.case_of) / span if span else math.inf for s, span in run.span.items()}


def hops_row(run: Run) -> str:
    first, second = run.first_hop or [math.nan], run.second_hop or [math.nan]
    rates = drained(run)
    return (
        f"| {run.label} | {ms(percentile(first, 50))} / {ms(percentile(first, 99))} |"
        f" {ms(percentile(second, 50))} / {ms(percentile(second, 99))} |"
        f" {rate(rates.get('notification', math.inf))} | {rate(rates.get('allocation', math.inf))} |"
    )


def per_notification(run: Run, idle: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process spent per notification, above what it spends idle."""
    return {
        name: (seconds - idle.get(name, 0.0) * run.cpu_wall) / max(run.count, 1)
        for name, seconds in run.cpu.items()
    }


def cpu_line(run: Run, idle: dict[str, float]) -> str:
    wall, cores = run.cpu_wall, os.cpu_count() or 1
    order = sorted(run.cpu, key=lambda name: -run.cpu[name])
    shares = ", ".join(f"{name} {run.cpu[name] / wall:.0%}" for name in order if run.cpu[name] / wall >= 0.01)
    cost = per_notification(run, idle)
    per = ", ".join(f"{name} {cost[name] * 1000:.1f}" for name in order)
    return (
        f"- {run.label}: {shares}; this stack {sum(run.cpu.values()) / wall:.2f} of {cores} cores, the whole"
        f" machine {run.machine_cpu / wall:.2f}. Per notification (ms of CPU above idle): {per};"
        f" in all **{sum(cost.values()) * 1000:.1f} ms**."
    )


def idle_line(idle: dict[str, float], machine_busy: float) -> str:
    order = sorted(idle, key=lambda name: -idle[name])
    shares = ", ".join(f"{name} {idle[name]:.0%}" for name in order if idle[name] >= 0.005)
    return (
        f"Idle, the stack uses {sum(idle.values()):.2f} of {os.cpu_count()} cores ({shares}); the whole"
        f" machine was using {machine_busy:.2f} meanwhile."
    )


HEADER = [
    "| rate asked (/s) | notifications | published (/s) | into the queue (/s) | p50 (ms) | p95 (ms)"
    " | p99 (ms) | max (ms) | lost | doubled |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
]
HOPS_HEADER = [
    "| rate asked (/s) | send to case opened, p50 / p99 (ms) | case opened to queued, p50 / p99 (ms)"
    " | notification service drained (/s) | allocation service drained (/s) |",
    "| --- | --- | --- | --- | --- |",
]


def verdicts(runs: list[Run], burst: Run) -> list[str]:
    lines = []
    at_target = next((r for r in runs if r.asked == P99_TARGET_RATE), None)
    if at_target is not None and at_target.latencies:
        p99 = percentile(at_target.latencies, 99) * 1000
        lines.append(
            f"- p99 at {P99_TARGET_RATE}/s: **{p99:,.0f} ms**; target under {P99_TARGET_MS:.0f} ms:"
            f" **{'met' if p99 < P99_TARGET_MS else 'missed'}**."
        )
    sustained = burst.in_queue_rate if burst.ok else 0.0
    lines.append(
        f"- Highest sustained rate with nothing lost (a burst of {burst.count:,}, from the first send to"
        f" the last case in the queue): **{rate(sustained)}/s**; target {SUSTAINED_TARGET:,}/s:"
        f" **{'met' if sustained >= SUSTAINED_TARGET else 'missed'}**."
    )
    paced = next((r for r in runs if r.asked == FASTEST_PACED), None)
    if paced is not None and paced.latencies:
        lines.append(
            f"- Paced at {FASTEST_PACED:,}/s for {paced.count:,}: {rate(paced.in_queue_rate)}/s reached"
            f" the queue ({'kept up' if paced.kept_up else 'fell behind for the whole run'})."
        )
    return lines


def limits(results: "Results") -> list[str]:
    """What limits the figures, from what this run measured."""
    cores = os.cpu_count() or 1
    burst = results.burst
    cost = sum(per_notification(burst, results.idle).values())
    cpu_ceiling = cores / cost if cost > 0 else math.inf
    intake = percentile(results.intake, 50)
    serial_ceiling = 1 / intake
    wake = percentile(results.wakeup, 50)
    consumed = ", ".join(f"{s} {n / burst.count:.1f}" for s, n in burst.consumed.items() if n)
    recorded = ", ".join(f"{s} {n / burst.count:.1f}" for s, n in burst.recorded.items() if n)
    lines = [
        f"- **Throughput ({rate(burst.in_queue_rate)}/s in the burst): the lower of two ceilings,"
        f" {'CPU' if cpu_ceiling < serial_ceiling else 'one notification at a time'}.**"
        f" Each notification cost {cost * 1000:.1f} ms of CPU across the stack (above"
        f" idle; by process below): {cores} cores carry at most ~{rate(cpu_ceiling)}/s. Each one became"
        f" {sum(burst.consumed.values()) / burst.count:.1f} consumed messages ({consumed}), taken in"
        " batches of what the broker has ready (up to LEDER_CONSUMER_BATCH), one transaction and offset"
        f" commit a batch; and {sum(burst.recorded.values()) / burst.count:.1f} recorded"
        f" and relayed events ({recorded}). Apart from CPU, the"
        " notification service's partner consumer applies one batch at a time, and every append holds"
        " the store's sequence row until its transaction commits: its inbox handler alone, without"
        f" Kafka, in batches of {INTAKE_BATCH}, took {ms(intake)} ms a notification at the median"
        f" ({ms(percentile(results.intake, 99))} ms p99, {len(results.intake):,} notifications; one at"
        f" a time, {ms(percentile(results.intake_single, 50))} ms), so one consumer takes at most"
        f" ~{rate(serial_ceiling)}/s whatever the number of cores.",
    ]
    live = drained(burst).get("notification", math.inf)
    busy = sum(burst.cpu.values()) / burst.cpu_wall if burst.cpu_wall else 0.0
    if live < 0.9 * min(cpu_ceiling, serial_ceiling):
        lines.append(
            f"- **Below both ceilings: the consumer's time in the running stack.** In the burst the"
            f" notification service opened cases at {rate(live)}/s, {ms(1 / live)} ms a notification"
            f" against {ms(intake)} ms alone, with the stack using {busy:.2f} of its {cores} cores: each of"
            " intake's round trips to PostgreSQL (a few a batch, whatever its size) waits for a core"
            " that the other services' consumers, their relays, the broker and the database's other"
            " backends keep busy meanwhile, so one consumer's serial work stretches while the cores are"
            " not all used. Taking partitions in parallel would overlap those waits, but every append"
            " holds the store's sequence row until its transaction commits, which serialises the batches."
        )
    below = [r for r in results.runs if r.kept_up and r.latencies]
    above = [r for r in results.runs if not r.kept_up and r.first_hop and r.second_hop]
    if below:
        lines.append(
            "- **Latency below capacity"
            f" ({', '.join(f'{r.label}/s' for r in below)}): the two hops.** Each includes the broker"
            f" handing the consumer the record: {ms(wake)} ms at the median, {ms(max(results.wakeup))} ms"
            f" at most with fetch_max_wait_ms {kafka.FETCH_MAX_WAIT_MS} as the inboxes have it (the"
            " embedded broker answers a waiting fetch late, not when a record arrives), then the"
            " consumer's transaction and offset commit and the relay's publish."
        )
    for run in above:
        first, second = percentile(run.first_hop, 50), percentile(run.second_hop, 50)
        where = (
            "on the partner topic, for the notification service"
            if first > second
            else "between the notification and allocation services"
        )
        lines.append(
            f"- **Latency at {run.label}/s: the backlog.** Only {rate(run.in_queue_rate)}/s reached the"
            f" queue, so notifications waited, mostly {where} (hop medians {ms(first)} and"
            f" {ms(second)} ms), and latency grows with the length of the run."
        )
    return lines


def show_dead_services(stack: Stack) -> None:
    for service, process in stack.services.items():
        if process.poll() is not None:
            log = (stack.folder / "logs" / f"{service}.log").read_text(errors="replace")
            print(
                f"--- {service} exited with {process.returncode}; its log ends:\n{log[-3000:]}",
                file=sys.stderr,
            )


async def broker_wakeup(bootstrap: str, samples: int) -> list[float]:
    """How long the broker takes to hand a waiting consumer (fetch settings as the services' inboxes
    have them) a record just produced: the floor of each hop of the pipeline."""
    topic = f"bench.wakeup.{uuid4().hex[:8]}"
    await kafka.ensure_topics(bootstrap, [topic], 1)
    producer = kafka.producer(bootstrap)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}.group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=kafka.FETCH_MAX_WAIT_MS,
    )
    await producer.start()
    await consumer.start()
    waits = []
    try:
        for i in range(samples):
            # At a random moment of the consumer's wait, as a notification comes.
            await asyncio.sleep(0.05 + (i * 0.037) % 0.2)
            sent = time.perf_counter()
            await producer.send_and_wait(topic, b"x")
            await consumer.getone()
            waits.append(time.perf_counter() - sent)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    return waits


INTAKE_BATCH = 100  # LEDER_CONSUMER_BATCH's default (infra.inbox)


async def intake_alone(server_url: str, people: People, count: int, batch: int = 1) -> list[float]:
    """The notification service's own work for each partner notification, without Kafka: its inbox
    handler on a database of its own on the same server, given `batch` notifications at a time (one
    transaction and one offset commit each, as the consumer takes what the broker has ready); each
    figure is a batch's time divided by its size."""
    url = database_url_for(server_url, f"bench_intake_{uuid4().hex[:8]}")
    store = await open_store(notification_service, Settings("notification", url, "", "", 0))
    consumer = partner_notifications(store, partner_topic())
    times: list[float] = []
    try:
        for first in range(0, count, batch):
            records = []
            for offset in range(first, min(first + batch, count)):
                notification_id, body = people.next()
                records.append((body, Delivery(partner_topic(), 0, offset, notification_id.encode(), {})))
            started = time.perf_counter()
            if batch == 1:
                await consumer.handle(*records[0])
            else:
                await consumer.handle_batch(records)
            times += [(time.perf_counter() - started) / len(records)] * len(records)
    finally:
        await store.pool.close()
    return times


@dataclass
class Results:
    runs: list[Run]
    burst: Run
    idle: dict[str, float]
    idle_machine: float
    wakeup: list[float]
    intake: list[float]
    intake_single: list[float]


async def measure(
    pipeline: Pipeline, plan: list[tuple[float, int]], burst: int, idle_seconds: float, intakes: int
) -> Results:
    async with pipeline:
        # Not counted: connection pools, consumer group joins and caches warm up on the first cases.
        warm = await pipeline.run("warm-up", 20, 40)
        if not warm.ok:
            raise SystemExit(f"the warm-up lost {len(warm.lost)} and doubled {len(warm.doubled)}")
        await asyncio.sleep(2)
        await pipeline.measure_idle(idle_seconds)
        wakeup = await broker_wakeup(pipeline.bootstrap, 20)
        runs = []
        for asked, count in plan:
            await asyncio.sleep(2)
            run = await pipeline.run(f"{asked:,.0f}", asked, count)
            print(row(run), flush=True)
            runs.append(run)
        await asyncio.sleep(2)
        fastest = await pipeline.run("burst", None, burst)
        print(row(fastest), flush=True)
        intake = await intake_alone(pipeline.server, pipeline.people, intakes, INTAKE_BATCH)
        single = await intake_alone(pipeline.server, pipeline.people, max(intakes // 5, 1))
    return Results(runs, fastest, pipeline.idle, pipeline.idle_machine, wakeup, intake, single)


@dataclass
class Measured:
    """One stack's figures: the runs, and the load average before and after them."""

    instances: int
    results: Results
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def every(self) -> list[Run]:
        return [*self.results.runs, self.results.burst]

    @property
    def cost(self) -> float:
        """CPU seconds per notification across the stack in the burst, above idle."""
        return sum(per_notification(self.results.burst, self.results.idle).values())

    @property
    def cores_used(self) -> float:
        """Cores the stack used in the burst."""
        burst = self.results.burst
        return sum(burst.cpu.values()) / burst.cpu_wall if burst.cpu_wall else 0.0

    @property
    def machine_busy(self) -> float:
        """Cores the whole machine used in the burst, this stack and anything else."""
        burst = self.results.burst
        return burst.machine_cpu / burst.cpu_wall if burst.cpu_wall else 0.0


def load(averages: tuple[float, float, float]) -> str:
    return " / ".join(f"{a:.2f}" for a in averages)


def section_title(instances: int) -> str:
    return TITLE if instances == 1 else f"{TITLE}, {instances} instances of each service"


def scale_out(measured: list[Measured]) -> list[str]:
    """What more instances changed: the burst's rate and CPU per notification for each count."""
    cores = os.cpu_count() or 1
    first = measured[0]
    lines = []
    for m in measured:
        burst = m.results.burst
        ratio = burst.in_queue_rate / first.results.burst.in_queue_rate
        paced = ", ".join(f"{rate(r.in_queue_rate)}/s when sent {r.label}/s" for r in m.results.runs)
        compared = f"x{ratio:.2f} of {first.instances}; " if m is not first else ""
        lines.append(
            f"- {m.instances} instance{'s' if m.instances > 1 else ''} of each service: the burst of"
            f" {burst.count:,} reached the queue at **{rate(burst.in_queue_rate)}/s**"
            f" ({compared}{paced}), {m.cost * 1000:.1f} ms of CPU per notification, the stack using"
            f" {m.cores_used:.2f} of {cores} cores and the whole"
            f" machine {m.machine_busy:.2f};"
            f" {'nothing' if burst.ok else 'something'} lost or doubled; load average"
            f" (1/5/15 min) {load(m.load_before)} before, {load(m.load_after)} after."
        )
    for m in measured[1:]:
        ratio = m.results.burst.in_queue_rate / first.results.burst.in_queue_rate
        if ratio < 1.1:
            lines.append(
                f"- {m.instances} instances added no speed here (x{ratio:.2f}): with {first.instances} the"
                f" whole machine was already using {first.machine_busy:.2f} of its {cores} cores (this stack"
                f" {first.cores_used:.2f}), so more processes of each service only share the same cores (and"
                " each costs its own polling and standby relay); more instances add speed on more cores or"
                " machines, or where one process waits rather than computes."
            )
        else:
            lines.append(
                f"- {m.instances} instances added speed (x{ratio:.2f}): with {first.instances} the stack"
                f" used {first.cores_used:.2f} of {cores} cores (the whole machine {first.machine_busy:.2f}),"
                " so part of each notification's time was spent waiting (on the broker, the database) that"
                " another process could fill."
            )
    return lines


def main(quick: bool, counts: list[int], write: bool) -> int:
    measured = []
    for instances in counts:
        m = measure_stack(quick, instances, write)
        if m is None:
            return 1
        measured.append(m)
    if len(measured) > 1:
        lines = scale_out(measured)
        print("\nScale-out:\n\n" + "\n".join(lines))
        if write:
            write_section(
                f"{TITLE}: scale-out",
                "\n".join(
                    [
                        "The same workload on a fresh stack for each count of instances of every service"
                        " (`leder up --instances N`; the sections above and below hold each run's figures).",
                        "",
                        *lines,
                    ]
                ),
            )
    return 0


def measure_stack(quick: bool, instances: int, write: bool) -> Measured | None:
    """Start a stack with `instances` of each service, measure it, print (and write) its figures;
    None if a notification was lost or doubled."""
    plan: list[tuple[float, int]] = (
        [(10, 30), (100, 300)] if quick else [(10, 200), (100, 2_000), (FASTEST_PACED, 10_000)]
    )
    burst = 500 if quick else 10_000
    # The embedded stack, always (that is what is measured), on free ports.
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP", "LEDER_TOPIC_PREFIX")
    }
    environ |= {
        "LEDER_BASE_PORT": str(five_free_ports()),
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="leder-bench-") as folder:
        # The extra instances on free ports too (the default, 10 above the first, may be taken).
        extra = {f"{s}-{k}": free_port() for s in SERVICES for k in range(2, instances + 1)}
        stack = Stack(Path(folder) / ".leder", environ=environ, ports=extra, instances=instances)
        try:
            stack.start()
            print(f"\n{instances} instance{'s' if instances > 1 else ''} of each service", flush=True)
            print("\n" + "\n".join(HEADER), flush=True)
            results = asyncio.run(
                measure(Pipeline(stack), plan, burst, 3 if quick else 10, 200 if quick else 1_000)
            )
        except BaseException:
            show_dead_services(stack)  # their logs go with the temporary folder
            raise
        finally:
            stack.stop()
    load_after = os.getloadavg()
    every = [*results.runs, results.burst]
    problems = [
        f"{r.label}: {len(r.lost)} lost, {len(r.doubled)} doubled, {len(r.wrong)} wrong"
        f" (e.g. {(r.lost + r.doubled + r.wrong)[:3]})"
        for r in every
        if not r.ok
    ]
    workload = ", ".join(f"{asked:,.0f}/s x {count:,}" for asked, count in plan)
    rest = [
        "Targets:",
        "",
        *verdicts(results.runs, results.burst),
        "",
        "What limits them:",
        "",
        *limits(results),
        "",
        "Each hop's commit, seen by LISTEN on its service's database:",
        "",
        *HOPS_HEADER,
        *(hops_row(r) for r in every),
        "",
        "CPU while each run was in flight (share of one core), and per notification:",
        "",
        *(cpu_line(r, results.idle) for r in every),
        "",
        idle_line(results.idle, results.idle_machine),
        *(["", "**Failed:** " + "; ".join(problems)] if problems else []),
        "",
        f"Machine: {machine()}, load average (1/5/15 min) {load(load_before)} before the stack started,"
        f" {load(load_after)} after it stopped. Instances: {instances} of each service."
        f" Workload{' (--quick)' if quick else ''}: {workload}, then a burst of"
        f" {burst:,} sent as fast as one producer sends; each notification a new eligible adult, so each"
        " opens a case; 40 warm-up notifications not counted. Latency is from the publisher's send to"
        " the commit seen by a watcher process; the other three services consume the same events on the"
        " same cores meanwhile. Where the whole machine used much more CPU than this stack, something"
        " else was running and the figures understate what this stack can do.",
    ]
    print("\n" + "\n".join(rest))
    if not write:
        print("(not written to bench/results.md: --no-write)")
    else:
        _write(instances, every, rest)
    if problems:
        print("FAILED: " + "; ".join(problems), file=sys.stderr)
        return None
    return Measured(instances, results, load_before, load_after)


def _write(instances: int, every: list[Run], rest: list[str]) -> None:
    write_section(
        section_title(instances),
        "\n".join(
            [
                "From a partner's notification published on the partner topic to its case in the LAC's"
                " allocation queue (the commit of `allocation.CaseAwaitingAllocation`, which writes the"
                " queue's row), through the five services as `leder up` runs them on the embedded stack"
                " (PostgreSQL with fsync on, the in-memory tansu broker, four partitions per topic)"
                + (f", {instances} instances of each service." if instances > 1 else "."),
                "",
                *HEADER,
                *(row(r) for r in every),
                "",
                *rest,
            ]
        ),
    )


def counts(text: str) -> list[int]:
    """1,2: a comma-separated list of instance counts, each from 1."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give instance counts, e.g. 1,2") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: each count at least 1")
    return values


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per rate (what CI runs)")
    parser.add_argument(
        "--instances",
        type=counts,
        default=[1],
        help="instances of each service, one stack per count: 2, or 1,2 to compare (default 1)",
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the figures only; leave bench/results.md alone"
    )
    configure_logging("bench", "WARNING")
    args = parser.parse_args()
    sys.exit(main(args.quick, args.instances, not args.no_write))
