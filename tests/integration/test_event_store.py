"""The event store contract. CI runs this module twice: on the default backend and on the machine's
PostgreSQL 15 (LEDER_DATABASE_URL), since ICBs bring their own server."""

import asyncio
import random
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import Actor, Envelope, canonical_bytes
from infra.eventstore import ConcurrencyError, Context, EventStore
from tests.support.events import CounterIncremented, NoteRecorded

pytestmark = pytest.mark.eventstore

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))


async def test_append_then_read_stream_in_order(store: EventStore) -> None:
    case_id = uuid4()
    written = await store.append(
        str(case_id), 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX, case_id=case_id
    )
    written += await store.append(str(case_id), 2, [CounterIncremented(by=1)], CTX, case_id=case_id)

    read = await store.read_stream(str(case_id))

    assert read == written
    assert [e.stream_version for e in read] == [1, 2, 3]
    assert [e.source_sequence for e in read] == [1, 2, 3]
    assert read[0].payload() == NoteRecorded(text="a")
    assert read[0].actor == CTX.actor and read[0].correlation_id == CTX.correlation_id


async def test_stored_envelope_is_the_canonical_bytes(store: EventStore) -> None:
    [envelope] = await store.append("s-1", 0, [NoteRecorded(text="é")], CTX)
    stored = await store.pool.fetchval("SELECT envelope FROM events WHERE event_id = $1", envelope.event_id)
    assert stored.encode() == canonical_bytes(envelope)
    assert canonical_bytes(Envelope.from_bytes(stored)) == stored.encode()


async def test_wrong_expected_version_is_refused_and_writes_nothing(store: EventStore) -> None:
    await store.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    with pytest.raises(ConcurrencyError) as refused:
        await store.append("s-1", 0, [NoteRecorded(text="b"), NoteRecorded(text="c")], CTX)
    assert (refused.value.expected, refused.value.actual) == (0, 1)
    assert await store.last_sequence() == 1
    assert len(await store.read_stream("s-1")) == 1


async def test_two_concurrent_appends_with_the_same_expected_version_exactly_one_wins(
    store: EventStore,
) -> None:
    await store.append("case", 0, [NoteRecorded(text="first")], CTX)
    for round_ in range(20):
        version = await store.stream_version("case")
        results = await asyncio.gather(
            store.append("case", version, [NoteRecorded(text=f"x{round_}"), CounterIncremented(by=1)], CTX),
            store.append("case", version, [NoteRecorded(text=f"y{round_}"), CounterIncremented(by=2)], CTX),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, ConcurrencyError)]
        assert len(winners) == 1 and len(losers) == 1, results
        stream = await store.read_stream("case")
        # Nothing half-written: the stream holds the winner's two events, no more.
        assert stream[-2:] == winners[0]
        assert len(stream) == version + 2
    sequences = [r["source_sequence"] for r in await store.pool.fetch("SELECT source_sequence FROM events")]
    assert sorted(sequences) == list(range(1, len(sequences) + 1))


async def test_a_reader_following_the_sequence_sees_every_event_once_in_order_without_gaps(
    store: EventStore,
) -> None:
    writers, commands_each = 20, 40
    streams = [f"case-{i}" for i in range(60)]
    appended: set[str] = set()
    done = asyncio.Event()

    async def writer(n: int) -> None:
        rng = random.Random(n)
        for _ in range(commands_each):
            stream = rng.choice(streams)
            batch = [CounterIncremented(by=1) for _ in range(rng.randint(1, 3))]
            while True:
                try:
                    version = await store.stream_version(stream)
                    written = await store.append(stream, version, batch, CTX)
                    appended.update(str(e.event_id) for e in written)
                    break
                except ConcurrencyError:
                    continue  # another writer took the version: read again and retry

    async def reader() -> list[Envelope]:
        seen: list[Envelope] = []
        while True:
            finished = done.is_set()
            batch = await store.read_all(seen[-1].source_sequence if seen else 0, limit=37)
            seen += batch
            if finished and not batch:
                return seen
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(writers)))
    done.set()
    seen = await reading

    assert [e.source_sequence for e in seen] == list(range(1, len(seen) + 1))
    assert len({str(e.event_id) for e in seen}) == len(seen)
    assert {str(e.event_id) for e in seen} == appended
    for stream in streams:
        versions = [e.stream_version for e in seen if e.stream_id == stream]
        assert versions == list(range(1, len(versions) + 1))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET event_type = 'test.Forged'",
        "UPDATE events SET envelope = '{}' WHERE source_sequence = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE source_sequence = 1",
        "TRUNCATE events",
    ],
)
async def test_the_database_refuses_to_change_or_remove_events(store: EventStore, statement: str) -> None:
    await store.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    before = await store.pool.fetch("SELECT * FROM events")
    with pytest.raises(asyncpg.PostgresError, match="events are immutable"):
        await store.pool.execute(statement)
    assert await store.pool.fetch("SELECT * FROM events") == before


async def test_read_all_pages_by_sequence(store: EventStore) -> None:
    for i in range(7):
        await store.append(f"s-{i}", 0, [CounterIncremented(by=i + 1)], CTX)
    first = await store.read_all(0, limit=3)
    rest = await store.read_all(first[-1].source_sequence, limit=100)
    assert [e.source_sequence for e in first + rest] == list(range(1, 8))


async def test_a_command_that_loses_a_race_is_decided_again_on_the_new_state(store: EventStore) -> None:
    """infra.aggregates.change: when another writer (a scheduler's milestone, say) lands between the
    command's read and its append, the command is decided again on the new state and lands after it;
    a rule that the new state breaks refuses it, writing nothing."""
    from infra import aggregates

    def evolve(count: int | None, event: object) -> int:
        return (count or 0) + 1

    class SchedulerGetsThereFirst(EventStore):
        interruptions = 1

        async def append(self, stream_id: str, expected_version: int, *args: Any, **kwargs: Any) -> Any:
            if self.interruptions:
                self.interruptions -= 1
                await store.append(stream_id, expected_version, [NoteRecorded(text="milestone")], CTX)
            return await super().append(stream_id, expected_version, *args, **kwargs)

    seen: list[int] = []

    def note(count: int) -> list[NoteRecorded]:
        seen.append(count)
        return [NoteRecorded(text=f"after {count}")]

    await store.append("race", 0, [NoteRecorded(text="opened")], CTX)
    racing = SchedulerGetsThereFirst(store.pool, store.source)
    await aggregates.change(racing, "race", evolve, note, CTX)
    assert seen == [1, 2]  # decided on one event, then again on two
    assert [e.data["text"] for e in await store.read_stream("race")] == ["opened", "milestone", "after 2"]

    def at_most_three(count: int) -> list[NoteRecorded]:
        if count >= 4:
            raise ValueError("the rule now says no")
        return [NoteRecorded(text="one more")]

    racing.interruptions = 1
    with pytest.raises(ValueError):
        await aggregates.change(racing, "race", evolve, at_most_three, CTX)
    assert [e.data["text"] for e in await store.read_stream("race")][-1] == "milestone"
    assert len(await store.read_stream("race")) == 4
