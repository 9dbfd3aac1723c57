"""A rebuild decodes its own store's events on a trusted path (infra.projections.Decoder): each event
and payload it gives must be the checked path's (Envelope.from_bytes, then payload), an older version
must still be upcast, and every service's folds must build from it exactly what they build from the
checked envelopes and what the live appends built."""

from collections.abc import Iterator, Sequence
from uuid import uuid4

import pytest

from bench.world import SERVICES, World, hire_staff, open_world, run_cases
from events import Actor, Envelope, registered_events
from infra import db, projections
from infra.db import Connection
from infra.eventstore import Context, EventStore, RecordedEvent
from infra.projections import Decoded, Decoder, Recorded, Row, StoredEvent, copy_rows, decode_stored, rebuild
from tests.support.events import CounterIncremented, NoteRecorded

RECORDED_FIELDS = [name for name in Recorded.__dict__ if not name.startswith("_")]


@pytest.fixture
async def world(pg_server_url: str) -> Iterator[World]:
    world = await open_world(pg_server_url)
    try:
        await hire_staff(world, reviewers=6, seniors=3)
        await run_cases(world, 6)
        yield world  # type: ignore[misc]
    finally:
        await world.close()


async def _rows(store: EventStore) -> list[RecordedEvent]:
    rows: list[RecordedEvent] = []
    while page := await store.read_after(rows[-1].source_sequence if rows else 0, 1000):
        rows += page
    return rows


async def _tables(store: EventStore) -> dict[str, list[str]]:
    return {
        table: [r[0] for r in await store.pool.fetch(f'SELECT t::text FROM "{table}" t ORDER BY 1')]
        for projection in store.projections
        for table in projection.tables
    }


def _same(trusted: Decoded, checked: Envelope) -> None:
    recorded, payload = trusted
    assert payload == checked.payload()
    assert type(payload) is type(checked.payload())
    for name in RECORDED_FIELDS:
        assert getattr(recorded, name) == getattr(checked, name), name
    # As the checked envelope gives its times: in UTC, the same tzinfo.
    assert recorded.occurred_at.tzinfo == checked.occurred_at.tzinfo


async def test_every_event_of_every_service_decodes_on_the_trusted_path_as_on_the_checked_one(
    world: World,
) -> None:
    for name in SERVICES:
        rows = await _rows(world.store(name))
        assert rows, name
        decode = Decoder()
        trusted = 0
        for row in rows:
            decoded = decode(row.event_type, row.schema_version, row.envelope)
            trusted += isinstance(decoded[0], StoredEvent)
            _same(decoded, Envelope.from_bytes(row.envelope))
        assert trusted == len(rows), name  # all stored in their current versions


async def test_every_services_rebuild_on_the_trusted_path_equals_the_checked_path_and_the_live_tables(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SERVICES:
        store = world.store(name)
        live = await _tables(store)
        assert any(live.values()), name
        assert await rebuild(store, batch=50) == await store.last_sequence()
        assert await _tables(store) == live, name
    # Every event on the checked path, as before the trusted one existed: the same tables.
    monkeypatch.setattr(projections, "_head_validator", lambda event_type, schema_version: None)
    for name in SERVICES:
        store = world.store(name)
        live = await _tables(store)
        assert await rebuild(store, batch=50) == await store.last_sequence()
        assert await _tables(store) == live, name


def test_every_registered_event_type_has_a_trusted_parser_for_its_current_version_only() -> None:
    for event_type, payload in registered_events().items():
        assert projections._head_validator(event_type, payload.schema_version) is not None, event_type
        assert projections._head_validator(event_type, payload.schema_version - 1) is None, event_type
    assert projections._head_validator("nobody.Knows", 1) is None


class Notes:
    """Per stream, the notes and the total, folded; the stream's last version and who wrote last."""

    name = "notes"
    tables: Sequence[str] = ("notes",)
    event_types = projections.reads(NoteRecorded, CounterIncremented)

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        pass  # only the rebuild's table is looked at

    def fold(self) -> "NotesFold":
        return NotesFold()


class NotesFold:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for recorded, payload in events:
            row = self.rows.setdefault(
                recorded.stream_id, {"stream_id": recorded.stream_id, "notes": [], "total": 0}
            )
            if isinstance(payload, NoteRecorded):
                row["notes"].append(f"{payload.text} by {payload.author}")
            if isinstance(payload, CounterIncremented):
                row["total"] += payload.by
            row.update(
                last_version=recorded.stream_version, actor=recorded.actor.id, case_id=recorded.case_id
            )

    async def write(self, conn: Connection) -> None:
        await copy_rows(conn, "notes", self.rows.values())


async def test_an_event_stored_in_an_older_version_is_upcast_before_it_is_folded(database_url: str) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        await pool.execute(
            "CREATE TABLE notes (stream_id text PRIMARY KEY, notes text[] NOT NULL, total int NOT NULL,"
            " last_version int NOT NULL, actor text NOT NULL, case_id uuid)"
        )
        store = EventStore(pool, "test", [Notes()])
        case_id = uuid4()
        context = Context(actor=Actor(kind="user", id="alice", role="lac"))
        await store.append(
            "s-1", 0, [CounterIncremented(by=2), NoteRecorded(text="new")], context, case_id=case_id
        )
        # A version 1 note, as stored before version 2 existed: its envelope is the store's own.
        current = (await store.read_all())[-1]
        old = current.model_copy(
            update={
                "event_id": uuid4(),
                "schema_version": 1,
                "stream_version": 3,
                "source_sequence": 3,
                "data": {"note": "old"},
            }
        )
        await pool.execute(
            "INSERT INTO events (source_sequence, event_id, stream_id, stream_version, case_id, event_type,"
            " schema_version, recorded_at, envelope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            3, old.event_id, "s-1", 3, case_id, old.event_type, 1, old.recorded_at, old.canonical_text(),
        )  # fmt: skip
        rows = await store.read_after(0, 10)
        assert [r.schema_version for r in rows] == [1, 2, 1]

        decoded = decode_stored(rows[2])
        assert isinstance(decoded[0], Envelope)  # the checked path, which upcasts
        assert decoded[1] == NoteRecorded(text="old", author="unknown")
        assert isinstance(decode_stored(rows[1])[0], StoredEvent)

        assert await rebuild(store) == 3
        row = await pool.fetchrow("SELECT * FROM notes")
        assert dict(row) == {
            "stream_id": "s-1",
            "notes": ["new by unknown", "old by unknown"],
            "total": 2,
            "last_version": 3,
            "actor": "alice",
            "case_id": case_id,
        }
    finally:
        await pool.close()


async def test_a_trusted_event_gives_its_other_fields_from_the_checked_envelope(database_url: str) -> None:
    pool = await db.create_pool(database_url)
    try:
        await db.migrate(pool)
        store = EventStore(pool, "test", [])
        context = Context(actor=Actor(kind="partner", id="trust-1"), correlation_id="corr-1")
        await store.append("s-2", 0, [NoteRecorded(text="hello", author="bob")], context, case_id=uuid4())
        (row,) = await store.read_after(0, 10)
        decoded = decode_stored(row)
        assert isinstance(decoded[0], StoredEvent)
        _same(decoded, Envelope.from_bytes(row.envelope))
        assert decoded[0].envelope == Envelope.from_bytes(row.envelope)
    finally:
        await pool.close()
