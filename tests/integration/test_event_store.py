"""The event store contract, one suite run against each backend (as the eventsourcing library runs one
suite against each recorder): PostgreSQL (infra.eventstore.EventStore) and memory
(infra.memory_store.MemoryEventStore). CI runs the PostgreSQL ones twice: on the default backend and
on the machine's PostgreSQL 15 (LEDER_DATABASE_URL), since ICBs bring their own server. The in-memory
ones are marked `fast` too: `make test-fast` runs them without any database.

Tests that are about PostgreSQL itself (the table's immutability) take the `store` fixture alone."""

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events import Actor, Envelope, canonical_bytes
from infra.eventstore import ConcurrencyError, Context, EventLog, EventStore
from infra.memory_store import MemoryEventStore
from tests.support.events import CounterIncremented, NoteRecorded

pytestmark = pytest.mark.eventstore

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))


@pytest.fixture(params=["postgres", pytest.param("memory", marks=pytest.mark.fast)])
def log(request: pytest.FixtureRequest) -> EventLog:
    """The store under contract: each test runs once per backend. The PostgreSQL one asks for its
    fixture only when used, so the in-memory runs need no database."""
    if request.param == "memory":
        return MemoryEventStore("test")
    store: EventStore = request.getfixturevalue("store")
    return store


def twin(log: EventLog) -> Callable[..., EventLog]:
    """A constructor of another store over the same events (for a subclass that intercepts calls)."""
    if isinstance(log, EventStore):
        return lambda cls: cls(log.pool, log.source)

    def memory(cls: type[MemoryEventStore]) -> EventLog:
        other = cls(log.source)
        assert isinstance(log, MemoryEventStore)
        other.__dict__.update(log.__dict__)  # the same list of events and the same append lock
        return other

    return memory


async def test_append_then_read_stream_in_order(log: EventLog) -> None:
    case_id = uuid4()
    written = await log.append(
        str(case_id), 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX, case_id=case_id
    )
    written += await log.append(str(case_id), 2, [CounterIncremented(by=1)], CTX, case_id=case_id)

    read = await log.read_stream(str(case_id))

    assert read == written
    assert [e.stream_version for e in read] == [1, 2, 3]
    assert [e.source_sequence for e in read] == [1, 2, 3]
    assert read[0].payload() == NoteRecorded(text="a")
    assert read[0].actor == CTX.actor and read[0].correlation_id == CTX.correlation_id


async def test_stored_envelope_is_the_canonical_bytes(log: EventLog) -> None:
    [envelope] = await log.append("s-1", 0, [NoteRecorded(text="é")], CTX)
    [stored] = [r.envelope for r in await log.read_after(0) if r.source_sequence == envelope.source_sequence]
    assert stored.encode() == canonical_bytes(envelope)
    assert canonical_bytes(Envelope.from_bytes(stored)) == stored.encode()


async def test_wrong_expected_version_is_refused_and_writes_nothing(log: EventLog) -> None:
    await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    with pytest.raises(ConcurrencyError) as refused:
        await log.append("s-1", 0, [NoteRecorded(text="b"), NoteRecorded(text="c")], CTX)
    assert (refused.value.expected, refused.value.actual) == (0, 1)
    assert await log.last_sequence() == 1
    assert len(await log.read_stream("s-1")) == 1


async def test_two_concurrent_appends_with_the_same_expected_version_exactly_one_wins(
    log: EventLog,
) -> None:
    await log.append("case", 0, [NoteRecorded(text="first")], CTX)
    for round_ in range(20):
        version = await log.stream_version("case")
        results = await asyncio.gather(
            log.append("case", version, [NoteRecorded(text=f"x{round_}"), CounterIncremented(by=1)], CTX),
            log.append("case", version, [NoteRecorded(text=f"y{round_}"), CounterIncremented(by=2)], CTX),
            return_exceptions=True,
        )
        winners = [r for r in results if isinstance(r, list)]
        losers = [r for r in results if isinstance(r, ConcurrencyError)]
        assert len(winners) == 1 and len(losers) == 1, results
        stream = await log.read_stream("case")
        # Nothing half-written: the stream holds the winner's two events, no more.
        assert stream[-2:] == winners[0]
        assert len(stream) == version + 2
    sequences = [r.source_sequence for r in await log.read_after(0, 10**6)]
    assert sorted(sequences) == list(range(1, len(sequences) + 1))


