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
not decoded at all (nor read), and the next page is read while this one is decoded: decoding
(pydantic) is most of what is left of a rebuild's time.

The events a fold reads come from the service's own store, which checked each of them whole when it
was appended (`Envelope`, its payload class) and never changes them (append-only): a rebuild decodes
them on a trusted path (`Decoder`), one pass of pydantic's JSON parser straight into the payload's
class and the envelope's time, which every fold reads (`StoredEvent`; the others are parsed if asked for),
without the envelope's checks of its text and limits, and without its `data` as a dict, which no fold
reads. An event stored in an older version of its payload, or of a type the registry does not know,
takes the checked path (`Envelope.from_bytes`, upcast by `payload`), so a fold always sees the
current version. While it runs, the cycle collector is paused (`_no_cycle_collection`).
"""

import asyncio
import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import SchemaValidator, core_schema, to_json

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


# What every fold reads of a stored envelope (when it occurred, as text: see StoredEvent.occurred_at),
# parsed with its payload in one pass of pydantic's JSON parser (`_head_validator` adds `data`).
_HEAD = {"occurred_at": core_schema.typed_dict_field(core_schema.str_schema())}
# What a few folds read (the governance's, the actor), parsed from the envelope again the first time
# one is asked for: the actor's validator is a call into Python, most of a small event's time.
_MORE = SchemaValidator(
    core_schema.typed_dict_schema(
        {
            "stream_id": core_schema.typed_dict_field(core_schema.str_schema()),
            "stream_version": core_schema.typed_dict_field(core_schema.int_schema()),
            "actor": core_schema.typed_dict_field(Actor.__pydantic_core_schema__),
        },
        extra_behavior="ignore",
    )
)


class StoredEvent:
    """An event read back from the service's own store on the trusted path: a `Recorded` whose time
    was parsed with its payload, whose stream, version and actor are parsed together the first time
    one of them is asked for, and whose other fields are the checked envelope's, parsed the first time
    one is asked for (no fold of this project asks)."""

    __slots__ = ("_envelope", "_head", "_more", "_raw")

    def __init__(self, head: dict[str, Any], raw: str) -> None:
        self._head = head
        self._raw = raw
        self._more: dict[str, Any] | None = None
        self._envelope: Envelope | None = None

    @property
    def occurred_at(self) -> datetime:
        # Parsed here from its text, not in pydantic's pass by an after-validator: the validator's call
        # back into Python took longer than parsing (every fold reads the time of every event). In UTC,
        # as Envelope gives it.
        at = datetime.fromisoformat(self._head["occurred_at"])
        return at if at.tzinfo is UTC else at.astimezone(UTC)

    @property
    def stream_id(self) -> str:
        return self._more_of_head()["stream_id"]  # type: ignore[no-any-return]

    @property
    def stream_version(self) -> int:
        return self._more_of_head()["stream_version"]  # type: ignore[no-any-return]

    @property
    def actor(self) -> Actor:
        return self._more_of_head()["actor"]  # type: ignore[no-any-return]

    def _more_of_head(self) -> dict[str, Any]:
        if self._more is None:
            self._more = _MORE.validate_json(self._raw, context=TEXT_CHECKED)  # checked when stored
        return self._more

    @property
    def event_id(self) -> UUID:
        return self.envelope.event_id

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    @property
    def schema_version(self) -> int:
        return self.envelope.schema_version

    @property
    def case_id(self) -> UUID | None:
        return self.envelope.case_id

    @property
    def source(self) -> str:
        return self.envelope.source

    @property
    def source_sequence(self) -> int:
        return self.envelope.source_sequence

    @property
    def recorded_at(self) -> datetime:
        return self.envelope.recorded_at

    @property
    def correlation_id(self) -> str:
        return self.envelope.correlation_id

    @property
    def causation_id(self) -> str | None:
        return self.envelope.causation_id

    @property
    def store_epoch(self) -> str | None:
        return self.envelope.store_epoch

    @property
    def envelope(self) -> Envelope:
        """The whole envelope, checked."""
        if self._envelope is None:
            self._envelope = Envelope.from_bytes(self._raw)
        return self._envelope


def _head_validator(event_type: str, schema_version: int) -> Callable[..., dict[str, Any]] | None:
    """The trusted path's parser for events of `event_type` stored in `schema_version`: None for a
    type the registry does not know, or an older version (to upcast). A validator of pydantic's core
    over the payload class's own schema: made in well under a millisecond, where a model class for
    each type would take tens (most of a small store's rebuild)."""
    try:
        payload = payload_class(event_type)
    except UnknownEventType:
        return None
    if payload.schema_version != schema_version:
        return None
    schema = core_schema.typed_dict_schema(
        {**_HEAD, "data": core_schema.typed_dict_field(payload.__pydantic_core_schema__)},
        extra_behavior="ignore",
    )
    validate: Callable[..., dict[str, Any]] = SchemaValidator(schema).validate_json
    return validate


class Decoder:
    """Decodes the events of the service's own store for its folds, each with its payload in the
    current version: on the trusted path an event stored in the current version of a registered type,
    else on the checked one (`Envelope.from_bytes`, upcast by `payload`). One per rebuild: it keeps
    each type's parser."""

    def __init__(self) -> None:
        self._validators: dict[tuple[str, int], Callable[..., dict[str, Any]] | None] = {}

    def __call__(self, event_type: str, schema_version: int, raw: str) -> Decoded:
        key = (event_type, schema_version)
        try:
            validator = self._validators[key]
        except KeyError:
            validator = self._validators[key] = _head_validator(event_type, schema_version)
        if validator is None:
            envelope = Envelope.from_bytes(raw)
            return envelope, envelope.payload()
        head = validator(raw, context=TEXT_CHECKED)  # the actor's text was checked when stored
        return StoredEvent(head, raw), head["data"]


def decode_stored(row: RecordedEvent) -> Decoded:
    """One stored event as a rebuild's folds get it (see `Decoder`)."""
    return Decoder()(row.event_type, row.schema_version, row.envelope)


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
    batch: int = 10_000,
    conn: Connection | None = None,
) -> int:
    """With `conn`, the rebuild joins its transaction (as a savepoint): a check can rebuild into copies
    of the tables and compare them with the live ones in one snapshot, then roll back. `batch` events
    a page: each page costs its folds a few statements and calls to the key manager (the notification
    service's: its people's keys, their index values), fewer with larger pages, which take more memory."""
    projections = store.projections if projections is None else tuple(projections)
    if not projections:
        return 0
    with _no_cycle_collection():
        if conn is not None:
            async with conn.transaction():
                return await _replay(store, conn, projections, batch)
        async with store.transaction() as own:
            return await _replay(store, own, projections, batch)


