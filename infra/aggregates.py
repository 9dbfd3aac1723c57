"""Load an aggregate from its stream, decide, append: the application service every command is.

A service binds a Repository to its store, its evolve function and what a missing stream means to
it (its own not-found error, or a reason read from its tables); this module knows nothing of any
domain."""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from typing import Generic, TypeVar
from uuid import UUID

from events import EventPayload
from infra.eventstore import ConcurrencyError, Context, EventLog, Transaction

S = TypeVar("S")
RETRIES = 3

Evolve = Callable[[S | None, EventPayload], S | None]
# What a missing stream is to the service: its own error, made from the stream's id, read if need be
# in the transaction that found it missing (allocation tells an unopened case from an unknown one).
NotFound = Callable[[str, Transaction], Exception | Awaitable[Exception]]


class StreamNotFound(Exception):
    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id


def stream_not_found(stream_id: str, _: Transaction) -> Exception:
    return StreamNotFound(stream_id)


class Repository(Generic[S]):
    """One kind of aggregate in one store: its streams loaded through `evolve`, decided on and
    appended to; a stream with no state raises the service's not-found error."""

    def __init__(self, store: EventLog, evolve: Evolve[S], not_found: NotFound = stream_not_found) -> None:
        self.store = store
        self.evolve = evolve
        self.not_found = not_found

    async def find(self, stream_id: str, *, conn: Transaction | None = None) -> tuple[S | None, int]:
        """The stream's state (None if it has none yet) and version, in `conn`'s transaction if given."""
        envelopes = await self.store.read_stream(stream_id, conn=conn)
        state: S | None = None
        for envelope in envelopes:
            state = self.evolve(state, envelope.payload())
        return state, len(envelopes)

    async def load(self, stream_id: str, *, conn: Transaction | None = None) -> tuple[S, int]:
        """The stream's state and version; the service's not-found error if it has no state."""
        if conn is None:
            async with self.store.transaction() as tx:
                return await self.load(stream_id, conn=tx)
        state, version = await self.find(stream_id, conn=conn)
        if state is None:
            raise await self._missing(stream_id, conn)
        return state, version

    async def change(
        self,
        stream_id: str,
        decide: Callable[[S], Sequence[EventPayload]],
        context: Context,
        *,
        case_id: UUID | None = None,
        conn: Transaction | None = None,
    ) -> list[EventPayload]:
        """Decide on the stream's current state and append what was decided, at the version read.

        Another writer between the read and the append (a scheduler's milestone on the case the
        reviewer is writing to, say) makes the append fail and write nothing; the command is then
        decided again on the new state, a few times, since deciding is pure and the rules may now say
        otherwise. Inside a caller's transaction (`conn`) the ConcurrencyError goes to the caller,
        whose retry is its own."""
        for attempt in range(1, RETRIES + 1):
            try:
                async with self.store.transaction() if conn is None else nullcontext(conn) as tx:
                    state, version = await self.load(stream_id, conn=tx)
                    events = list(decide(state))
                    await self.store.append(stream_id, version, events, context, case_id=case_id, conn=tx)
                    return events
            except ConcurrencyError:
                if conn is not None or attempt == RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _missing(self, stream_id: str, conn: Transaction) -> Exception:
        made = self.not_found(stream_id, conn)
        return await made if inspect.isawaitable(made) else made
