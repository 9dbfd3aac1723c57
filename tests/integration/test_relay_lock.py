"""The relay's lock: one relay publishes at a time, and losing the connection that holds the lock
hands publishing on rather than stopping it. (The lock lives on a connection of the relay's own:
the service pools keep no session state across commands.)"""

import asyncio

from events import Actor, Envelope
from infra.eventstore import Context, EventStore
from infra.relay import _RELAY_LOCK, OutboxRelay
from tests.support.events import CounterIncremented
from tests.support.waiting import eventually, read_topic

CTX = Context(actor=Actor.system("test"))
# This database's holders only: services of other tests on the same server take the same lock number.
_HOLDERS = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def _published_in_order(bootstrap: str, topic: str, events: int) -> list[int]:
    records = await read_topic(bootstrap, topic, at_least=events, timeout=60)
    seen: list[int] = []
    for record in sorted(records, key=lambda r: r.offset):
        version = Envelope.from_bytes(record.value).stream_version
        if version not in seen:
            seen.append(version)
    return seen


async def test_one_relay_publishes_and_a_lost_lock_connection_hands_publishing_on(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    relays = [OutboxRelay(store, kafka_bootstrap, topic, partitions=1, idle_wait=0.1) for _ in range(2)]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]

    async def one_connected() -> bool:
        return any(r.connected for r in relays)

    try:
        await eventually(one_connected)
        await asyncio.sleep(2.5)  # longer than a standing-by relay waits between tries
        assert sum(r.connected for r in relays) == 1
        # The other stands by, which its service's /readyz reports as ready (infra.service).
        assert [r.standing_by for r in relays] == [not r.connected for r in relays]
        holders = await store.pool.fetch(_HOLDERS, _RELAY_LOCK)
        assert len(holders) == 1

        for version in range(1, 6):
            await store.append("case-1", version - 1, [CounterIncremented(by=1)], CTX)
        assert await _published_in_order(kafka_bootstrap, topic, 5) == [1, 2, 3, 4, 5]

        await store.pool.execute("SELECT pg_terminate_backend($1)", holders[0]["pid"])
        for version in range(6, 11):
            await store.append("case-1", version - 1, [CounterIncremented(by=1)], CTX)
        assert await _published_in_order(kafka_bootstrap, topic, 10) == list(range(1, 11))
        new_holders = await eventually(lambda: store.pool.fetch(_HOLDERS, _RELAY_LOCK))
        assert len(new_holders) == 1
        assert new_holders[0]["pid"] != holders[0]["pid"]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_lone_relay_whose_lock_connection_drops_reconnects_and_publishes_on(
    store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}leder.test.events"
    relay = OutboxRelay(store, kafka_bootstrap, topic, partitions=1, idle_wait=0.1)
    task = asyncio.create_task(relay.run())
    try:
        holders = await eventually(lambda: store.pool.fetch(_HOLDERS, _RELAY_LOCK))
        await store.append("case-1", 0, [CounterIncremented(by=1)], CTX)
        assert await _published_in_order(kafka_bootstrap, topic, 1) == [1]

        await store.pool.execute("SELECT pg_terminate_backend($1)", holders[0]["pid"])
        for version in range(2, 6):
            await store.append("case-1", version - 1, [CounterIncremented(by=1)], CTX)
        assert await _published_in_order(kafka_bootstrap, topic, 5) == [1, 2, 3, 4, 5]
        new_holders = await eventually(lambda: store.pool.fetch(_HOLDERS, _RELAY_LOCK))
        assert [h["pid"] for h in new_holders] != [h["pid"] for h in holders]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