_rebuilding = 0  # rebuilds running in this process (the event loop's tasks)
_collecting = True  # whether the cycle collector ran when the first of them began


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cycle collector paused while rebuilds run: a rebuild makes hundreds of thousands of objects
    (payloads, rows) that live until it ends, which the collector would walk again and again, about
    as long as the rebuild itself takes otherwise; none of them needs it (the pages are freed by their
    reference counts). Paused for the process, so only for as long as a rebuild runs."""
    global _rebuilding, _collecting
    if _rebuilding == 0:
        _collecting = gc.isenabled()
        gc.disable()
    _rebuilding += 1
    try:
        yield
    finally:
        _rebuilding -= 1
        if _rebuilding == 0 and _collecting:
            gc.enable()


async def _replay(store: EventStore, conn: Connection, projections: Sequence[Projection], batch: int) -> int:
    tables = [t for p in projections for t in p.tables]
    await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables))
    folds = [p.fold() if isinstance(p, Foldable) else None for p in projections]
    declared: list[frozenset[str] | None] = [getattr(p, "event_types", None) for p in projections]
    decode = Decoder()
    if all(folds) and None not in declared:
        wanted = sorted({t for types in declared if types is not None for t in types})
        return await _fold_wanted(store, conn, [f for f in folds if f is not None], wanted, decode, batch)
    replayed = 0
    position = 0
    while True:
        rows = await store.read_after(position, batch, conn=conn)
        if not rows:
            break
        # Decoded once for every projection that folds; one that does not gets the checked envelopes,
        # as its `apply` gets them when the events are appended (and decodes its own payloads).
        decoded = [decode(r.event_type, r.schema_version, r.envelope) for r in rows] if any(folds) else []
        envelopes = [Envelope.from_bytes(row.envelope) for row in rows] if not all(folds) else []
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


async def _fold_wanted(
    store: EventStore, conn: Connection, folds: Sequence[Fold], wanted: list[str], decode: Decoder, batch: int
) -> int:
    """Every projection folds and names the types it reads: only events of those types are read, in
    pages, up to the last event stored when the rebuild began (a later one that changes a projection
    waits for the rebuild's commit, its tables being locked by the TRUNCATE). Returns how many events
    the store holds up to there (its sequence is gapless from 1), all replayed: those of other types
    change nothing."""
    last = await store.last_sequence(conn=conn)
    rows = await store.read_types_after(conn, 0, last, wanted, batch) if last else []
    while rows:
        following = None
        if len(rows) == batch and rows[-1].source_sequence < last:  # a shorter page is the last
            # The server reads the next page while this one is decoded (most of a page's Python time,
            # longer than the server takes): the read overlaps the decoding instead of waiting for it.
            # The folds get the connection back before they run, as they may read through it.
            following = asyncio.ensure_future(
                store.read_types_after(conn, rows[-1].source_sequence, last, wanted, batch)
            )
            await asyncio.sleep(0)  # the next page's query sent
        try:
            decoded = [decode(r.event_type, r.schema_version, r.envelope) for r in rows]
        finally:  # even if decoding failed: the connection must be free to roll back
            rows = await following if following is not None else []
        for fold in folds:
            await fold.add(conn, decoded)
    for fold in folds:
        await fold.write(conn)
    return last


async def copy_rows(conn: Connection, table: str, rows: Iterable[Row]) -> None:
    """Rows (dicts with the same columns, in the same order) into `table`, in one COPY."""
    records = iter(rows)
    first = next(records, None)
    if first is None:
        return
    columns = list(first)
    values = itemgetter(*columns) if len(columns) > 1 else lambda r: (r[columns[0]],)
    await conn.copy_records_to_table(
        table, records=[tuple(first.values()), *map(values, records)], columns=columns
    )


async def copy_records(
    conn: Connection, table: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """Records (tuples of `columns`, in their order) into `table`, in one COPY: for a fold that builds
    its rows' tuples itself, without a dictionary each."""
    if records:
        await conn.copy_records_to_table(table, records=records, columns=list(columns))


def fields_parser(model: type[BaseModel], *names: str) -> Callable[[str | bytes], dict[str, Any]]:
    """A JSON parser of the fields `names` of `model` only, each parsed as the model parses it (its own
    schema and config), the others skipped unvalidated: for a fold that reads a few fields of a large
    model it trusts, such as sealed values it unseals, whose authentication tag proves they are the
    bytes of a valid model that were sealed."""
    schema: Any = model.__pydantic_core_schema__
    definitions = schema["definitions"] if schema["type"] == "definitions" else None
    inner = schema["schema"] if definitions is not None else schema
    fields = inner["schema"]["fields"]
    config = {k: v for k, v in inner.get("config", {}).items() if k != "extra_fields_behavior"}
    parsed = core_schema.typed_dict_schema(
        {
            name: core_schema.typed_dict_field(
                fields[name]["schema"], validation_alias=fields[name].get("validation_alias")
            )
            for name in names
        },
        extra_behavior="ignore",
        config=config,  # type: ignore[arg-type]
    )
    whole = parsed if definitions is None else core_schema.definitions_schema(parsed, definitions)
    parse: Callable[[str | bytes], dict[str, Any]] = SchemaValidator(whole).validate_json
    return parse


def json_text(value: Any) -> str:
    """`value` as JSON text for a jsonb column, by pydantic's serializer (a fifth of json.dumps's time):
    jsonb keeps the value, not the text (its spacing, its keys' order), so the row is the same."""
    return to_json(value).decode()


def add_missing(current: list[str], new: Iterable[str]) -> list[str]:
    """`current || ARRAY(SELECT r FROM unnest(new) r WHERE r <> ALL(current))`: the new values not
    already there, in their order (a value twice in `new` is added twice, as the SQL does)."""
    return [*current, *(r for r in new if r not in current)]
