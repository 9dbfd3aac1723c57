"""The audit service's own work for each event it consumes, without Kafka: its inbox consumer of one
service's topic (services/audit/consumers.py, with the signature check the service gives it) on a
database of its own on the same server, handed signed envelopes `--batch` at a time as
`InboxConsumer.handle_batch` is when the broker has them ready (one transaction a batch), then a few
one at a time (`handle`). What it prints for each: CPU time of this process per event, wall time per
event, PostgreSQL's CPU per event (its backends serving this database, when the server runs on this
machine) and round trips to PostgreSQL per event. Then it checks what was logged: every event once,
and the log verifies (each entry's hashes and tree head, and the tiles, recomputed from the entries).

Each notification is two events on its case's stream, one after the other (the audit service logs
2.0 events a notification in bench.pipeline), each envelope about 1 KB. Writes nothing to
bench/results.md: `python -m bench.audit_intake [--events 2000 --batch 100 --single 400 --repeats 3]`
(`--quick`: a few batches, to check that it runs)."""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import asyncpg
import psutil
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.kafka import KafkaBroker

from bench.common import server
from events import Actor, Envelope
from events.topics import service_topic
from infra.db import Connection
from infra.inbox import Delivery, InboxConsumer
from infra.logging import configure_logging
from infra.relay import OutboxRelay
from infra.service import Runtime, open_store
from infra.settings import Settings, database_url_for
from infra.signing import EventVerifier, PinnedKeys, Signer, jwk, write_key_set
from services.audit import log
from services.audit.app import definition as audit_service
from services.audit.consumers import Logged, events_of

SOURCE = "notification"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
EVENT_TYPES = ("notification.NotificationReceived", "notification.CaseOpened")  # a case's stream


class Envelopes:
    """Signed records as the notification service's relay publishes them: its sequence gapless, each
    case's stream in order, the signature headers infra.signing adds."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.topic = service_topic(SOURCE)
        self.sequence = 0
        self.offset = 0

    def notifications(self, count: int) -> Iterator[tuple[bytes, Delivery]]:
        """`count` records: a notification's two events on its case's stream, one after the other."""
        while True:
            case_id = uuid4()
            for version, event_type in enumerate(EVENT_TYPES, 1):
                if count == 0:
                    return
                count -= 1
                yield self.record(case_id.hex, case_id, version, event_type)

    def record(self, stream: str, case_id: Any, version: int, event_type: str) -> tuple[bytes, Delivery]:
        self.sequence += 1
        at = START + timedelta(seconds=self.sequence)
        envelope = Envelope(
            event_id=uuid4(), event_type=event_type, schema_version=1, stream_id=stream, case_id=case_id,
            stream_version=version, source=SOURCE, source_sequence=self.sequence, occurred_at=at,
            recorded_at=at, actor=Actor(kind="partner", id="partner-system-rx1", role="partner"),
            correlation_id=f"bench-{self.sequence}", causation_id=None,
            data={
                "notification_id": f"N-{self.sequence:08d}", "reference": f"LDR-2026-{self.sequence:05d}",
                "organisation": "RX1", "reported_by": "ward sister, acute trust",
                "date_of_death": "2026-02-20", "place_of_death": "hospital", "age_at_death": 61,
                "learning_disability": "moderate", "autistic": False, "ethnicity": "A",
                "person_ref": uuid4().hex, "sealed_details": "x" * 400,
            },
        )  # fmt: skip
        raw = envelope.canonical()
        headers = {k: v.decode() for k, v in self.signer.headers(self.topic, raw)}
        self.offset += 1
        return raw, Delivery(self.topic, 0, self.offset, case_id.bytes, headers)


class RoundTrips:
    """Counts the statements sent on any asyncpg connection of this process while it is on: each public
    query method is one round trip (BEGIN and COMMIT among them)."""

    METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_from_query")

    def __init__(self) -> None:
        self.count = 0
        self.on = False

    def install(self) -> None:
        for name in self.METHODS:
            original = getattr(asyncpg.Connection, name)

            def counted(con: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
                if self.on:
                    self.count += 1
                return __original(con, *args, **kwargs)

            setattr(asyncpg.Connection, name, counted)


@dataclass
class Figures:
    label: str
    events: int
    cpu: float  # seconds, this process
    wall: float
    postgres: float | None  # seconds, the backends of this database
    round_trips: int

    def line(self) -> str:
        per = 1000 / self.events
        pg = f"{self.postgres * per:.2f}" if self.postgres is not None else "n/a"
        return (
            f"{self.label:<28} {self.events:>6,} events: CPU {self.cpu * per:.3f} ms/event, wall"
            f" {self.wall * per:.3f} ms/event, PostgreSQL CPU {pg} ms/event,"
            f" {self.round_trips / self.events:.2f} round trips/event"
        )


async def backend_cpu(conn: Connection, database: str) -> float | None:
    """CPU seconds spent so far by the backends serving `database` (not `conn`'s own); None when the
    server's processes cannot be seen from here."""
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
    )
    total = 0.0
    try:
        for row in pids:
            times = psutil.Process(row["pid"]).cpu_times()
            total += times.user + times.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return total


