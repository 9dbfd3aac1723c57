"""Read models of the governance service: panels, reviews awaiting or through QA, and actions."""

import json
from collections.abc import Sequence
from uuid import UUID

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
from infra.projections import Decoded, Recorded, Row, copy_rows, reads


class GovernanceProjection:
    name = "governance"
    tables: Sequence[str] = ("qa_panels", "qa_cases", "qa_agenda", "actions")
    event_types = reads(
        QAPanelScheduled, ReviewAwaitingQA, ReviewAddedToPanelAgenda, ReviewReturnedByQA, ReviewApprovedByQA,
        CaseClosed, CaseReopened, ActionAgreed, ActionProgressUpdated, ActionCompleted, ActionOverdue,
    )  # fmt: skip

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

    def fold(self) -> "GovernanceFold":
        return GovernanceFold()


class GovernanceFold:
    """The same rows as `GovernanceProjection.apply`, built in memory for a rebuild (infra.projections)."""

    def __init__(self) -> None:
        self.panels: dict[UUID, Row] = {}
        self.cases: dict[UUID, Row] = {}
        self.agenda: dict[tuple[UUID, UUID], Row] = {}
        self.actions: dict[UUID, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for envelope, event in events:
            self._apply(envelope, event)

    async def write(self, conn: Connection) -> None:
        await copy_rows(conn, "qa_panels", self.panels.values())
        await copy_rows(conn, "qa_cases", self.cases.values())
        await copy_rows(conn, "qa_agenda", self.agenda.values())
        await copy_rows(
            conn, "actions", ({**a, "updates": json.dumps(a["updates"])} for a in self.actions.values())
        )

    def _apply(self, envelope: Recorded, event: object) -> None:
        at = envelope.occurred_at
        case: Row | None
        match event:
            case QAPanelScheduled():
                if event.panel_id in self.panels:
                    raise ValueError(f"qa_panels: {event.panel_id} scheduled twice")
                self.panels[event.panel_id] = {"panel_id": event.panel_id, "held_on": event.held_on}
            case ReviewAwaitingQA():
                case = self.cases.setdefault(
                    event.case_id,
                    {
                        "case_id": event.case_id,
                        "status": "awaiting_qa",
                        "panel_id": None,
                        "submitted_on": None,
                        "quality_rating": None,
                        "themes": [],
                        "closed_on": None,
                        "times_returned": 0,
                    },
                )
                case.update(status="awaiting_qa", panel_id=None, submitted_on=event.submitted_on)
            case ReviewAddedToPanelAgenda():
                case = self.cases.get(event.case_id)
                if case is not None:
                    case.update(status="on_agenda", panel_id=event.panel_id)
                # Added again, the case's place on the agenda starts afresh.
                self.agenda[(event.panel_id, event.case_id)] = {
                    "panel_id": event.panel_id,
                    "case_id": event.case_id,
                    "added_at": at,
                    "submitted_on": None if case is None else case["submitted_on"],
                    "decision": None,
                    "quality_rating": None,
                    "themes": [],
                    "comments": None,
                    "decided_at": None,
                    "decided_by": None,
                }
            case ReviewReturnedByQA():
                case = self.cases.get(event.case_id)
                if case is not None:
                    case["status"] = "returned"
                    case["times_returned"] += 1
                item = self.agenda.get((event.panel_id, event.case_id))
                if item is not None:
                    item.update(
                        decision="returned",
                        comments=event.comments,
                        decided_at=at,
                        decided_by=envelope.actor.id,
                    )
            case ReviewApprovedByQA():
                case = self.cases.get(event.case_id)
                if case is not None:
                    case.update(quality_rating=event.quality_rating, themes=list(event.themes))
                item = self.agenda.get((event.panel_id, event.case_id))
                if item is not None:
                    item.update(
                        decision="approved",
                        quality_rating=event.quality_rating,
                        themes=list(event.themes),
                        decided_at=at,
                        decided_by=envelope.actor.id,
                    )
            case CaseClosed():
                case = self.cases.get(event.case_id)
                if case is not None:
                    case.update(status="closed", closed_on=event.closed_on)
            case CaseReopened():
                case = self.cases.get(event.case_id)
                if case is not None:
                    case.update(status="reopened", closed_on=None)
            case ActionAgreed():
                if event.action_id in self.actions:
                    raise ValueError(f"actions: {event.action_id} agreed twice")
                self.actions[event.action_id] = {
                    "action_id": event.action_id,
                    "what": event.what,
                    "organisation": event.organisation,
                    "lead": event.lead,
                    "due_on": event.due_on,
                    "case_ids": list(event.case_ids),
                    "themes": list(event.themes),
                    "status": "open",
                    "flagged_overdue": False,
                    "updates": [],
                    "evidence": None,
                    "completed_on": None,
                    "agreed_on": event.agreed_on or at.date(),
                }
            case ActionProgressUpdated():
                action = self.actions.get(event.action_id)
                if action is not None:
                    action["updates"].append({"at": at.isoformat(), "update": event.update})
            case ActionCompleted():
                action = self.actions.get(event.action_id)
                if action is not None:
                    action.update(
                        status="completed", evidence=event.evidence, completed_on=event.completed_on
                    )
            case ActionOverdue():
                action = self.actions.get(event.action_id)
                if action is not None:
                    action["flagged_overdue"] = True


def projections() -> list[GovernanceProjection]:
    return [GovernanceProjection()]
