"""A store restored from a backup knows it and is fenced until recovered (issue 20, first part).

The store's side, on both backends: a fenced store records nothing (StoreFenced: 503 at the edge,
transient to a consumer), lost events are put back byte for byte at their own sequence numbers, and
every envelope carries the store's epoch. PostgreSQL's: the store's identity (a changed database OID is
a restore: a new epoch, unverified) and the comparison with the topic's last records."""

import pytest

from events import Actor, Envelope
from infra import fencing
from infra.eventstore import Context, EventLog, EventStore, StoreFenced
from infra.fencing import compare_with_topic, open_identity
from infra.inbox import is_transient
from infra.memory_store import MemoryEventStore
from tests.support.events import NoteRecorded

pytestmark = pytest.mark.eventstore

CTX = Context(actor=Actor(kind="user", id="alice", role="lac"))


@pytest.fixture(params=["postgres", pytest.param("memory", marks=pytest.mark.fast)])
def log(request: pytest.FixtureRequest) -> EventLog:
    if request.param == "memory":
        return MemoryEventStore("test")
    store: EventStore = request.getfixturevalue("store")
    return store


async def test_a_fenced_store_records_nothing_and_says_why(log: EventLog) -> None:
    await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    log.fenced_because = "behind its topic"  # type: ignore[attr-defined]
    with pytest.raises(StoreFenced) as refused:
        await log.append("s-1", 1, [NoteRecorded(text="b")], CTX)
    assert refused.value.status == 503 and refused.value.code == "store_fenced"
    assert "behind its topic" in refused.value.detail
    # A consumer tries the message again later instead of setting it aside.
    assert is_transient(refused.value)
    async with log.transaction() as tx:
        with pytest.raises(StoreFenced):
            await log.append("s-2", 0, [NoteRecorded(text="c")], CTX, conn=tx)
    assert await log.last_sequence() == 1
    log.fenced_because = None  # type: ignore[attr-defined]
    [next_] = await log.append("s-1", 1, [NoteRecorded(text="b")], CTX)
    assert next_.source_sequence == 2


async def test_every_envelope_carries_the_store_epoch(log: EventLog) -> None:
    log.epoch = "epoch-one"  # type: ignore[attr-defined]
    [first] = await log.append("s-1", 0, [NoteRecorded(text="a")], CTX)
    log.epoch = "epoch-two"  # type: ignore[attr-defined]
    [second] = await log.append("s-1", 1, [NoteRecorded(text="b")], CTX)
    assert [e.store_epoch for e in await log.read_all()] == ["epoch-one", "epoch-two"]
    assert (first.store_epoch, second.store_epoch) == ("epoch-one", "epoch-two")


async def test_an_envelope_without_an_epoch_keeps_the_bytes_it_had() -> None:
    """Events recorded before the epoch existed: parsed, and serialised to the same bytes again."""
    old = (
        b'{"actor":{"id":"x","kind":"system","role":null},"case_id":null,"causation_id":null,'
        b'"correlation_id":"c","data":{},"event_id":"ec85d32d-c24b-4750-afcd-6c640f07ac59",'
        b'"event_type":"a.Bc","occurred_at":"2026-11-30T11:48:46.578101Z",'
        b'"recorded_at":"2026-11-30T11:48:46.578111Z","schema_version":1,"source":"x",'
        b'"source_sequence":1,"stream_id":"s","stream_version":1}'
    )
    envelope = Envelope.from_bytes(old)
    assert envelope.store_epoch is None and envelope.canonical() == old


async def test_lost_events_are_put_back_byte_for_byte_at_their_own_sequence(log: EventLog) -> None:
    other = MemoryEventStore("test")
    published = await other.append("s-1", 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX)
    published += await other.append("s-2", 0, [NoteRecorded(text="c")], CTX)
    texts = [r.envelope for r in await other.read_after(0)]
    [kept] = texts[:1]
    async with log.transaction() as tx:
        assert await log.restore(tx, [kept]) == 1  # type: ignore[attr-defined]
    async with log.transaction() as tx:
        # Not following on from the store's last sequence: refused, nothing written.
        with pytest.raises(ValueError, match="without a gap"):
            await log.restore(tx, texts[2:])  # type: ignore[attr-defined]
    async with log.transaction() as tx:
        assert await log.restore(tx, texts[1:]) == 3  # type: ignore[attr-defined]
    assert [r.envelope for r in await log.read_after(0)] == texts
    assert await log.read_stream("s-1") == published[:2]
    assert await log.stream_version("s-2") == 1
    [next_] = await log.append("s-2", 1, [NoteRecorded(text="d")], CTX)
    assert next_.source_sequence == 4