async def run(
    label: str,
    consumer: InboxConsumer[Logged],
    envelopes: Envelopes,
    count: int,
    batch: int,
    watch: Connection,
    database: str,
    trips: RoundTrips,
) -> Figures:
    records = list(envelopes.notifications(count))
    pg_before = await backend_cpu(watch, database)
    cpu, wall = time.process_time(), time.perf_counter()
    trips.count, trips.on = 0, True
    for first in range(0, len(records), batch):
        chunk = records[first : first + batch]
        if batch == 1:
            await consumer.handle(*chunk[0])
        elif await consumer.handle_batch(chunk):
            raise SystemExit(f"{label}: a batch was not applied whole")
    trips.on = False
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pg_after = await backend_cpu(watch, database)
    pg = pg_after - pg_before if pg_before is not None and pg_after is not None else None
    return Figures(label, len(records), cpu, wall, pg, trips.count)


async def measure(server_url: str, events: int, batch: int, single: int, repeats: int) -> None:
    database = f"bench_audit_intake_{uuid4().hex[:8]}"
    url = database_url_for(server_url, database)
    store = await open_store(audit_service, Settings("audit", url, "", "", 0))
    key = Ed25519PrivateKey.generate()
    signer = Signer(SOURCE, key)
    trips = RoundTrips()
    trips.install()
    with tempfile.TemporaryDirectory() as folder:
        pinned = Path(folder) / "public-keys.json"
        write_key_set(pinned, [jwk(SOURCE, key.public_key())])
        settings = Settings("audit", url, "", "", 0)
        runtime = Runtime(
            settings=settings,
            pool=store.pool,
            store=store,
            broker=cast(KafkaBroker, None),  # never published to: every record here is good
            relay=cast(OutboxRelay, None),
        )
        consumer = events_of(runtime, SOURCE)
        consumer.verify = EventVerifier(PinnedKeys(pinned))  # as build_app gives every service topic's
        consumer.batch_size = batch
        envelopes = Envelopes(signer)
        watch = await asyncpg.connect(server_url)
        try:
            await run("warm-up", consumer, envelopes, 2 * batch, batch, watch, database, trips)
            batched = [
                await run(f"batches of {batch}", consumer, envelopes, events, batch, watch, database, trips)
                for _ in range(repeats)
            ]
            for figures in batched:
                print(figures.line(), flush=True)
            if len(batched) > 1:
                median = statistics.median(f.cpu / f.events for f in batched) * 1000
                wall = statistics.median(f.wall / f.events for f in batched) * 1000
                print(f"{'median of the runs':<28} CPU {median:.3f} ms/event, wall {wall:.3f} ms/event")
            if single:
                alone = await run("one at a time", consumer, envelopes, single, 1, watch, database, trips)
                print(alone.line())
            async with store.pool.acquire() as conn:
                logged = await conn.fetchval("SELECT count(*) FROM audit_log")
                checked = await log.verify(conn, log.Trust(key.public_key().public_bytes_raw()))
            expected = envelopes.sequence
            if logged != expected or not checked.ok:
                raise SystemExit(f"logged {logged} of {expected}; verification: {checked}")
            print(f"logged {logged:,} entries, each once; the log verifies ({checked.problem or 'ok'})")
        finally:
            await store.pool.close()
            await watch.execute(f'DROP DATABASE IF EXISTS "{database}"')
            await watch.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--single", type=int, default=400, help="then this many one at a time (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a few batches: the script runs and checks")
    args = parser.parse_args()
    if args.quick:
        args.events, args.batch, args.single, args.repeats = 200, 50, 20, 1
    # At the level the service logs (a line for each message handled), rendered as it renders them,
    # written where they cost nothing more.
    configure_logging("audit")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")))  # noqa: SIM115
    with server() as url:
        asyncio.run(measure(url, args.events, args.batch, args.single, args.repeats))


if __name__ == "__main__":
    main()
