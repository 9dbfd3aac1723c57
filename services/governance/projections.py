"""Read models of the governance service: panels, reviews awaiting or through QA, and actions."""

import json
from collections.abc import Sequence

from events import Envelope
from events.governance import (
    ActionAgreed,
    ActionCompleted,
    ActionOverdue,
    ActionProgressUpdated,
    CaseClosed,
    CaseReopened,
    QAPanelScheduled,
    ReviewAddedToPanelAgenda,
    ReviewApprovedByQA,
    ReviewAwaitingQA,
    ReviewReturnedByQA,
)
from infra.db import Connection


class GovernanceProjection:
    name = "governance"
    tables: Sequence[str] = ("qa_panels", "qa_cases", "qa_agenda", "actions")

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        match event:
            case QAPanelScheduled():
                await conn.execute("INSERT INTO qa_panels VALUES ($1, $2)", event.panel_id, event.held_on)
            case ReviewAwaitingQA():
                await conn.execute(
                    "INSERT INTO qa_cases (case_id, status, submitted_on) VALUES ($1, 'awaiting_qa', $2)"
                    " ON CONFLICT (case_id) DO UPDATE SET status = 'awaiting_qa', panel_id = NULL,"
                    " submitted_on = $2",
                    event.case_id,
                    event.submitted_on,
                )
            case ReviewAddedToPanelAgenda():
                await conn.execute(
                    "UPDATE qa_cases SET status = 'on_agenda', panel_id = $2 WHERE case_id = $1",
                    event.case_id,
                    event.panel_id,
                )
                await conn.execute(
                    "INSERT INTO qa_agenda (panel_id, case_id, added_at, submitted_on)"
                    " VALUES ($1, $2, $3, (SELECT submitted_on FROM qa_cases WHERE case_id = $2))"
                    " ON CONFLICT (panel_id, case_id) DO UPDATE SET added_at = $3,"
                    " submitted_on = EXCLUDED.submitted_on, decision = NULL, quality_rating = NULL,"
                    " themes = '{}', comments = NULL, decided_at = NULL, decided_by = NULL",
                    event.panel_id,
                    event.case_id,
                    envelope.occurred_at,
                )
            case ReviewReturnedByQA():
                await conn.execute(
                    "UPDATE qa_cases SET status = 'returned', times_returned = times_returned + 1"
                    " WHERE case_id = $1",
                    event.case_id,
                )
                await conn.execute(
                    "UPDATE qa_agenda SET decision = 'returned', comments = $3, decided_at = $4,"
                    " decided_by = $5 WHERE panel_id = $1 AND case_id = $2",
                    event.panel_id,
                    event.case_id,
                    event.comments,
                    envelope.occurred_at,
                    envelope.actor.id,
                )
            case ReviewApprovedByQA():
                await conn.execute(
                    "UPDATE qa_cases SET quality_rating = $2, themes = $3 WHERE case_id = $1",
                    event.case_id,
                    event.quality_rating,
                    event.themes,
                )
                await conn.execute(
                    "UPDATE qa_agenda SET decision = 'approved', quality_rating = $3, themes = $4,"
                    " decided_at = $5, decided_by = $6 WHERE panel_id = $1 AND case_id = $2",
                    event.panel_id,
                    event.case_id,
                    event.quality_rating,
                    event.themes,
                    envelope.occurred_at,
                    envelope.actor.id,
                )
            case CaseClosed():
                await conn.execute(
                    "UPDATE qa_cases SET status = 'closed', closed_on = $2 WHERE case_id = $1",
                    event.case_id,
                    event.closed_on,
                )
            case CaseReopened():
                await conn.execute(
                    "UPDATE qa_cases SET status = 'reopened', closed_on = NULL WHERE case_id = $1",
                    event.case_id,
                )
            case ActionAgreed():
                await conn.execute(
                    "INSERT INTO actions (action_id, what, organisation, lead, due_on, case_ids, themes,"
                    " status, agreed_on) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8)",
                    event.action_id,
                    event.what,
                    event.organisation,
                    event.lead,
                    event.due_on,
                    event.case_ids,
                    event.themes,
                    event.agreed_on or envelope.occurred_at.date(),
                )
            case ActionProgressUpdated():
                update = json.dumps([{"at": envelope.occurred_at.isoformat(), "update": event.update}])
                await conn.execute(
                    "UPDATE actions SET updates = updates || $2::jsonb WHERE action_id = $1",
                    event.action_id,
                    update,
                )
            case ActionCompleted():
                await conn.execute(
                    "UPDATE actions SET status = 'completed', evidence = $2, completed_on = $3"
                    " WHERE action_id = $1",
                    event.action_id,
                    event.evidence,
                    event.completed_on,
                )
            case ActionOverdue():
                await conn.execute(
                    "UPDATE actions SET flagged_overdue = true WHERE action_id = $1", event.action_id
                )


def projections() -> list[GovernanceProjection]:
    return [GovernanceProjection()]
