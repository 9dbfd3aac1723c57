"""The governance domain: the QA and Oversight Group's decisions on reviews, case closure, and the
Governance Group's actions. Plain Python, no I/O."""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Literal
from uuid import UUID

from events import EventPayload
from events.governance import (
    ActionAgreed,
    ActionCompleted,
    ActionOverdue,
    ActionProgressUpdated,
    CaseClosed,
    CaseRead,
    CaseReopened,
    QAPanelScheduled,
    ReviewAddedToPanelAgenda,
    ReviewApprovedByQA,
    ReviewAwaitingQA,
    ReviewReturnedByQA,
)
from infra.domain import DomainError as DomainError


class ImpossibleDate(DomainError):
    """A date that cannot be true. `field` is the request's field, `code` the rule."""

    status = 422

    def __init__(self, code: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field

    def problem_extras(self) -> dict[str, Any]:
        """The one field refused, as a validation error names it."""
        return {"errors": [{"field": self.field, "type": self.code, "message": self.detail}]}


@dataclass(frozen=True)
class FieldRefusal:
    """One field a command cannot take: the request's field, the rule (`code`) and words saying why."""

    field: str
    code: str
    message: str


class Refused(DomainError):
    """A command refused for one or more of its fields, each named with its rule, all at once. The
    code is the rule's when every refusal breaks the same one, `fields_refused` otherwise."""

    status = 422

    def __init__(self, refusals: Sequence[FieldRefusal]) -> None:
        super().__init__("; ".join(r.message for r in refusals))
        self.refusals = list(refusals)
        codes = {r.code for r in refusals}
        self.code = refusals[0].code if len(codes) == 1 else "fields_refused"

    def problem_extras(self) -> dict[str, Any]:
        """Each field refused, as validation errors name them."""
        return {"errors": [{"field": r.field, "type": r.code, "message": r.message} for r in self.refusals]}


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


def panel_may_decide(held_on: date, today: date) -> bool:
    """A panel's decisions are recorded on or after the day it meets, never before."""
    return today >= held_on


def decide_add_to_agenda(case: CaseQA, panel: QAPanelScheduled) -> list[EventPayload]:
    if case.status in ("returned", "reopened"):
        raise ReviewNotSubmitted(
            f"the review of case {case.case_id} is back with its reviewer ({case.status}): not submitted"
        )
    if case.status != "awaiting_qa":
        raise NotAwaitingQA(f"the review of case {case.case_id} is {case.status}, not awaiting QA")
    return [ReviewAddedToPanelAgenda(case_id=case.case_id, panel_id=panel.panel_id, held_on=panel.held_on)]


# The QA panel rates each review it approves from 1 (lowest quality) to HIGHEST_QUALITY_RATING. Neither
# the national programme nor the ICB's policy framework publishes what the points mean, so their words
# are the ICB's to configure (five labels, 1 first); these are a neutral default.
HIGHEST_QUALITY_RATING = 5
DEFAULT_QUALITY_RATINGS = ("Poor", "Fair", "Good", "Very good", "Excellent")


def quality_rating_labels(configured: str | None) -> tuple[str, ...]:
    """The words of ratings 1..5 (1 first), from the configured comma-separated labels or the default.
    ValueError unless there are exactly five."""
    if not configured or not configured.strip():
        return DEFAULT_QUALITY_RATINGS
    labels = tuple(label.strip() for label in configured.split(",") if label.strip())
    if len(labels) != HIGHEST_QUALITY_RATING:
        raise ValueError(
            f"the quality rating scale needs five labels, 1 first, separated by commas: got {len(labels)}"
        )
    return labels


@dataclass(frozen=True)
class QADecision:
    """The QA panel's decision on a review, as a value: approved with a quality rating (and themes),
    or returned for rework with the panel's comments."""

    panel_id: UUID
    approved: bool
    quality_rating: int | None = None
    themes: tuple[str, ...] = ()
    comments: str | None = None


class IncompleteDecision(DomainError):
    """A decision without what it needs: 422, the code naming what."""

    status = 422

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def check_qa_decision(decision: QADecision) -> None:
    """An approval needs a quality rating; a return for rework needs the panel's comments. Checked
    before the panel or the case is looked up, so such a decision is refused whichever it names."""
    if decision.approved and decision.quality_rating is None:
        raise IncompleteDecision("quality_rating_required", "an approval needs a quality rating")
    if not decision.approved and not decision.comments:
        raise IncompleteDecision("comments_required", "a return for rework needs the panel's comments")


def decide_qa_decision(case: CaseQA, decision: QADecision, today: date) -> list[EventPayload]:
    """The panel's decision as a command (check_qa_decision, then decide_qa)."""
    check_qa_decision(decision)
    return decide_qa(
        case,
        decision.panel_id,
        decision.approved,
        decision.quality_rating,
        list(decision.themes),
        decision.comments,
        today,
    )


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
    if case.panel_held_on is not None and not panel_may_decide(case.panel_held_on, today):
        raise ImpossibleDate(
            "decided_before_panel",
            "panel_id",
            f"the panel meets on {case.panel_held_on}: its decisions cannot be recorded before that day"
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


# What a case reference looks like (the notification service writes them): LDR-<year>-<five digits>.
CASE_REFERENCE = re.compile(r"LDR-\d{4}-\d{5}")
REFERENCE_EXAMPLE = "LDR-2026-00042"


def reference_key(reference: str) -> str:
    """A reference as typed (spaces around it, lower case) in the form the notification service wrote."""
    return reference.strip().upper()


def decide_agree_action(
    *,
    action_id: UUID,
    what: str,
    organisation: str,
    lead: str,
    due_on: date,
    case_ids: Sequence[UUID],
    case_references: Sequence[str],
    known_references: Mapping[str, UUID],
    themes: Sequence[str],
    today: date,
) -> list[EventPayload]:
    """An action agreed today (`today`: the service's clock), due today or later, linked to the cases
    given by id and to those given by reference (`known_references`: each reference the service has
    seen a case opened with, by `reference_key`), each case once. Every refused field at once."""
    refusals = []
    if due_on < today:
        refusals.append(
            FieldRefusal(
                "due_on",
                "date_in_past",
                f"the due date ({due_on}) is in the past: an action is due on or after the day it is"
                f" agreed ({today})",
            )
        )
    linked = list(dict.fromkeys(case_ids))
    for reference in case_references:
        key = reference_key(reference)
        case_id = known_references.get(key)
        if case_id is None:
            looks = (
                "" if CASE_REFERENCE.fullmatch(key) else f": a case reference reads like {REFERENCE_EXAMPLE}"
            )
            refusals.append(
                FieldRefusal(
                    "case_references", "unknown_case_reference", f"no case {reference.strip()}{looks}"
                )
            )
        elif case_id not in linked:
            linked.append(case_id)
    if refusals:
        raise Refused(refusals)
    return [
        ActionAgreed(
            action_id=action_id,
            what=what,
            organisation=organisation,
            lead=lead,
            due_on=due_on,
            case_ids=linked,
            themes=list(themes),
            agreed_on=today,
        )
    ]


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


def decide_action_read(action_id: UUID, case_ids: Sequence[UUID], reader: str, role: str) -> list[CaseRead]:
    """A person read an action (what was agreed, its updates and evidence): a read of each case it was
    agreed for, once each, so that the look is in every such case's access log."""
    return [
        CaseRead(case_id=case_id, reader=reader, role=role, what="action", action_id=action_id)
        for case_id in dict.fromkeys(case_ids)
    ]
