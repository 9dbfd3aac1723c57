"""The audit consumer logs a batch of events in a few statements, not several an event
(log.append_many, through the inbox's apply_batch): each entry's hashes and tree head, the tiles and
the tree's right edge are what appending one at a time leaves and what verification recomputes; an
event already logged is a duplicate and one that forks is refused, as when each is appended alone; a
fork in a batch the consumer takes is set aside alone, its neighbours logged."""

import json
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker

from events import Envelope
from events.topics import service_topic
from infra.eventstore import EventStore
from infra.inbox import Delivery, Fork
from infra.relay import OutboxRelay
from infra.service import Runtime, open_store
from infra.settings import Settings
from services.audit import log, merkle
from services.audit.app import definition
from services.audit.consumers import events_of
from tests.integration.audit.test_audit_tiles import bulk, entry, stored_tiles


@pytest.fixture
async def audit_log(database_url: str) -> AsyncIterator[EventStore]:
    s = await open_store(definition, Settings("audit", database_url, "", "", 0))
    yield s
    await s.pool.close()


def arrivals(*envelopes: Envelope) -> list[log.Arrival]:
    return [log.Arrival(e.canonical(), e) for e in envelopes]


async def test_batches_leave_the_hashes_tiles_and_tree_heads_one_at_a_time_leaves(
    audit_log: EventStore,
) -> None:
    async with audit_log.pool.acquire() as conn:
        hashes = await bulk(conn, 65_200)
        await conn.execute("SELECT audit_fill_tiles()")
        events = [entry(sequence) for sequence in range(1, 1_001)]
        at = 0
        # The batch of 600 completes the first level-2 node (at entry 65,535) and two level-1 nodes of
        # one tile after it.
        for size in [1, 2, 300, 1, 600, 96]:
            async with conn.transaction():
                assert await log.append_many(conn, arrivals(*events[at : at + size])) == [True] * size
            at += size
        hashes += [merkle.leaf_hash(e.canonical()) for e in events]
        tiles = await stored_tiles(conn)
        assert tiles == merkle.tiles_of(hashes) and (2, 0) in tiles and len(tiles[1, 1]) == 64
        rows = await conn.fetch("SELECT position, root_after FROM audit_log WHERE position >= 65200")
        heads = {r["position"]: bytes(r["root_after"]) for r in rows}
        for position in [65_200, 65_202, 65_503, 65_535, 65_536, 65_791, 66_047, 66_103, 66_199]:
            assert heads[position] == merkle.root(hashes[: position + 1])
        frontier = await conn.fetchrow("SELECT hashes, sizes FROM log_frontier")
        assert frontier is not None
        edge: list[tuple[int, bytes]] = []
        for leaf in hashes:
            edge = merkle.push(edge, leaf)
        assert list(zip(frontier["sizes"], map(bytes, frontier["hashes"]), strict=True)) == edge
        checked = await log.verify(conn, log.Trust(b""))
        assert checked.ok and checked.entries == len(hashes)
        assert checked.root_hash == merkle.root(hashes).hex()


async def test_a_batch_meets_duplicates_and_forks_as_appends_one_at_a_time_do(audit_log: EventStore) -> None:
    a, b, c, d = (entry(sequence) for sequence in range(1, 5))
    async with audit_log.pool.acquire() as conn:
        async with conn.transaction():
            assert await log.append_many(conn, arrivals(a, b)) == [True, True]
        async with conn.transaction():
            # Logged before, new, and new then again in the same batch.
            assert await log.append_many(conn, arrivals(a, c, c)) == [False, True, False]
        rival = entry(4).model_copy(update={"source_sequence": 3})
        edited = a.model_copy(update={"data": {"n": "edited"}})
        elsewhere = entry(5).model_copy(update={"event_id": d.event_id})
        for batch, why in [
            ([d, rival], "the log holds another event at this source sequence"),
            ([d, edited], "the log holds this event id with other bytes"),
            ([d, elsewhere], "the log holds this event id with other bytes at notification sequence 4"),
        ]:
            with pytest.raises(Fork) as forked:
                async with conn.transaction():
                    await log.append_many(conn, arrivals(*batch))
            assert forked.value.why == why
            assert forked.value.other.event_id == str(batch[-1].event_id)
        sequences = await conn.fetch("SELECT source_sequence FROM audit_log ORDER BY position")
        assert [r["source_sequence"] for r in sequences] == [1, 2, 3]  # nothing of the refused batches
        assert (await log.verify(conn, log.Trust(b""))).ok


class Broker:
    """What the inbox publishes dead letters through: kept here."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, body: bytes, **kwargs: Any) -> None:
        self.published.append({"body": body, **kwargs})


async def test_a_fork_in_a_batch_the_consumer_takes_is_set_aside_alone(audit_log: EventStore) -> None:
    settings = Settings("audit", "", "", "", 0)
    runtime = Runtime(
        settings=settings,
        pool=audit_log.pool,
        store=audit_log,
        broker=cast(KafkaBroker, None),
        relay=cast(OutboxRelay, None),
    )
    consumer = events_of(runtime, "notification")
    consumer.broker = broker = Broker()  # type: ignore[assignment]
    topic = service_topic("notification")

    def delivered(*envelopes: Envelope, first: int = 0) -> list[tuple[bytes, Delivery]]:
        return [(e.canonical(), Delivery(topic, 0, first + i, None, {})) for i, e in enumerate(envelopes)]

    first = [entry(sequence) for sequence in range(1, 4)]
    assert await consumer.handle_batch(delivered(*first)) == {}
    # Another event at a logged source sequence, on a stream of its own: the inbox lets it through,
    # the log's own check forks it.
    rival = entry(5).model_copy(update={"source_sequence": 2})
    later = [entry(4), rival, entry(6)]
    assert await consumer.handle_batch(delivered(*later, first=3)) == {}
    async with audit_log.pool.acquire() as conn:
        logged = await conn.fetch("SELECT event_id FROM audit_log ORDER BY position")
        assert [r["event_id"] for r in logged] == [e.event_id for e in [*first, later[0], later[2]]]
        forks = await conn.fetch("SELECT source_sequence, other_event_id FROM inbox_forks")
        assert [tuple(r) for r in forks] == [(2, str(rival.event_id))]
        assert (await log.verify(conn, log.Trust(b""))).ok
    assert [json.loads(p["body"])["event_id"] for p in broker.published] == [str(rival.event_id)]
    assert [p["headers"]["dlq_error_type"] for p in broker.published] == ["Fork"]
