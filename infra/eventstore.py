"""The event store: each service's system of record, on PostgreSQL.

Appends are optimistic (an expected stream version) and numbered by a gapless per-service sequence
allocated inside the appending transaction, so the sequence is also commit order and the events table
can serve as the transactional outbox.

The store owns its table: every read and write of `events` is a method here. `EventLog` is the
interface the rest of the code may rely on; `EventStore` is its PostgreSQL implementation and
infra.memory_store.MemoryEventStore its in-memory one (tests/integration/test_event_store.py runs one
contract against both).
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID, uuid4

import asyncpg
from pydantic import ValidationError

from events import Actor, Envelope, EventPayload
from events.text import TEXT_CHECKED
from infra.clock import Clock, system_clock
from infra.db import CONNECTION_LOST, Connection
from infra.domain import DomainError
from infra.logging import get_logger

NOTIFY_CHANNEL = "leder_events"
_SEQUENCE_PLACEHOLDER = '"source_sequence":1,'

log = get_logger(__name__)

# One round trip: check each stream's version ($11, $12: distinct streams), allocate the sequence
# (taking its lock only if every version is right), insert, and wake the relay at commit. One stream's
# events, or many streams' at once (a batch of intakes, each its own stream).
_APPEND_STREAMS = """
WITH expected AS (
    SELECT * FROM unnest($11::text[], $12::int[]) AS x(stream_id, version)
), current AS (
    SELECT x.stream_id, x.version,
           coalesce((SELECT max(e.stream_version) FROM events e WHERE e.stream_id = x.stream_id), 0) AS actual
    FROM expected x
), allocated AS (
    UPDATE event_sequence SET last_value = last_value + $1
    WHERE NOT EXISTS (SELECT 1 FROM current WHERE version <> actual)
    RETURNING last_value - $1 AS base
), inserted AS (
    INSERT INTO events (source_sequence, event_id, stream_id, stream_version, case_id,
                        event_type, schema_version, recorded_at, envelope)
    SELECT a.base + d.n, d.event_id, d.stream_id, d.stream_version, d.case_id, d.event_type,
           d.schema_version, d.recorded_at, d.head || (a.base + d.n)::text || d.tail
    FROM allocated a, unnest($2::uuid[], $3::text[], $4::int[], $5::uuid[], $6::text[],
                             $7::int[], $8::timestamptz[], $9::text[], $10::text[])
         WITH ORDINALITY AS d(event_id, stream_id, stream_version, case_id, event_type,
                              schema_version, recorded_at, head, tail, n)
    RETURNING 1
), notified AS (
    SELECT pg_notify($13, x.stream_id) FROM allocated, expected x
)
SELECT (SELECT base + 1 FROM allocated) AS first,
       (SELECT array_agg(stream_id) FROM current WHERE version <> actual) AS moved,
       (SELECT array_agg(actual) FROM current WHERE version <> actual) AS actual,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM notified) AS notified, txid_current() AS txid
"""

# The same for one event (scalar parameters cost less to send and to execute than arrays).
_APPEND_ONE = """
WITH current AS (
    SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $2
), allocated AS (
    UPDATE event_sequence SET last_value = last_value + 1
    WHERE (SELECT version FROM current) = $10::int
    RETURNING last_value AS sequence
), inserted AS (
    INSERT INTO events (source_sequence, event_id, stream_id, stream_version, case_id,
                        event_type, schema_version, recorded_at, envelope)
    SELECT a.sequence, $1::uuid, $2::text, $3::int, $4::uuid, $5::text, $6::int, $7::timestamptz,
           $8::text || a.sequence::text || $9::text
    FROM allocated a
    RETURNING 1
), notified AS (
    SELECT pg_notify($11, $2) FROM allocated
)
SELECT (SELECT sequence FROM allocated) AS first, (SELECT version FROM current) AS version,
       (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(*) FROM notified) AS notified, txid_current() AS txid
