"""What the governance service's commands read besides their streams: the service's own tables (the
cases it has seen opened, by reference; the actions read model).

The handlers take them as a Tables, PostgreSQL's in the service, so that a test can run the handlers
on the in-memory event store with tables of its own."""

from collections.abc import Sequence
from datetime import date
from typing import Protocol
from uuid import UUID

from asyncpg import Pool

from infra.db import Connection
from infra.eventstore import EventLog, EventStore
from services.governance import domain


class Tables(Protocol):
    async def cases_by_reference(self, store: EventLog, references: Sequence[str]) -> dict[str, UUID]:
        """The cases the service has seen opened (notification.CaseOpened) under these references, by
        `domain.reference_key`; a reference it has not seen is not in the answer."""
        ...

    async def actions_due(self, store: EventLog, today: date) -> list[UUID]:
        """The open actions past their due date and not yet flagged overdue."""
        ...


async def cases_by_reference(db: Connection | Pool, references: Sequence[str]) -> dict[str, UUID]:
    wanted = sorted({domain.reference_key(r) for r in references})
    if not wanted:
        return {}
    rows = await db.fetch(
        "SELECT data->>'reference' AS reference, case_id FROM observed_events"
        " WHERE event_type = 'notification.CaseOpened' AND case_id IS NOT NULL"
        " AND data->>'reference' = ANY($1::text[]) ORDER BY occurred_at",
        wanted,
    )
    return {row["reference"]: row["case_id"] for row in rows}


class PostgresTables:
    """The service's tables in PostgreSQL, next to its event store (the service's own database)."""

    async def cases_by_reference(self, store: EventLog, references: Sequence[str]) -> dict[str, UUID]:
        return await cases_by_reference(_pool(store), references)

    async def actions_due(self, store: EventLog, today: date) -> list[UUID]:
        rows = await _pool(store).fetch(
            "SELECT action_id FROM actions WHERE status = 'open' AND NOT flagged_overdue AND due_on < $1",
            today,
        )
        return [row["action_id"] for row in rows]


def _pool(store: EventLog) -> Pool:
    # The tables live in the database of the PostgreSQL store: only that store has them.
    assert isinstance(store, EventStore), "PostgreSQL's tables are read beside PostgreSQL's store"
    return store.pool


POSTGRES: Tables = PostgresTables()
