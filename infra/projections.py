"""Rebuilding read models: replay the service's own event store through its projections.

Projections are updated in the appending transaction (infra.eventstore), so a read model is never
behind its events; a rebuild empties their tables and replays everything, in one transaction, so
readers see either the old or the rebuilt model, never a half-built one.

A rebuild streams the events in pages. A projection that can fold (`Foldable`) builds its rows in
memory, each row once with every event about it applied, and writes them at the end with COPY: a
few round trips for the whole rebuild instead of one or two per event, and no dead versions of rows
updated again and again inside the one transaction. Folding must give exactly the rows the
projection's `apply` gives event by event (tests/integration/test_projection_rebuild.py and
bench/rebuild.py compare them); a projection that cannot fold is replayed event by event. When every
projection folds and names the event types it reads (`event_types`), the events of other types are
not decoded at all: decoding (pydantic) is most of what is left of a rebuild's time.

The events a fold reads come from the service's own store, which checked each of them whole when it
was appended (`Envelope`, its payload class) and never changes them (append-only): a rebuild decodes
them on a trusted path (`decode_stored`), one pass of pydantic's JSON parser straight into the
payload's class, without the envelope's checks of its text and limits, and without the envelope's
`data` as a dict, which no fold reads. An event stored in an older version of its payload, or of a
type the registry does not know, takes the checked path (`Envelope.from_bytes`, upcast on `payload`),
so a fold always sees the current version.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol, runtime_checkable
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, create_model

from events import Actor, Envelope
from events.registry import EventPayload, UnknownEventType, payload_class
from events.text import TEXT_CHECKED
from infra.db import Connection
from infra.eventstore import EventStore, Projection, RecordedEvent


class Recorded(Protocol):
    """What a fold reads of an event besides its payload: its envelope's fields but the data. An
    `Envelope` is one; so is what `decode_stored` gives."""

    @property
    def event_id(self) -> UUID: ...
    @property
    def event_type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def case_id(self) -> UUID | None: ...
    @property
    def stream_version(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def source_sequence(self) -> int: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def causation_id(self) -> str | None: ...
    @property
    def store_epoch(self) -> str | None: ...


Decoded = tuple[Recorded, EventPayload]
Row = dict[str, Any]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)  # as Envelope gives them


class _Stored(BaseModel):
    """An envelope read back from the service's own store, its fields as `Envelope` gives them, with
    none of its checks: each subclass (`_stored_model`) adds `data` as one payload class."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: UUID
    event_type: str
    schema_version: int
    stream_id: str
    case_id: UUID | None
    stream_version: int
    source: str
    source_sequence: int
    occurred_at: Annotated[datetime, AfterValidator(_utc)]
    recorded_at: Annotated[datetime, AfterValidator(_utc)]
    actor: Actor
    correlation_id: str
    causation_id: str | None = None
    store_epoch: str | None = None


_stored_models: dict[type[EventPayload], type[_Stored]] = {}


def _stored_model(payload: type[EventPayload]) -> type[_Stored]:
    model = _stored_models.get(payload)
    if model is None:
        model = _stored_models[payload] = create_model(
            f"Stored{payload.__name__}", __base__=_Stored, data=(payload, ...)
        )
    return model


def decode_stored(row: RecordedEvent) -> Decoded:
    """An event of the service's own store, and its payload in the current version: the trusted path
    for an event stored in the current version of a registered type, else the checked one (upcast)."""
    try:
        payload = payload_class(row.event_type)
    except UnknownEventType:
        payload = None
    if payload is not None and payload.schema_version == row.schema_version:
        stored = _stored_model(payload).model_validate_json(row.envelope, context=TEXT_CHECKED)
        return stored, stored.data  # type: ignore[attr-defined]
    envelope = Envelope.from_bytes(row.envelope)
    return envelope, envelope.payload()


class Fold(Protocol):
    """One rebuild's read model in memory."""

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        """Fold the next page of events, in sequence order. (`conn` for what the projection reads
        that is not its own tables, such as keys.)"""

    async def write(self, conn: Connection) -> None:
        """Write every row, once, into the emptied tables."""


@runtime_checkable
class Foldable(Protocol):
    """A projection that folds. It may also have `event_types: frozenset[str]` (see `reads`): every
    type whose events change its rows."""

    def fold(self) -> Fold: ...


def reads(*payloads: type[EventPayload]) -> frozenset[str]:
    """The event types of `payloads`, for a folding projection's `event_types`."""
    return frozenset(p.event_type for p in payloads)


async def rebuild(
    store: EventStore,
    projections: Sequence[Projection] | None = None,
    batch: int = 5000,
    conn: Connection | None = None,
) -> int:
    """With `conn`, the rebuild joins its transaction (as a savepoint): a check can rebuild into copies
    of the tables and compare them with the live ones in one snapshot, then roll back."""
    projections = store.projections if projections is None else tuple(projections)
    if not projections:
        return 0
    if conn is not None:
        async with conn.transaction():
            return await _replay(store, conn, projections, batch)
    async with store.transaction() as own:
        return await _replay(store, own, projections, batch)


async def _replay(store: EventStore, conn: Connection, projections: Sequence[Projection], batch: int) -> int:
    replayed = 0
    tables = [t for p in projections for t in p.tables]
    await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
    folds = [p.fold() if isinstance(p, Foldable) else None for p in projections]
    declared: list[frozenset[str] | None] = [getattr(p, "event_types", None) for p in projections]
    wanted: frozenset[str] | None = None
    if all(folds) and None not in declared:
        wanted = frozenset(t for types in declared if types is not None for t in types)
    position = 0
    while True:
        rows = await store.read_after(position, batch, conn=conn)
        if not rows:
            break
        needed = rows if wanted is None else [row for row in rows if row.event_type in wanted]
        # Decoded once for every projection that folds; one that does not gets the checked envelopes,
        # as its `apply` gets them when the events are appended (and decodes its own payloads).
        decoded = [decode_stored(row) for row in needed] if any(folds) else []
        envelopes = [Envelope.from_bytes(row.envelope) for row in needed] if not all(folds) else []
        for projection, fold in zip(projections, folds, strict=True):
            if fold is not None:
                await fold.add(conn, decoded)
            else:
                for envelope in envelopes:
                    await projection.apply(conn, envelope)
        position = rows[-1].source_sequence
        replayed += len(rows)
    for fold in folds:
        if fold is not None:
            await fold.write(conn)
    return replayed


async def copy_rows(conn: Connection, table: str, rows: Iterable[Row]) -> None:
    """Rows (dicts with the same columns, in the same order) into `table`, in one COPY."""
    records = iter(rows)
    first = next(records, None)
    if first is None:
        return
    columns = list(first)
    await conn.copy_records_to_table(
        table,
        records=[tuple(first.values()), *(tuple(r[c] for c in columns) for r in records)],
        columns=columns,
    )


def add_missing(current: list[str], new: Iterable[str]) -> list[str]:
    """`current || ARRAY(SELECT r FROM unnest(new) r WHERE r <> ALL(current))`: the new values not
    already there, in their order (a value twice in `new` is added twice, as the SQL does)."""
    return [*current, *(r for r in new if r not in current)]
