"""Load an aggregate from its stream, decide, append: the application service every command is.

Services pass their own evolve and decide; this module knows nothing of any domain."""

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TypeVar
from uuid import UUID

from events import Envelope, EventPayload
from infra.db import Connection
from infra.eventstore import Context, EventStore

S = TypeVar("S")


class StreamNotFound(Exception):
    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id


async def load(
    conn: Connection, stream_id: str, evolve: Callable[[S | None, EventPayload], S | None]
) -> tuple[S | None, int]:
    rows = await conn.fetch(
        "SELECT envelope FROM events WHERE stream_id = $1 ORDER BY stream_version", stream_id
    )
    state: S | None = None
    for row in rows:
        state = evolve(state, Envelope.from_bytes(row["envelope"]).payload())
    return state, len(rows)


async def change(
    store: EventStore,
    stream_id: str,
    evolve: Callable[[S | None, EventPayload], S | None],
    decide: Callable[[S], Sequence[EventPayload]],
    context: Context,
    *,
    case_id: UUID | None = None,
    conn: Connection | None = None,
) -> list[EventPayload]:
    """Decide on the stream's current state and append what was decided, at the version read (a
    concurrent change raises ConcurrencyError and writes nothing)."""
    async with store.transaction() if conn is None else nullcontext(conn) as tx:
        state, version = await load(tx, stream_id, evolve)
        if state is None:
            raise StreamNotFound(stream_id)
        events = list(decide(state))
        await store.append(stream_id, version, events, context, case_id=case_id, conn=tx)
        return events
