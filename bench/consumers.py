"""The case services' consumers alone (no broker): CPU and wall time per consumed event.

The notification service opens N cases (its own handlers, on a database of its own); its events are
then signed as its relay signs them and handed, in batches as the broker hands them over, to the
inbox consumers that read its topic: the allocation service's (which queues each case and appends
allocation.CaseAwaitingAllocation), the review service's and the governance service's. The
allocation service's events then go the same way to review and governance. Each consumer runs on a
database of its own on one PostgreSQL server, with the signature check the services make.

Then each source's relay publishes the same events, signed, to the embedded broker (tansu), from its
first to its last, in passes of at most `--relay-batch` (a relay under load publishes what has
accumulated since its last pass; alone, it would take 500 at a time).

Prints, per consumer and per relay, this process's CPU (time.process_time) and wall time per event,
the least over `--repeat` fresh worlds (the machine is shared: whatever else runs only adds, to CPU
time as well, through caches and frequency); writes nothing to bench/results.md. The PostgreSQL server's
and the broker's own CPU are not counted. Services log at INFO: run with stderr to a file or
/dev/null to count what that costs too, as the services pay it."""

import argparse
import asyncio
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import machine, server
from bench.world import Plan, World, _notification, notify, open_world
from events.topics import service_topic
from infra.embedded import TansuBroker, free_port
from infra.eventstore import EventStore
from infra.inbox import Delivery, InboxConsumer
from infra.logging import configure_logging
from infra.relay import OutboxRelay
from infra.signing import EventVerifier, PinnedKeys, Signer, generate_key_set, read_private_key

# Consumer (service, source topic) in the order the events flow.
ROUTES = [
    ("allocation", "notification"),
    ("review", "notification"),
    ("governance", "notification"),
    ("review", "allocation"),
    ("governance", "allocation"),
    ("notification", "allocation"),
]


@dataclass
class Figure:
    events: int
    cpu: float
    wall: float


def _records(rows: list[tuple[int, str]], topic: str, signer: Signer) -> list[tuple[bytes, Delivery]]:
    """The store's events as its relay publishes them: these bytes, these headers, signed."""
    records = []
    for sequence, text in rows:
        value = text.encode()
        headers = {k: v.decode() for k, v in signer.headers(topic, value)}
        records.append((value, Delivery(topic, 0, sequence, None, {"correlation_id": "bench", **headers})))
    return records


def _consumer(world: World, service: str, source: str) -> InboxConsumer[Any]:
    topic = service_topic(source, "")
    return next(c for c in world.services[service].consumers if c.topic == topic)


async def _feed(consumer: InboxConsumer[Any], records: list[tuple[bytes, Delivery]], batch: int) -> Figure:
    cpu, wall = time.process_time(), time.perf_counter()
    for first in range(0, len(records), batch):
        rewind = await consumer.handle_batch(records[first : first + batch])
        if rewind:
            raise SystemExit(f"{consumer.name}: a batch was not applied ({rewind})")
    return Figure(len(records), time.process_time() - cpu, time.perf_counter() - wall)


async def _relay(store: EventStore, bootstrap: str, signer: Signer, batch: int) -> Figure:
    """The store's events published from the first, in passes of at most `batch`, as the relay's loop
    runs them when it is woken with that many waiting."""
    topic = f"bench.consumers.{store.source}.{os.getpid()}.{time.monotonic_ns()}"
    relay = OutboxRelay(store, bootstrap, topic, batch_size=batch, signer=signer)
    last = await store.last_sequence()
    await relay._connect()  # the topic made and the clients connected: not timed
    cpu, wall = time.process_time(), time.perf_counter()
    published = 0
    while published < last:
        done = await relay.publish_pending()
        if not done:
            raise SystemExit(f"the {store.source} relay published nothing (fenced: {relay.fenced_because})")
        published += done
    figure = Figure(published, time.process_time() - cpu, time.perf_counter() - wall)
    await relay._disconnect()
    return figure


async def one_world(
    server_url: str, keys: Path, count: int, batch: int, seed: int, bootstrap: str | None, relay_batch: int
) -> dict[str, Figure]:
    world = await open_world(server_url, seed)
    try:
        verifier = EventVerifier(PinnedKeys(keys / "public-keys.json"))
        for running in world.services.values():
            for consumer in running.consumers:
                if verifier.owner(consumer.topic) is not None:
                    consumer.verify = verifier
        rng = random.Random(seed)
        for n in range(count):
            await notify(world, _notification(rng, seed * 1_000_000 + n, Plan()))
        figures: dict[str, Figure] = {}
        for service, source in ROUTES:
            store = world.store(source)
            rows = await store.read_all_raw(0, 1_000_000)
            topic = service_topic(source, "")
            signer = Signer(source, read_private_key(keys / f"{source}.pem"))
            records = _records(rows, topic, signer)
            consumer = _consumer(world, service, source)
            figures[f"{service} <- {source}"] = await _feed(consumer, records, batch)
        if bootstrap is not None:
            for source in ("notification", "allocation"):
                signer = Signer(source, read_private_key(keys / f"{source}.pem"))
                figures[f"relay {source}"] = await _relay(world.store(source), bootstrap, signer, relay_batch)
        return figures
    finally:
        await world.close()


async def main(count: int, batch: int, repeat: int, relay: bool, relay_batch: int) -> None:
    broker = TansuBroker(free_port()) if relay else None
    if broker is not None:
        broker.start()
    try:
        with tempfile.TemporaryDirectory() as folder, server() as server_url:
            keys, _ = generate_key_set(Path(folder))
            bootstrap = broker.bootstrap if broker is not None else None
            runs = [
                await one_world(server_url, keys, count, batch, seed, bootstrap, relay_batch)
                for seed in range(1, repeat + 1)
            ]
    finally:
        if broker is not None:
            broker.stop()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"consumers alone: {count:,} notifications, batches of {batch}, relay passes of {relay_batch},"
        f" least of {repeat} (load {load}; {machine()})"
    )
    for route in runs[0]:
        events = runs[0][route].events
        cpu = min(r[route].cpu for r in runs) / events * 1000
        wall = min(r[route].wall for r in runs) / events * 1000
        print(f"  {route:28} {events:6,} events  CPU {cpu:.3f} ms/event  wall {wall:.3f} ms/event")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-relay", action="store_true", help="the consumers only, no broker")
    parser.add_argument("--relay-batch", type=int, default=20)
    parser.add_argument("--log-level", default="INFO", help="the services' own is INFO")
    parser.add_argument("--quick", action="store_true", help="100 notifications, once (what CI runs)")
    args = parser.parse_args()
    if args.quick:
        args.notifications, args.repeat = 100, 1
    configure_logging("bench", args.log_level)
    asyncio.run(main(args.notifications, args.batch, args.repeat, not args.no_relay, args.relay_batch))