"""


def _drafted(fields: dict[str, Any]) -> tuple[Envelope, str]:
    """An envelope to record, validated as `Envelope(**fields)` validates it, and its canonical text.

    The walk over every string for text a database cannot store (events.text) is done on the text
    instead, where a NUL can only be the escape \\u0000 and a lone surrogate fails to encode: one
    search in C rather than a walk in Python. Should the text hold either (or the faster validation
    refuse anything), the full validation runs and refuses the envelope exactly as it always did."""
    try:
        draft = Envelope.model_validate(fields, context=TEXT_CHECKED)
    except ValidationError:
        draft = Envelope.model_validate(fields)
    try:
        text = draft.canonical_text()
    except (TypeError, ValueError):
        # No canonical form (a float, say): the full validation first, as before, for its refusal.
        Envelope.model_validate(fields)
        raise
    if "\\u0000" in text or not (text.isascii() or _encodes(text)):
        draft = Envelope.model_validate(fields)
    return draft, text


def _split(texts: Sequence[str]) -> list[tuple[str, str]]:
    """Each draft's text cut around its placeholder sequence number: what goes before the real one
    and what after (the insert statement writes it in between)."""
    cuts = [t.rindex(_SEQUENCE_PLACEHOLDER) + len('"source_sequence":') for t in texts]
    return [(t[:c], t[c + 1 :]) for t, c in zip(texts, cuts, strict=True)]


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StoreFenced(DomainError, ConnectionError):
    """The store may record nothing: restored from a backup and not yet recovered, or not yet compared
    with its topic (infra.fencing). A DomainError, so the HTTP edge answers 503 problem details saying
    why; a ConnectionError too, so that a consumer takes it as transient and tries the message again
    later instead of setting it aside."""

    code = "store_fenced"
    status = 503


@dataclass(frozen=True)
class Context:
    """Who and what caused a command: carried into every event it records."""

    actor: Actor
    correlation_id: str = field(default_factory=lambda: str(uuid4()))
    causation_id: str | None = None

    @classmethod
    def caused_by(cls, envelope: Envelope, actor: Actor) -> "Context":
        """For events a consumer records in reaction to another service's event: same correlation,
        caused by that event."""
        return cls(actor=actor, correlation_id=envelope.correlation_id, causation_id=str(envelope.event_id))


class Projection(Protocol):
    """A read model kept in the same database, updated in the appending transaction. It sees each
    event before the event's source_sequence is allocated (that happens last, to keep the sequence
    lock short), so a projection must not use source_sequence."""

    name: str
    tables: Sequence[str]

    async def apply(self, conn: Connection, envelope: Envelope) -> None: ...


@dataclass(frozen=True)
class StreamAppend:
    """One stream's part of `EventStore.append_streams`: as `append`'s arguments."""

    stream_id: str
    expected_version: int
    payloads: Sequence[EventPayload]
    context: Context
    case_id: UUID | None = None


class RecordedEvent(NamedTuple):
    """An event as stored: its envelope's canonical text, untouched (the relay publishes these bytes),
    and the columns a reader needs without parsing it."""

    source_sequence: int
    stream_id: str
    event_type: str
    schema_version: int
    envelope: str


# A backend's transaction: an asyncpg connection for PostgreSQL, the memory store's own handle for the
# in-memory store. Callers only pass back what `transaction()` gave them.
Transaction = Any


class EventLog(Protocol):
    """What the rest of the code may ask of an event store, whatever keeps the events.

    `conn`: a transaction from `transaction()`; a read with it sees that transaction's appends, an
    append with it commits or rolls back with the transaction. Without it, each call is its own."""

    source: str
    clock: Clock

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        payloads: Sequence[EventPayload],
        context: Context,
        *,
        case_id: UUID | None = None,
        occurred_at: datetime | None = None,
        conn: Transaction | None = None,
        savepoint: bool = True,
    ) -> list[Envelope]: ...

    async def read_stream(
        self,
        stream_id: str,
        after_version: int = 0,
        *,
        limit: int | None = None,
        conn: Transaction | None = None,
    ) -> list[Envelope]: ...

    async def stream_version(self, stream_id: str, *, conn: Transaction | None = None) -> int: ...

    async def has_case(self, case_id: UUID, *, conn: Transaction | None = None) -> bool: ...

    async def read_case(self, case_id: UUID) -> list[Envelope]: ...

    async def read_all(self, after_sequence: int = 0, limit: int = 1000) -> list[Envelope]: ...

    async def read_after(
        self, position: int, limit: int = 1000, *, conn: Transaction | None = None
    ) -> list[RecordedEvent]: ...

    async def read_occurred_before(self, before: datetime) -> list[RecordedEvent]: ...

    async def last_sequence(self) -> int: ...


class EventStore:
    """The PostgreSQL EventLog."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        source: str,
        projections: Sequence[Projection] = (),
        clock: Clock = system_clock,
    ) -> None:
        self.pool = pool
        self.source = source
        self.projections = tuple(projections)
        self.clock = clock
        # Which life of this store records events (infra.fencing: a restore begins another); carried
        # in every envelope it records. None until the service has read its identity.
        self.epoch: str | None = None
        # Why the store may record nothing (restored from a backup, not yet recovered), or None.
        self.fenced_because: str | None = None
        # The ids of the database transactions that appended in each open transaction(), by connection.
        self._txids: dict[int, list[int]] = {}

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A transaction whose appends are never reported lost when they were not: should the
        connection drop after COMMIT was sent (a database restart, a failover), the store asks the
        database whether the transaction committed before it lets the error go to the caller."""
        async with self.pool.acquire() as conn:
            txids: list[int] = []
            self._txids[id(conn)] = txids
            try:
                async with conn.transaction():
                    yield conn
            except CONNECTION_LOST as exc:
                if not txids or not await self._committed(txids[-1]):
                    raise
                log.warning("commit_confirmed_after_connection_lost", txid=txids[-1], error=repr(exc))
            finally:
                del self._txids[id(conn)]

    async def _committed(self, txid: int, *, wait: float = 5.0) -> bool:
        """Whether transaction `txid` committed, asked on a new connection once the database answers
        again (txid_status is PostgreSQL's answer to exactly this question). False if it did not, or if
        the database cannot say within `wait` seconds: then the caller hears the outcome is unknown."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            try:
                async with self.pool.acquire() as conn:
                    status = await conn.fetchval("SELECT txid_status($1)", txid)
                if status != "in progress":  # its backend may not have noticed the lost client yet
                    return bool(status == "committed")
            except CONNECTION_LOST:
                pass
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        payloads: Sequence[EventPayload],
        context: Context,
        *,
        case_id: UUID | None = None,
        occurred_at: datetime | None = None,
        conn: Connection | None = None,
        savepoint: bool = True,
    ) -> list[Envelope]:
        """Append `payloads` to `stream_id` if it is at `expected_version` (0: a new stream).

        With `conn` the append joins the caller's transaction (an inbox handler's, say), at a savepoint
        of its own: should it fail, what it wrote is undone and the caller's transaction goes on.
        `savepoint=False` spares the savepoint's two round trips where the caller's transaction is all
        or nothing (an inbox batch): a failed append may leave the projections' writes in it, so the
        caller must roll it back, as it does on any error."""
        if not payloads:
            return []
        if self.fenced_because is not None:
            raise StoreFenced(f"the {self.source} service takes no command now: {self.fenced_because}")
        if conn is None and not self.projections:
            # One statement is atomic by itself: no BEGIN and COMMIT round trips.
            async with self.pool.acquire() as own:
                return await self._append(
                    own, stream_id, expected_version, payloads, context, case_id, occurred_at
                )
        if conn is None:
            async with self.transaction() as own:
                return await self._append(
                    own, stream_id, expected_version, payloads, context, case_id, occurred_at
                )
        if not savepoint and conn.is_in_transaction():
            return await self._append(
                conn, stream_id, expected_version, payloads, context, case_id, occurred_at
            )
        async with conn.transaction():
            return await self._append(
                conn, stream_id, expected_version, payloads, context, case_id, occurred_at
            )

    async def _append(
        self,
        conn: Connection,
        stream_id: str,
        expected_version: int,
        payloads: Sequence[EventPayload],
        context: Context,
        case_id: UUID | None,
        occurred_at: datetime | None,
    ) -> list[Envelope]:
        recorded_at = self.clock()
        part = StreamAppend(stream_id, expected_version, payloads, context, case_id)
        drafts, texts = self._drafts(part, occurred_at, recorded_at)
        for draft in drafts:
            for projection in self.projections:
                await projection.apply(conn, draft)
        if len(drafts) > 1:
            first = await self._insert(conn, [part], drafts, texts)
        else:
            # Most commands record one event.
            (draft,), ((head, tail),) = drafts, _split(texts)
            try:
                row = await conn.fetchrow(
                    _APPEND_ONE,
                    draft.event_id,
                    stream_id,
                    draft.stream_version,
                    case_id,
                    draft.event_type,
                    draft.schema_version,
                    recorded_at,
                    head,
                    tail,
                    expected_version,
                    NOTIFY_CHANNEL,
                )
            except asyncpg.UniqueViolationError as exc:
                # A concurrent append took the version between our check and our insert.
                raise ConcurrencyError(stream_id, expected_version, expected_version + 1) from exc
            assert row is not None
            if row["first"] is None:
                raise ConcurrencyError(stream_id, expected_version, row["version"])
            first = row["first"]
            if (txids := self._txids.get(id(conn))) is not None:
                txids.append(row["txid"])
        envelopes = [d.model_copy(update={"source_sequence": first + i}) for i, d in enumerate(drafts)]
        last = first + len(envelopes) - 1
        log.info(
            "events_appended",
            stream_id=stream_id,
            case_id=str(case_id) if case_id else None,
            count=len(envelopes),
            event_ids=[
                str(e.event_id) for e in envelopes[:10]
            ],  # a batch's first ten: the store has them all
            event_types=sorted({e.event_type for e in envelopes}),
            through_sequence=last,
        )
        return envelopes

    def _drafts(
        self, part: StreamAppend, occurred_at: datetime | None, recorded_at: datetime
    ) -> tuple[list[Envelope], list[str]]:
        """The envelopes (and their canonical texts) of one stream's payloads, with a placeholder
        sequence of 1: the sequence is allocated last, in the one statement that inserts (from there to
        commit the transaction holds the sequence row, so nothing else may happen in between), which
        writes the real one into their text."""
        drafts: list[Envelope] = []
        texts: list[str] = []
        for i, p in enumerate(part.payloads):
            draft, text = _drafted(
                {
                    "event_id": uuid4(),
                    "event_type": p.event_type,
                    "schema_version": p.schema_version,
                    "stream_id": part.stream_id,
                    "case_id": part.case_id,
                    "stream_version": part.expected_version + i + 1,
                    "source": self.source,
                    "source_sequence": 1,
                    "occurred_at": occurred_at or recorded_at,
                    "recorded_at": recorded_at,
                    "actor": part.context.actor,
                    "correlation_id": part.context.correlation_id,
                    "causation_id": part.context.causation_id,
                    "data": p.model_dump(mode="json"),
                    "store_epoch": self.epoch,
                }
            )
            drafts.append(draft)
            texts.append(text)
        return drafts, texts

    async def append_streams(
        self, parts: Sequence[StreamAppend], *, occurred_at: datetime | None = None, conn: Connection
    ) -> list[Envelope]:
        """`append` of each part, to as many distinct streams, in `conn`'s transaction (all or nothing,
        as `append(savepoint=False)`: the caller rolls it back on any error): each projection applies
        them all (in one go where it has `apply_many`), then one statement checks every stream's
        version and inserts every event, where appending them one by one takes a round trip a stream
        and one or more a projection. Appends nothing and raises ConcurrencyError, naming a stream not
        at its expected version, if any is not."""
        if len({p.stream_id for p in parts}) < len(parts):
            raise ValueError("append_streams: each stream at most once")
        if self.fenced_because is not None:
            raise StoreFenced(f"the {self.source} service takes no command now: {self.fenced_because}")
        recorded_at = self.clock()
        drafts: list[Envelope] = []
        texts: list[str] = []
        for part in parts:
            made, text = self._drafts(part, occurred_at, recorded_at)
            drafts += made
            texts += text
        if not drafts:
            return []
        for projection in self.projections:
            many = getattr(projection, "apply_many", None)
            if many is not None:
                await many(conn, drafts)
            else:
                for draft in drafts:
                    await projection.apply(conn, draft)
        first = await self._insert(conn, parts, drafts, texts)
        envelopes = [d.model_copy(update={"source_sequence": first + i}) for i, d in enumerate(drafts)]
        log.info(
            "events_appended",
            streams=len(parts),
            count=len(envelopes),
            event_ids=[str(e.event_id) for e in envelopes[:10]],  # the first ten: the store has them all
            event_types=sorted({e.event_type for e in envelopes}),
            through_sequence=first + len(envelopes) - 1,
        )
        return envelopes

    async def _insert(
        self,
        conn: Connection,
        parts: Sequence[StreamAppend],
        drafts: Sequence[Envelope],
        texts: Sequence[str],
    ) -> int:
        """`_APPEND_STREAMS` of the parts' drafts (and their texts): the sequence of the first. Raises
        ConcurrencyError, naming a stream not at its expected version, if any is not."""
        heads, tails = zip(*_split(texts), strict=True)
        try:
            row = await conn.fetchrow(
                _APPEND_STREAMS,
                len(drafts),
                [e.event_id for e in drafts],
                [e.stream_id for e in drafts],
                [e.stream_version for e in drafts],
                [e.case_id for e in drafts],
                [e.event_type for e in drafts],
                [e.schema_version for e in drafts],
                [e.recorded_at for e in drafts],
                list(heads),
                list(tails),
                [p.stream_id for p in parts],
                [p.expected_version for p in parts],
                NOTIFY_CHANNEL,
            )
        except asyncpg.UniqueViolationError as exc:
            # A concurrent append took a version between our check and our insert.
            part = parts[0]
            raise ConcurrencyError(part.stream_id, part.expected_version, part.expected_version + 1) from exc
        assert row is not None
        if row["first"] is None:
            moved = row["moved"][0]
            expected = next(p.expected_version for p in parts if p.stream_id == moved)
            raise ConcurrencyError(moved, expected, row["actual"][0])
        if (txids := self._txids.get(id(conn))) is not None:
            txids.append(row["txid"])
        first: int = row["first"]
        return first

    async def read_stream(
        self,
        stream_id: str,
        after_version: int = 0,
        *,
        limit: int | None = None,
        conn: Connection | None = None,
    ) -> list[Envelope]:
        """The stream's events after `after_version`, in order (the first `limit` of them)."""
        rows = await (conn or self.pool).fetch(
            "SELECT envelope FROM events WHERE stream_id = $1 AND stream_version > $2"
            " ORDER BY stream_version LIMIT $3",
            stream_id,
            after_version,
            limit,
        )
        return [Envelope.from_bytes(r["envelope"]) for r in rows]

    async def stream_version(self, stream_id: str, *, conn: Connection | None = None) -> int:
        """The stream's last version: 0 for a stream with no events."""
        version: int = await (conn or self.pool).fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return version

    async def has_case(self, case_id: UUID, *, conn: Connection | None = None) -> bool:
        """Whether this service recorded any event about the case, in whichever stream."""
        return bool(
            await (conn or self.pool).fetchval(
                "SELECT EXISTS (SELECT 1 FROM events WHERE case_id = $1)", case_id
            )
        )

    async def read_case(self, case_id: UUID) -> list[Envelope]:
        """Every event this service recorded about a case, whichever stream it is in."""
        rows = await self.pool.fetch(
            "SELECT envelope FROM events WHERE case_id = $1 ORDER BY source_sequence", case_id
        )
        return [Envelope.from_bytes(r["envelope"]) for r in rows]

    async def read_all(self, after_sequence: int = 0, limit: int = 1000) -> list[Envelope]:
        rows = await self.pool.fetch(
            "SELECT envelope FROM events WHERE source_sequence > $1 ORDER BY source_sequence LIMIT $2",
            after_sequence,
            limit,
        )
        return [Envelope.from_bytes(r["envelope"]) for r in rows]

    async def read_after(
        self, position: int, limit: int = 1000, *, conn: Connection | None = None
    ) -> list[RecordedEvent]:
        """The events after sequence `position`, in sequence order, as stored: for the relay, which
        publishes the bytes untouched, and for rebuilding projections."""
        rows = await (conn or self.pool).fetch(
            "SELECT source_sequence, stream_id, event_type, schema_version, envelope"
            " FROM events WHERE source_sequence > $1 ORDER BY source_sequence LIMIT $2",
            position,
            limit,
        )
        return [RecordedEvent(*r) for r in rows]

    async def read_all_raw(
        self, after_sequence: int = 0, limit: int = 1000, conn: Connection | None = None
    ) -> list[tuple[int, str]]:
        """(sequence, canonical envelope) pairs."""
        return [
            (r.source_sequence, r.envelope) for r in await self.read_after(after_sequence, limit, conn=conn)
        ]

    async def read_occurred_before(self, before: datetime) -> list[RecordedEvent]:
        """Every event that occurred before `before` (its envelope's occurred_at, not when it was
        recorded), in sequence order: for reports of any past period."""
        rows = await self.pool.fetch(
            "SELECT source_sequence, stream_id, event_type, schema_version, envelope FROM events"
            " WHERE (envelope::jsonb->>'occurred_at')::timestamptz < $1 ORDER BY source_sequence",
            before,
        )
        return [RecordedEvent(*r) for r in rows]

    async def last_sequence(self, *, conn: Connection | None = None) -> int:
        last: int = await (conn or self.pool).fetchval("SELECT coalesce(max(source_sequence), 0) FROM events")
        return last

    async def read_types_after(
        self, conn: Connection, position: int, through: int, types: Sequence[str], limit: int
    ) -> list[RecordedEvent]:
        """The events of `types` after sequence `position` and up to `through`, in sequence order (the
        first `limit`): for a rebuild whose projections read only those types (infra.projections),
        the others never leave the database."""
        rows = await conn.fetch(
            "SELECT source_sequence, stream_id, event_type, schema_version, envelope FROM events"
            " WHERE source_sequence > $1 AND source_sequence <= $2 AND event_type = any($3::text[])"
            " ORDER BY source_sequence LIMIT $4",
            position,
            through,
            list(types),
            limit,
        )
        return [RecordedEvent(*r) for r in rows]

    async def restore(self, conn: Connection, recorded: Sequence[str]) -> int:
        """Put back events this store recorded once and lost (a restore from a backup), byte for byte
        as they were published, at their own sequence numbers and stream versions, applying the
        projections as an append does (leder.recovery). They must follow on from the store's last
        sequence without a gap, in order. Bypasses the fence: this is how a fenced store is brought
        back. Returns the store's last sequence after them."""
        last: int = await conn.fetchval("SELECT last_value FROM event_sequence FOR UPDATE")
        for text in recorded:
            envelope = Envelope.from_bytes(text)
            if envelope.source != self.source:
                raise ValueError(
                    f"event {envelope.event_id} is the {envelope.source} service's, not {self.source}'s"
                )
            if envelope.source_sequence != last + 1:
                raise ValueError(
                    f"event {envelope.event_id} is at sequence {envelope.source_sequence}, the store at"
                    f" {last}: restored events follow on without a gap"
                )
            for projection in self.projections:
                await projection.apply(conn, envelope)
            await conn.execute(
                "INSERT INTO events (source_sequence, event_id, stream_id, stream_version, case_id,"
                " event_type, schema_version, recorded_at, envelope)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                envelope.source_sequence,
                envelope.event_id,
                envelope.stream_id,
                envelope.stream_version,
                envelope.case_id,
                envelope.event_type,
                envelope.schema_version,
                envelope.recorded_at,
                text,
            )
            last = envelope.source_sequence
        await conn.execute("UPDATE event_sequence SET last_value = $1", last)
        return last
