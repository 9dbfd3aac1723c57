"""Entries linked to cases they do not carry as their case id: an action agreed for cases (on its own
`action-…` stream) and everything that happens to it belong to each case the ActionAgreed names. The
links are an index beside the log (migration 004); the log's entries never change."""

from uuid import UUID

from events import Envelope
from infra.db import Connection

ACTION_EVENTS = frozenset(
    {
        "governance.ActionAgreed",
        "governance.ActionProgressUpdated",
        "governance.ActionCompleted",
        "governance.ActionOverdue",
    }
)


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


async def link(conn: Connection, position: int, envelope: Envelope) -> None:
    """Index the entry at `position` under each case its action names. A stream's events are logged
    in order, so an action's ActionAgreed (which names its cases) comes before the rest of it."""
    if envelope.event_type not in ACTION_EVENTS:
        return
    action_id = _uuid(envelope.data.get("action_id"))
    if action_id is None:
        return
    if envelope.event_type == "governance.ActionAgreed":
        named = envelope.data.get("case_ids")
        case_ids = {c for c in map(_uuid, named if isinstance(named, list) else []) if c}
        await conn.executemany(
            "INSERT INTO audit_action_cases (action_id, case_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            [(action_id, case_id) for case_id in sorted(case_ids)],
        )
    await conn.execute(
        "INSERT INTO audit_case_links (case_id, position)"
        " SELECT case_id, $2 FROM audit_action_cases WHERE action_id = $1 ON CONFLICT DO NOTHING",
        action_id,
        position,
    )
