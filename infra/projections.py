"""Rebuilding read models: replay the service's own event store through its projections.

Projections are updated in the appending transaction (infra.eventstore), so a read model is never
behind its events; a rebuild empties their tables and replays everything, in one transaction, so
readers see either the old or the rebuilt model, never a half-built one.
"""

from collections.abc import Sequence

from events import Envelope
from infra.db import Connection
from infra.eventstore import EventStore, Projection


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
    position = 0
    while True:
        rows = await store.read_after(position, batch, conn=conn)
        if not rows:
            break
        for row in rows:
            envelope = Envelope.from_bytes(row.envelope)
            for projection in projections:
                await projection.apply(conn, envelope)
        position = rows[-1].source_sequence
        replayed += len(rows)
    return replayed