async def test_a_reader_following_the_sequence_sees_every_event_once_in_order_without_gaps(
    log: EventLog,
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
                    version = await log.stream_version(stream)
                    written = await log.append(stream, version, batch, CTX)
                    appended.update(str(e.event_id) for e in written)
                    break
                except ConcurrencyError:
                    continue  # another writer took the version: read again and retry

    async def reader() -> list[Envelope]:
        seen: list[Envelope] = []
        while True:
            finished = done.is_set()
            batch = await log.read_all(seen[-1].source_sequence if seen else 0, limit=37)
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


async def test_read_all_pages_by_sequence(log: EventLog) -> None:
    for i in range(7):
        await log.append(f"s-{i}", 0, [CounterIncremented(by=i + 1)], CTX)
    first = await log.read_all(0, limit=3)
    rest = await log.read_all(first[-1].source_sequence, limit=100)
    assert [e.source_sequence for e in first + rest] == list(range(1, 8))


async def test_a_command_that_loses_a_race_is_decided_again_on_the_new_state(log: EventLog) -> None:
    """infra.aggregates.Repository.change: when another writer (a scheduler's milestone, say) lands
    between the command's read and its append, the command is decided again on the new state and
    lands after it; a rule that the new state breaks refuses it, writing nothing."""
    from infra import aggregates

    def evolve(count: int | None, event: object) -> int:
        return (count or 0) + 1

    class SchedulerGetsThereFirst(type(log)):  # type: ignore[misc]
        interruptions = 1

        async def append(self, stream_id: str, expected_version: int, *args: Any, **kwargs: Any) -> Any:
            if self.interruptions:
                self.interruptions -= 1
                await log.append(stream_id, expected_version, [NoteRecorded(text="milestone")], CTX)
            return await super().append(stream_id, expected_version, *args, **kwargs)

    seen: list[int] = []

    def note(count: int) -> list[NoteRecorded]:
        seen.append(count)
        return [NoteRecorded(text=f"after {count}")]

    await log.append("race", 0, [NoteRecorded(text="opened")], CTX)
    racing: Any = twin(log)(SchedulerGetsThereFirst)
    await aggregates.Repository(racing, evolve).change("race", note, CTX)
    assert seen == [1, 2]  # decided on one event, then again on two
    assert [e.data["text"] for e in await log.read_stream("race")] == ["opened", "milestone", "after 2"]

    def at_most_three(count: int) -> list[NoteRecorded]:
        if count >= 4:
            raise ValueError("the rule now says no")
        return [NoteRecorded(text="one more")]

    racing.interruptions = 1
    with pytest.raises(ValueError):
        await aggregates.Repository(racing, evolve).change("race", at_most_three, CTX)
    assert [e.data["text"] for e in await log.read_stream("race")][-1] == "milestone"
    assert len(await log.read_stream("race")) == 4


async def test_a_stream_is_read_after_a_version_and_up_to_a_limit(log: EventLog) -> None:
    written = await log.append("s-1", 0, [CounterIncremented(by=n) for n in range(1, 6)], CTX)
    assert await log.read_stream("s-1", after_version=2) == written[2:]
    assert await log.read_stream("s-1", limit=1) == written[:1]
    assert await log.read_stream("s-1", after_version=1, limit=2) == written[1:3]
    assert await log.read_stream("nothing-here") == []
    assert await log.stream_version("s-1") == 5
    assert await log.stream_version("nothing-here") == 0


async def test_a_case_is_read_across_its_streams_in_sequence_order(log: EventLog) -> None:
    case_id, other = uuid4(), uuid4()
    first = await log.append(str(case_id), 0, [NoteRecorded(text="opened")], CTX, case_id=case_id)
    await log.append(str(other), 0, [NoteRecorded(text="another case")], CTX, case_id=other)
    reads = await log.append(f"reads-{case_id}", 0, [CounterIncremented(by=1)], CTX, case_id=case_id)
    later = await log.append(str(case_id), 1, [NoteRecorded(text="later")], CTX, case_id=case_id)
    await log.append("no-case", 0, [NoteRecorded(text="no case")], CTX)

    assert await log.read_case(case_id) == first + reads + later
    assert await log.has_case(case_id) and await log.has_case(other)
    assert not await log.has_case(uuid4())


async def test_read_after_gives_each_event_as_stored_with_its_columns(log: EventLog) -> None:
    written = await log.append("s-1", 0, [NoteRecorded(text="a"), CounterIncremented(by=2)], CTX)
    written += await log.append("s-2", 0, [NoteRecorded(text="b")], CTX)

    recorded = await log.read_after(0)

    assert [r.source_sequence for r in recorded] == [1, 2, 3]
    assert [r.stream_id for r in recorded] == ["s-1", "s-1", "s-2"]
    assert [r.event_type for r in recorded] == [e.event_type for e in written]
    assert [r.schema_version for r in recorded] == [e.schema_version for e in written]
    assert [r.envelope.encode() for r in recorded] == [canonical_bytes(e) for e in written]
    assert await log.read_after(1, limit=1) == recorded[1:2]
    assert await log.read_after(3) == []
    assert await log.last_sequence() == 3


async def test_events_are_read_by_when_they_occurred_not_when_recorded(log: EventLog) -> None:
    now = datetime.now(UTC)
    old = await log.append("s-1", 0, [NoteRecorded(text="old")], CTX, occurred_at=now - timedelta(days=40))
    await log.append("s-2", 0, [NoteRecorded(text="new")], CTX, occurred_at=now)
    older = await log.append(
        "s-3", 0, [NoteRecorded(text="older")], CTX, occurred_at=now - timedelta(days=90)
    )

    before = await log.read_occurred_before(now - timedelta(days=1))

    assert [r.envelope.encode() for r in before] == [canonical_bytes(e) for e in old + older]


async def test_a_transaction_sees_its_own_appends_others_only_once_committed(log: EventLog) -> None:
    await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    async with log.transaction() as tx:
        [mine] = await log.append("s-1", 1, [NoteRecorded(text="b")], CTX, conn=tx)
        assert await log.stream_version("s-1", conn=tx) == 2
        assert (await log.read_stream("s-1", conn=tx))[-1] == mine
        assert [r.source_sequence for r in await log.read_after(0, conn=tx)] == [1, 2]
        assert await log.stream_version("s-1") == 1
        assert len(await log.read_stream("s-1")) == 1
        assert await log.last_sequence() == 1
    assert await log.read_stream("s-1", after_version=1) == [mine]
    assert await log.last_sequence() == 2


async def test_a_transaction_that_fails_leaves_nothing_and_no_gap_in_the_sequence(log: EventLog) -> None:
    await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    with pytest.raises(RuntimeError):
        async with log.transaction() as tx:
            await log.append("s-1", 1, [NoteRecorded(text="b")], CTX, conn=tx)
            await log.append("s-2", 0, [CounterIncremented(by=1)], CTX, conn=tx)
            raise RuntimeError("the handler failed after appending")
    assert await log.stream_version("s-1") == 1
    assert await log.read_stream("s-2") == []
    assert await log.last_sequence() == 1
    [next_] = await log.append("s-2", 0, [CounterIncremented(by=1)], CTX)
    assert next_.source_sequence == 2


async def test_a_refused_append_inside_a_transaction_leaves_the_rest_of_it(log: EventLog) -> None:
    """As an inbox handler relies on: its append refused (ConcurrencyError) writes nothing, and what the
    transaction did before stands when it commits."""
    await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    async with log.transaction() as tx:
        await log.append("s-2", 0, [NoteRecorded(text="kept")], CTX, conn=tx)
        with pytest.raises(ConcurrencyError):
            await log.append("s-1", 0, [NoteRecorded(text="refused")], CTX, conn=tx)
    assert [e.data["text"] for e in await log.read_all()] == ["a", "kept"]