async def test_a_changed_database_identity_begins_an_unverified_epoch(store: EventStore) -> None:
    first = await open_identity(store.pool)
    assert first.verified and first.changed is None
    again = await open_identity(store.pool)
    assert (again.epoch, again.verified) == (first.epoch, True)
    # As pg_restore into a new database would leave it: the row says another database's OID.
    await store.pool.execute("UPDATE store_identity SET database_oid = database_oid + 1")
    restored = await open_identity(store.pool)
    assert restored.epoch != first.epoch and not restored.verified
    assert restored.changed is not None and "database OID" in restored.changed
    # Still unverified at the next start, until compared with the topic (infra.fencing.StoreGuard).
    assert (await open_identity(store.pool)).verified is False


async def test_a_store_behind_its_topic_or_forked_from_it_is_fenced(store: EventStore) -> None:
    await store.append("s-1", 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX)
    texts = [r.envelope.encode() for r in await store.read_after(0)]
    assert await compare_with_topic(store, {}, "t") is None
    assert await compare_with_topic(store, {0: texts[1], 1: texts[0]}, "t") is None
    ahead = MemoryEventStore("test")
    await ahead.append("s-1", 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX)
    [third] = await ahead.append("s-2", 0, [NoteRecorded(text="c")], CTX)
    behind = await compare_with_topic(store, {0: texts[1], 1: third.canonical()}, "t")
    assert behind is not None and "to sequence 2, the topic to 3" in behind and "leder recover" in behind
    other = (await ahead.read_after(1, 1))[0].envelope.encode()  # another event at sequence 2
    forked = await compare_with_topic(store, {0: other}, "t")
    held_id, other_id = Envelope.from_bytes(texts[1]).event_id, Envelope.from_bytes(other).event_id
    assert (
        forked is not None and "forked" in forked and f"({held_id})" in forked and f"({other_id})" in forked
    )


async def test_a_restored_store_is_fenced_until_it_holds_what_its_topic_holds(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard a service runs (infra.service): unverified at once after a restore, compared with the
    topic, fenced while behind, and clear once the lost events are back."""
    lost = MemoryEventStore("test")
    await lost.append("s-1", 0, [NoteRecorded(text="a"), NoteRecorded(text="b")], CTX)
    texts = [r.envelope for r in await lost.read_after(0)]
    tail = {0: texts[-1].encode()}

    async def topic_tail(*_: object) -> dict[int, bytes]:
        return tail

    monkeypatch.setattr(fencing, "topic_tail", topic_tail)
    await open_identity(store.pool)
    await store.pool.execute("UPDATE store_identity SET database_oid = database_oid + 1")  # restored
    guard = fencing.StoreGuard(store, "broker:9092", "t")
    await guard.open()
    # Before any comparison: no command (the identity changed), nothing published, no consumer.
    assert store.fenced_because is not None and "not the one it was recorded in" in store.fenced_because
    assert guard.publish_fence() == store.fenced_because and not guard.clear.is_set()
    with pytest.raises(StoreFenced):
        await store.append("s-2", 0, [NoteRecorded(text="new")], CTX)

    await guard.check()
    assert guard.compared and guard.behind is not None and "behind its topic" in guard.behind
    assert store.fenced_because == guard.behind and not guard.clear.is_set()
    assert guard.readiness() == {"ok": False, "compared": True, "reason": guard.behind}

    async with store.transaction() as tx:
        await store.restore(tx, texts)
    await guard.check()
    assert guard.readiness() == {"ok": True, "compared": True, "reason": None}
    assert store.fenced_because is None and guard.clear.is_set() and guard.publish_fence() is None
    assert await store.pool.fetchval("SELECT verified_at IS NOT NULL FROM store_identity")
    [next_] = await store.append("s-2", 0, [NoteRecorded(text="new")], CTX)
    assert next_.source_sequence == 3 and next_.store_epoch == store.epoch
