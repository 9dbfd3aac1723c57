"""The audit service's reads of its log, and its own events (each also logged, in one transaction)."""

from collections.abc import Iterable
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from events import Envelope, EventPayload
from infra.db import Connection
from infra.eventstore import Context, EventStore
from infra.inbox import FORK_COLUMNS, fork_json
from services.audit import log


async def record(
    store: EventStore, conn: Connection, payload: EventPayload, context: Context, case_id: Any = None
) -> None:
    """An event of the audit service's own: in its event store (and so on leder.audit.events), and in
    the audit log, in the same transaction."""
    [envelope] = await store.append(f"audit-{uuid4()}", 0, [payload], context, case_id=case_id, conn=conn)
    await log.append(conn, envelope.canonical(), envelope)


async def case_entries(executor: Connection | asyncpg.Pool, case_id: UUID) -> list[tuple[int, Envelope]]:
    """A case's entries, from every service, in the order things happened: what its history, its
    replay and its export are made of. With them, the entries linked to it (an action agreed for it,
    and what became of the action: services/audit/links.py)."""
    rows = await executor.fetch(
        "SELECT position, envelope FROM audit_log WHERE position IN ("
        " SELECT position FROM audit_log WHERE case_id = $1"
        " UNION SELECT position FROM audit_case_links WHERE case_id = $1)"
        " ORDER BY occurred_at, position",
        case_id,
    )
    return [(r["position"], Envelope.from_bytes(r["envelope"])) for r in rows]


async def signatures(
    executor: Connection | asyncpg.Pool, positions: Iterable[int]
) -> dict[int, log.EventSignature]:
    """The publishing service's signature each entry arrived with (infra.signing), where it has one."""
    rows = await executor.fetch(
        "SELECT position, event_signature, event_key_id, event_topic FROM audit_log"
        " WHERE position = ANY($1::bigint[]) AND event_signature IS NOT NULL",
        list(positions),
    )
    return {
        r["position"]: log.EventSignature(r["event_signature"], r["event_key_id"], r["event_topic"])
        for r in rows
    }


async def gaps(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """Per source, the ranges of source_sequence missing from the log (a source's sequence is gapless)."""
    rows = await conn.fetch(
        """
        SELECT source, prev + 1 AS first, source_sequence - 1 AS last, logged_at FROM (
            SELECT source, source_sequence, logged_at,
                   coalesce(lag(source_sequence) OVER (PARTITION BY source ORDER BY source_sequence), 0)
                AS prev
            FROM audit_log) s
        WHERE source_sequence > prev + 1 ORDER BY source, first
        """
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["source"], []).append(
            {"first": row["first"], "last": row["last"], "noticed_at": row["logged_at"].isoformat()}
        )
    return out


async def find_case(executor: Connection | asyncpg.Pool, reference: str) -> UUID | None:
    """The case a reference names, from its CaseOpened event."""
    found: UUID | None = await executor.fetchval(
        "SELECT case_id FROM audit_log WHERE event_type = 'notification.CaseOpened'"
        " AND ((envelope::jsonb -> 'data') ->> 'reference') = $1 ORDER BY position LIMIT 1",
        reference,
    )
    return found


async def case_known(executor: Connection | asyncpg.Pool, case_id: UUID) -> bool:
    return bool(await executor.fetchval("SELECT 1 FROM audit_log WHERE case_id = $1 LIMIT 1", case_id))


async def references(executor: Connection | asyncpg.Pool, case_ids: Iterable[UUID]) -> dict[UUID, str]:
    """Each case's reference (cases opened before references existed have none)."""
    rows = await executor.fetch(
        "SELECT case_id, (envelope::jsonb -> 'data') ->> 'reference' AS reference FROM audit_log"
        " WHERE event_type = 'notification.CaseOpened' AND case_id = ANY($1::uuid[])",
        list(set(case_ids)),
    )
    return {r["case_id"]: r["reference"] for r in rows if r["reference"]}


async def names(executor: Connection | asyncpg.Pool, user_ids: Iterable[str]) -> dict[str, str]:
    """The names the log knows people by: a reviewer's, from their registration (the latest wins)."""
    rows = await executor.fetch(
        "SELECT (envelope::jsonb -> 'data') ->> 'user_id' AS user_id, (envelope::jsonb -> 'data') ->> 'name'"
        " AS name FROM audit_log WHERE event_type = 'allocation.ReviewerRegistered'"
        " AND ((envelope::jsonb -> 'data') ->> 'user_id') = ANY($1::text[]) ORDER BY position",
        list(set(user_ids)),
    )
    return {r["user_id"]: r["name"] for r in rows}


async def forks(
    executor: Connection | asyncpg.Pool, open_only: bool = False, limit: int = 1000
) -> list[dict[str, Any]]:
    """The forks met (infra.inbox: by the consumers of the services' topics, by the log's own check of
    each source sequence, by reconciliation), oldest first; `open_only`: those not acknowledged."""
    rows = await executor.fetch(
        f"SELECT {FORK_COLUMNS} FROM inbox_forks WHERE NOT $1 OR cleared_at IS NULL ORDER BY id LIMIT $2",
        open_only,
        limit,
    )
    return [fork_json(r) for r in rows]
