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


class ImpossibleDate(DomainError):
    """A date that cannot be true. `field` is the request's field, `code` the rule."""

    status = 422

    def __init__(self, code: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field


class NotAwaitingQA(DomainError):
    code = "review_not_awaiting_qa"


class ReviewNotSubmitted(NotAwaitingQA):
    """Back with the reviewer (returned for rework, or the case reopened), or never submitted."""

    code = "review_not_submitted"


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
    # The date of the panel whose agenda the review is on (None in agenda events from before it was
    # recorded).
    panel_held_on: date | None = None


def evolve_case(state: CaseQA | None, event: EventPayload) -> CaseQA | None:
    match event:
        case ReviewAwaitingQA():
            return CaseQA(event.case_id, "awaiting_qa")
        case ReviewAddedToPanelAgenda() if state is not None:
            return replace(state, status="on_agenda", panel_id=event.panel_id, panel_held_on=event.held_on)
        case ReviewReturnedByQA() if state is not None:
            return replace(state, status="returned")
        case CaseClosed() if state is not None:
            return replace(state, status="closed")
        case CaseReopened() if state is not None:
            return replace(state, status="reopened")
    return state  # ReviewApprovedByQA: the CaseClosed that follows it closes the case


def decide_add_to_agenda(case: CaseQA, panel: QAPanelScheduled) -> list[EventPayload]:
    if case.status in ("returned", "reopened"):
        raise ReviewNotSubmitted(
            f"the review of case {case.case_id} is back with its reviewer ({case.status}): not submitted"
        )
    if case.status != "awaiting_qa":
        raise NotAwaitingQA(f"the review of case {case.case_id} is {case.status}, not awaiting QA")
    return [ReviewAddedToPanelAgenda(case_id=case.case_id, panel_id=panel.panel_id, held_on=panel.held_on)]


def decide_qa(
    case: CaseQA,
    panel_id: UUID,
    approved: bool,
    rating: int | None,
    themes: list[str],
    comments: str | None,
    today: date,
) -> list[EventPayload]:
    """The panel's decision, made today: not before the panel meets (`today`: the service's clock)."""
    if case.status != "on_agenda" or case.panel_id != panel_id:
        raise NotOnThisPanel(f"the review of case {case.case_id} is not on the agenda of panel {panel_id}")
    if case.panel_held_on is not None and today < case.panel_held_on:
        raise ImpossibleDate(
            "decided_before_panel",
            "panel_id",
            f"panel_id: the panel meets on {case.panel_held_on}; its decision cannot be made before"
            f" (today is {today})",
        )
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
    agreed_on: date | None = None  # None in events from before it was recorded


def evolve_action(state: Action | None, event: EventPayload) -> Action | None:
    match event:
        case ActionAgreed():
            return Action(event.action_id, event.due_on, agreed_on=event.agreed_on)
        case ActionCompleted() if state is not None:
            return replace(state, completed=True)
        case ActionOverdue() if state is not None:
            return replace(state, flagged_overdue=True)
    return state


def decide_progress(action: Action, update: str) -> list[EventPayload]:
    if action.completed:
        raise ActionAlreadyCompleted(f"action {action.action_id} is completed")
    return [ActionProgressUpdated(action_id=action.action_id, update=update)]


def decide_completion(
    action: Action, evidence: str, today: date, completed_on: date | None = None
) -> list[EventPayload]:
    """Completed on `completed_on` (today if not given): not after today (`today`: the service's
    clock), not before the action was agreed."""
    if action.completed:
        raise ActionAlreadyCompleted(f"action {action.action_id} is completed")
    on = completed_on or today
    if on > today:
        raise ImpossibleDate("date_in_future", "completed_on", f"completed_on: {on} is after today ({today})")
    if action.agreed_on is not None and on < action.agreed_on:
        raise ImpossibleDate(
            "completed_before_agreed",
            "completed_on",
            f"completed_on: an action cannot be completed ({on}) before it was agreed ({action.agreed_on})",
        )
    return [ActionCompleted(action_id=action.action_id, evidence=evidence, completed_on=on)]


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
