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
"""

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from events import Envelope
from events.registry import EventPayload
from infra.db import Connection
from infra.eventstore import EventStore, Projection

Decoded = tuple[Envelope, EventPayload]
Row = dict[str, Any]


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
        envelopes = [Envelope.from_bytes(row.envelope) for row in needed]
        # Decoded once for every projection that folds (each `apply` decodes its own).
        decoded = [(e, e.payload()) for e in envelopes] if any(folds) else []
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
