"""The event store in memory: the same contract as the PostgreSQL one (infra.eventstore.EventLog), for
tests of handlers that need a store and nothing else of a database, in milliseconds.

It keeps what PostgreSQL guarantees and callers rely on: optimistic appends by expected version, a
gapless sequence in commit order, transactions whose appends all land or none do, reads inside a
transaction that see its own appends, and the canonical bytes of each envelope. As PostgreSQL holds the
sequence row from a transaction's first append to its commit, a transaction here holds the store's
append lock from its first append to its end, so sequences are handed out in commit order.

Projections are not run: they write to a service's SQL tables, which only PostgreSQL has.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from uuid import UUID, uuid4

from events import Envelope, EventPayload
from infra.clock import Clock, system_clock
from infra.eventstore import ConcurrencyError, Context, EventLog, RecordedEvent, StoreFenced


class MemoryTransaction:
    """Appends made in one transaction: visible to its own reads, to others' only once it ends."""

    def __init__(self, store: "MemoryEventStore") -> None:
        self.store = store
        self.pending: list[RecordedEvent] = []
        self.holds_lock = False


class MemoryEventStore:
    """The in-memory EventLog."""

    def __init__(self, source: str = "test", clock: Clock = system_clock) -> None:
        self.source = source
        self.clock = clock
        self._events: list[RecordedEvent] = []
        self._append_lock = asyncio.Lock()
        # As the PostgreSQL store's (infra.fencing): this store's life, carried in every envelope, and
        # why it may record nothing.
        self.epoch: str | None = str(uuid4())
        self.fenced_because: str | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryTransaction]:
        tx = MemoryTransaction(self)
        try:
            yield tx
        except BaseException:
            tx.pending.clear()  # rolled back: nothing of it was ever visible
            raise
        else:
            self._events.extend(tx.pending)
        finally:
            if tx.holds_lock:
                self._append_lock.release()

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        payloads: Sequence[EventPayload],
        context: Context,
        *,
        case_id: UUID | None = None,
        occurred_at: datetime | None = None,
        conn: MemoryTransaction | None = None,
        savepoint: bool = True,  # an append here is all or nothing either way
    ) -> list[Envelope]:
        if not payloads:
            return []
        if self.fenced_because is not None:
            raise StoreFenced(f"the {self.source} service takes no command now: {self.fenced_because}")
        if conn is None:
            async with self.transaction() as own:
                return await self.append(
                    stream_id,
                    expected_version,
                    payloads,
                    context,
                    case_id=case_id,
                    occurred_at=occurred_at,
                    conn=own,
                )
        await asyncio.sleep(0)  # let other tasks run, so that concurrent commands interleave as on PostgreSQL
        if not conn.holds_lock:
            await self._append_lock.acquire()
            conn.holds_lock = True
        actual = await self.stream_version(stream_id, conn=conn)
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        recorded_at = self.clock()
        first = len(self._events) + len(conn.pending) + 1
        envelopes = [
            Envelope(
                event_id=uuid4(),
                event_type=p.event_type,
                schema_version=p.schema_version,
                stream_id=stream_id,
                case_id=case_id,
                stream_version=expected_version + i + 1,
                source=self.source,
                source_sequence=first + i,
                occurred_at=occurred_at or recorded_at,
                recorded_at=recorded_at,
                actor=context.actor,
                correlation_id=context.correlation_id,
                causation_id=context.causation_id,
                data=p.model_dump(mode="json"),
                store_epoch=self.epoch,
            )
            for i, p in enumerate(payloads)
        ]
        conn.pending.extend(
            RecordedEvent(e.source_sequence, stream_id, e.event_type, e.schema_version, e.canonical_text())
            for e in envelopes
        )
        return envelopes

    def _visible(self, conn: MemoryTransaction | None) -> list[RecordedEvent]:
        return self._events + conn.pending if conn is not None else self._events

    def _in_stream(self, stream_id: str, conn: MemoryTransaction | None) -> list[Envelope]:
        return [Envelope.from_bytes(r.envelope) for r in self._visible(conn) if r.stream_id == stream_id]

    async def read_stream(
        self,
        stream_id: str,
        after_version: int = 0,
        *,
        limit: int | None = None,
        conn: MemoryTransaction | None = None,
    ) -> list[Envelope]:
        await asyncio.sleep(0)  # a read lets other tasks run, as a database round trip does
        found = [e for e in self._in_stream(stream_id, conn) if e.stream_version > after_version]
        return found if limit is None else found[:limit]

    async def stream_version(self, stream_id: str, *, conn: MemoryTransaction | None = None) -> int:
        # Appends to a stream are in version order, so the stream's last event has its version.
        return max((e.stream_version for e in self._in_stream(stream_id, conn)), default=0)

    async def has_case(self, case_id: UUID, *, conn: MemoryTransaction | None = None) -> bool:
        return any(e.case_id == case_id for e in self._envelopes(conn))

    def _envelopes(self, conn: MemoryTransaction | None = None) -> list[Envelope]:
        return [Envelope.from_bytes(r.envelope) for r in self._visible(conn)]

    async def read_case(self, case_id: UUID) -> list[Envelope]:
        return [e for e in self._envelopes() if e.case_id == case_id]

    async def read_all(self, after_sequence: int = 0, limit: int = 1000) -> list[Envelope]:
        return [Envelope.from_bytes(r.envelope) for r in await self.read_after(after_sequence, limit)]

    async def read_after(
        self, position: int, limit: int = 1000, *, conn: MemoryTransaction | None = None
    ) -> list[RecordedEvent]:
        # Sequences are gapless from 1, so the event after `position` is at index `position`.
        return self._visible(conn)[max(position, 0) : max(position, 0) + limit]

    async def read_occurred_before(self, before: datetime) -> list[RecordedEvent]:
        return [
            r for r in self._events if datetime.fromisoformat(json.loads(r.envelope)["occurred_at"]) < before
        ]

    async def last_sequence(self) -> int:
        return len(self._events)

    async def restore(self, conn: MemoryTransaction, recorded: Sequence[str]) -> int:
        """As the PostgreSQL store's: lost events put back byte for byte at their own sequence numbers."""
        if not conn.holds_lock:
            await self._append_lock.acquire()
            conn.holds_lock = True
        last = len(self._events) + len(conn.pending)
        for text in recorded:
            envelope = Envelope.from_bytes(text)
            if envelope.source != self.source:
                raise ValueError(f"event {envelope.event_id} is the {envelope.source} service's")
            if envelope.source_sequence != last + 1:
                raise ValueError(
                    f"event {envelope.event_id} is at sequence {envelope.source_sequence}, the store at"
                    f" {last}: restored events follow on without a gap"
                )
            conn.pending.append(
                RecordedEvent(
                    envelope.source_sequence,
                    envelope.stream_id,
                    envelope.event_type,
                    envelope.schema_version,
                    text,
                )
            )
            last = envelope.source_sequence
        return last


def _implements_the_interface(store: MemoryEventStore) -> EventLog:
    """Never called: mypy checks here that the in-memory store is an EventLog (the PostgreSQL one is
    checked wherever it is passed to a handler that takes an EventLog)."""
    return store
