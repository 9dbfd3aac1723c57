"""The event store: each service's system of record, on PostgreSQL.

Appends are optimistic (an expected stream version) and numbered by a gapless per-service sequence
allocated inside the appending transaction, so the sequence is also commit order and the events table
can serve as the transactional outbox.
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID, uuid4

import asyncpg

from events import Actor, Envelope, EventPayload, canonical_bytes
from infra.db import Connection
from infra.logging import get_logger

NOTIFY_CHANNEL = "leder_events"
log = get_logger(__name__)


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it; nothing was written."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


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
    """A read model kept in the same database, updated in the appending transaction."""

    name: str
    tables: Sequence[str]

    async def apply(self, conn: Connection, envelope: Envelope) -> None: ...


class EventStore:
    def __init__(self, pool: asyncpg.Pool, source: str, projections: Sequence[Projection] = ()) -> None:
        self.pool = pool
        self.source = source
        self.projections = tuple(projections)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

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
    ) -> list[Envelope]:
        """Append `payloads` to `stream_id` if it is at `expected_version` (0: a new stream).

        With `conn` the append joins the caller's transaction (an inbox handler's, say)."""
        if not payloads:
            return []
        if conn is None:
            async with self.transaction() as own:
                return await self._append(
                    own, stream_id, expected_version, payloads, context, case_id, occurred_at
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
        actual = await conn.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        if actual != expected_version:
            raise ConcurrencyError(stream_id, expected_version, actual)
        # From here to commit this transaction holds the sequence row: keep it short.
        last = await conn.fetchval(
            "UPDATE event_sequence SET last_value = last_value + $1 RETURNING last_value", len(payloads)
        )
        recorded_at = datetime.now(UTC)
        first = last - len(payloads) + 1
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
            )
            for i, p in enumerate(payloads)
        ]
        try:
            await conn.execute(
                """
                INSERT INTO events (source_sequence, event_id, stream_id, stream_version, case_id,
                                    event_type, schema_version, recorded_at, envelope)
                SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::int[], $5::uuid[],
                                     $6::text[], $7::int[], $8::timestamptz[], $9::text[])
                """,
                [e.source_sequence for e in envelopes],
                [e.event_id for e in envelopes],
                [e.stream_id for e in envelopes],
                [e.stream_version for e in envelopes],
                [e.case_id for e in envelopes],
                [e.event_type for e in envelopes],
                [e.schema_version for e in envelopes],
                [e.recorded_at for e in envelopes],
                [canonical_bytes(e).decode() for e in envelopes],
            )
        except asyncpg.UniqueViolationError as exc:
            # A concurrent append took the version between our check and our insert.
            raise ConcurrencyError(stream_id, expected_version, expected_version + 1) from exc
        for envelope in envelopes:
            for projection in self.projections:
                await projection.apply(conn, envelope)
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(last))
        log.info(
            "events_appended",
            stream_id=stream_id,
            case_id=str(case_id) if case_id else None,
            count=len(envelopes),
            event_ids=[str(e.event_id) for e in envelopes[:10]],  # a batch's first ten: the store has them all
            event_types=sorted({e.event_type for e in envelopes}),
            through_sequence=last,
        )
        return envelopes

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[Envelope]:
        rows = await self.pool.fetch(
            "SELECT envelope FROM events WHERE stream_id = $1 AND stream_version > $2"
            " ORDER BY stream_version",
            stream_id,
            after_version,
        )
        return [Envelope.from_bytes(r["envelope"]) for r in rows]

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

    async def read_all_raw(
        self, after_sequence: int = 0, limit: int = 1000, conn: Connection | None = None
    ) -> list[tuple[int, str]]:
        """(sequence, canonical envelope) pairs, for the relay, which publishes the bytes untouched."""
        executor = conn or self.pool
        rows = await executor.fetch(
            "SELECT source_sequence, envelope FROM events WHERE source_sequence > $1"
            " ORDER BY source_sequence LIMIT $2",
            after_sequence,
            limit,
        )
        return [(r["source_sequence"], r["envelope"]) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        version: int = await self.pool.fetchval(
            "SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1", stream_id
        )
        return version

    async def last_sequence(self) -> int:
        last: int = await self.pool.fetchval("SELECT coalesce(max(source_sequence), 0) FROM events")
        return last
