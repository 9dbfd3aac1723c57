"""The governance domain: the QA and Oversight Group's decisions on reviews, case closure, and the
Governance Group's actions. Plain Python, no I/O."""

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal
from uuid import UUID

from events import EventPayload
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


class DomainError(Exception):
    code = "rule_broken"
    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAwaitingQA(DomainError):
    code = "review_not_awaiting_qa"


class NotOnThisPanel(DomainError):
    code = "review_not_on_panel_agenda"


class CaseNotClosed(DomainError):
    code = "case_not_closed"


class ActionAlreadyCompleted(DomainError):
    code = "action_completed"


QAStatus = Literal["awaiting_qa", "on_agenda", "returned", "closed", "reopened"]


@dataclass(frozen=True)
class CaseQA:
    case_id: UUID
    status: QAStatus
    panel_id: UUID | None = None


def evolve_case(state: CaseQA | None, event: EventPayload) -> CaseQA | None:
    match event:
        case ReviewAwaitingQA():
            return CaseQA(event.case_id, "awaiting_qa")
        case ReviewAddedToPanelAgenda() if state is not None:
            return replace(state, status="on_agenda", panel_id=event.panel_id)
        case ReviewReturnedByQA() if state is not None:
            return replace(state, status="returned")
        case CaseClosed() if state is not None:
            return replace(state, status="closed")
        case CaseReopened() if state is not None:
            return replace(state, status="reopened")
    return state  # ReviewApprovedByQA: the CaseClosed that follows it closes the case


def decide_add_to_agenda(case: CaseQA, panel: QAPanelScheduled) -> list[EventPayload]:
    if case.status != "awaiting_qa":
        raise NotAwaitingQA(f"the review of case {case.case_id} is {case.status}, not awaiting QA")
    return [ReviewAddedToPanelAgenda(case_id=case.case_id, panel_id=panel.panel_id)]


def decide_qa(
    case: CaseQA,
    panel_id: UUID,
    approved: bool,
    rating: int | None,
    themes: list[str],
    comments: str | None,
    today: date,
) -> list[EventPayload]:
    if case.status != "on_agenda" or case.panel_id != panel_id:
        raise NotOnThisPanel(f"the review of case {case.case_id} is not on the agenda of panel {panel_id}")
    if approved:
        assert rating is not None
        return [
            ReviewApprovedByQA(case_id=case.case_id, panel_id=panel_id, quality_rating=rating, themes=themes),
            CaseClosed(case_id=case.case_id, closed_on=today),
        ]
    return [ReviewReturnedByQA(case_id=case.case_id, panel_id=panel_id, comments=comments or "")]


def decide_reopen(case: CaseQA, reason: str) -> list[EventPayload]:
    if case.status != "closed":
        raise CaseNotClosed(f"case {case.case_id} is {case.status}, not closed")
    return [CaseReopened(case_id=case.case_id, reason=reason)]


def decide_resubmission(case: CaseQA | None, case_id: UUID, submitted_on: date) -> list[EventPayload]:
    """A review submitted (again) waits for a panel, unless it already does."""
    if case is not None and case.status in ("awaiting_qa", "on_agenda"):
        return []
    return [ReviewAwaitingQA(case_id=case_id, submitted_on=submitted_on)]


@dataclass(frozen=True)
class Action:
    action_id: UUID
    due_on: date
    completed: bool = False
    flagged_overdue: bool = False


def evolve_action(state: Action | None, event: EventPayload) -> Action | None:
    match event:
        case ActionAgreed():
            return Action(event.action_id, event.due_on)
        case ActionCompleted() if state is not None:
            return replace(state, completed=True)
        case ActionOverdue() if state is not None:
            return replace(state, flagged_overdue=True)
    return state


def decide_progress(action: Action, update: str) -> list[EventPayload]:
    if action.completed:
        raise ActionAlreadyCompleted(f"action {action.action_id} is completed")
    return [ActionProgressUpdated(action_id=action.action_id, update=update)]


def decide_completion(action: Action, evidence: str, today: date) -> list[EventPayload]:
    if action.completed:
        raise ActionAlreadyCompleted(f"action {action.action_id} is completed")
    return [ActionCompleted(action_id=action.action_id, evidence=evidence, completed_on=today)]


# An open action whose due date is this close (or closer) is flagged "due soon" on every page.
DUE_SOON_DAYS = 14

ActionStatus = Literal["open", "overdue", "completed"]
DueFlag = Literal["overdue", "due_soon"]


def action_status(completed: bool, due_on: date, today: date) -> ActionStatus:
    """Overdue once the due date has passed (as `decide_overdue`), until completed."""
    if completed:
        return "completed"
    return "overdue" if today > due_on else "open"


def due_flag(completed: bool, due_on: date, today: date) -> DueFlag | None:
    """What a page flags beside an action: overdue, due within DUE_SOON_DAYS days, or nothing."""
    if completed:
        return None
    if today > due_on:
        return "overdue"
    return "due_soon" if due_on - today <= timedelta(days=DUE_SOON_DAYS) else None


def decide_overdue(action: Action, today: date) -> list[EventPayload]:
    """Once the due date has passed, once only, and never for a completed action."""
    if action.completed or action.flagged_overdue or today <= action.due_on:
        return []
    return [ActionOverdue(action_id=action.action_id, due_on=action.due_on)]
