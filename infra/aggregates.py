"""Load an aggregate from its stream, decide, append: the application service every command is.

Services pass their own evolve and decide; this module knows nothing of any domain."""

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import TypeVar
from uuid import UUID

from events import EventPayload
from infra.eventstore import ConcurrencyError, Context, EventLog, Transaction

S = TypeVar("S")
RETRIES = 3


class StreamNotFound(Exception):
    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id


async def load(
    store: EventLog,
    stream_id: str,
    evolve: Callable[[S | None, EventPayload], S | None],
    *,
    conn: Transaction | None = None,
) -> tuple[S | None, int]:
    """The stream's state and version, read in `conn`'s transaction if given."""
    envelopes = await store.read_stream(stream_id, conn=conn)
    state: S | None = None
    for envelope in envelopes:
        state = evolve(state, envelope.payload())
    return state, len(envelopes)


async def change(
    store: EventLog,
    stream_id: str,
    evolve: Callable[[S | None, EventPayload], S | None],
    decide: Callable[[S], Sequence[EventPayload]],
    context: Context,
    *,
    case_id: UUID | None = None,
    conn: Transaction | None = None,
) -> list[EventPayload]:
    """Decide on the stream's current state and append what was decided, at the version read.

    Another writer between the read and the append (a scheduler's milestone on the case the reviewer
    is writing to, say) makes the append fail and write nothing; the command is then decided again on
    the new state, a few times, since deciding is pure and the rules may now say otherwise. Inside a
    caller's transaction (`conn`) the ConcurrencyError goes to the caller, whose retry is its own."""
    for attempt in range(1, RETRIES + 1):
        try:
            async with store.transaction() if conn is None else nullcontext(conn) as tx:
                state, version = await load(store, stream_id, evolve, conn=tx)
                if state is None:
                    raise StreamNotFound(stream_id)
                events = list(decide(state))
                await store.append(stream_id, version, events, context, case_id=case_id, conn=tx)
                return events
        except ConcurrencyError:
            if conn is not None or attempt == RETRIES:
                raise
    raise AssertionError("unreachable")
