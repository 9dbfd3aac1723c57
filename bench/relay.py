"""Outbox relay rate (issue 18, item 2): events per second from an event store to its topic on the
embedded broker (tansu), signed as a service signs them, from the first publish until the relay's
mark reaches the last event.

The store is filled first (cases of a few events each, appended many per command so the filling is
quick); the relay then starts from nothing, as after a broker restart. Prints the figure with the load
average (the machine is shared) and the relay process's CPU time per event, which the other
engineers' load moves less; writes nothing to bench/results.md."""

import argparse
import asyncio
import os
import time
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.common import machine, server
from events import Actor
from infra import db
from infra.embedded import TansuBroker, free_port
from infra.eventstore import Context, EventStore
from infra.logging import configure_logging
from infra.relay import OutboxRelay
from infra.settings import database_url_for
from infra.signing import Signer
from tests.support.events import CounterIncremented, NoteRecorded

CTX = Context(actor=Actor.system("bench"))


async def fill(store: EventStore, events: int, per_case: int = 10) -> None:
    async def case(n: int) -> None:
        payloads = [
            NoteRecorded(text=f"note {i} of case {n}") if i % 2 else CounterIncremented(by=i + 1)
            for i in range(per_case)
        ]
        await store.append(str(uuid4()), 0, payloads, CTX)

    for start in range(0, events // per_case, 50):
        await asyncio.gather(*(case(n) for n in range(start, min(start + 50, events // per_case))))


async def main(events: int, partitions: int, batch_size: int) -> float:
    broker = TansuBroker(free_port())
    broker.start()
    try:
        with server() as server_url:
            url = database_url_for(server_url, f"bench_relay_{uuid4().hex[:8]}")
            await db.ensure_database(url)
            pool = await db.create_pool(url, max_size=8)
            try:
                await db.migrate(pool)
                store = EventStore(pool, "bench")
                await fill(store, events)
                last = await store.last_sequence()
                relay = OutboxRelay(
                    store,
                    broker.bootstrap,
                    "bench.relay.events",
                    partitions=partitions,
                    batch_size=batch_size,
                    idle_wait=0.05,
                    signer=Signer("bench", Ed25519PrivateKey.generate()),
                )
                await relay.publish_pending()  # connects and creates the topic: not timed
                started, cpu = time.perf_counter(), time.process_time()
                task = asyncio.create_task(relay.run())
                while True:  # until the relay's mark, moved only on acknowledgement, reaches the last
                    mark = "SELECT published_through FROM relay_position WHERE topic = $1"
                    if await pool.fetchval(mark, relay.topic) >= last:
                        break
                    await asyncio.sleep(0.01)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            finally:
                await pool.close()
                await db.drop_database(url)
    finally:
        broker.stop()
    published = last - batch_size  # the untimed first batch
    rate = published / seconds
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"relay: {published:,} events in {seconds:.2f} s = {rate:,.0f} events/s, this process's CPU"
        f" {cpu / published * 1e6:.0f} µs per event ({partitions} partitions, batches of {batch_size};"
        f" load average {load}; {machine()})"
    )
    return rate


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    configure_logging("bench", "WARNING")
    asyncio.run(main(args.events, args.partitions, args.batch_size))
