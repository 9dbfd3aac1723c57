"""The review domain: the reviewer's structured work on a case, its minimum, pauses and the clock.

Plain Python, no I/O: evolve folds events into a Review; the decide functions check who may write
and what the rules allow, and return events or raise a DomainError naming the rule."""

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal
from uuid import UUID

from events import EventPayload
from events.calendar import add_months
from events.notification import FocusedReason
from events.review import (
    CareJudged,
    ContactRecorded,
    LapseInCareRecorded,
    NoteAdded,
    PauseReason,
    PenPortraitWritten,
    RecordsReceived,
    ReviewCompleted,
    ReviewDeadlineApproaching,
    ReviewEscalatedToFocused,
    ReviewHandedOver,
    ReviewOverdue,
    ReviewPaused,
    ReviewResumed,
    ReviewReturnedForRework,
    ReviewStarted,
    ReviewSubmittedForQA,
)

Status = Literal["in_progress", "paused", "submitted", "completed"]


class DomainError(Exception):
    code = "rule_broken"
    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotTheAllocatedReviewer(DomainError):
    code = "not_allocated_reviewer"
    status = 403


class ReviewIsPaused(DomainError):
    code = "review_paused"


class ReviewNotEditable(DomainError):
    code = "review_not_editable"


class NotPaused(DomainError):
    code = "review_not_paused"


class ReviewIncomplete(DomainError):
    code = "review_incomplete"
    status = 422

    def __init__(self, missing: list[str]) -> None:
        super().__init__("the review cannot be submitted yet: missing " + ", ".join(missing))
        self.missing = missing


@dataclass(frozen=True)
class Review:
    case_id: UUID
    status: Status
    review_type: str
    focused_reasons: tuple[FocusedReason, ...]
    reviewer_user_id: str
    senior_reviewer_user_id: str
    notified_on: date
    deadline: date
    contacts: tuple[ContactRecorded, ...] = ()
    record_sources: frozenset[str] = frozenset()
    pen_portrait: bool = False
    care_judgements: int = 0
    pauses: tuple[tuple[date, date | None], ...] = ()
    milestones: frozenset[str] = frozenset()

    def paused_days(self, today: date) -> int:
        return sum(((end or today) - start).days for start, end in self.pauses)

    def deadline_excluding_pauses(self, today: date) -> date:
        return self.deadline + timedelta(days=self.paused_days(today))


def evolve(state: Review | None, event: EventPayload) -> Review | None:
    if isinstance(event, ReviewStarted):
        return Review(
            event.case_id,
            "in_progress",
            event.review_type,
            tuple(event.focused_reasons),
            event.reviewer_user_id,
            event.senior_reviewer_user_id,
            event.notified_on,
            event.deadline,
        )
    if state is None:
        return None
    match event:
        case ReviewHandedOver():
            return replace(
                state,
                reviewer_user_id=event.reviewer_user_id,
                senior_reviewer_user_id=event.senior_reviewer_user_id,
            )
        case ContactRecorded():
            return replace(state, contacts=(*state.contacts, event))
        case RecordsReceived():
            return replace(state, record_sources=state.record_sources | {event.source.casefold()})
        case PenPortraitWritten():
            return replace(state, pen_portrait=True)
        case CareJudged():
            return replace(state, care_judgements=state.care_judgements + 1)
        case ReviewEscalatedToFocused():
            reasons = state.focused_reasons + tuple(
                r for r in event.reasons if r not in state.focused_reasons
            )
            return replace(state, review_type="focused", focused_reasons=reasons)
        case ReviewPaused():
            return replace(state, status="paused", pauses=(*state.pauses, (event.paused_on, None)))
        case ReviewResumed():
            start, _ = state.pauses[-1]
            return replace(
                state, status="in_progress", pauses=(*state.pauses[:-1], (start, event.resumed_on))
            )
        case ReviewSubmittedForQA():
            return replace(state, status="submitted")
        case ReviewReturnedForRework():
            return replace(state, status="in_progress")
        case ReviewCompleted():
            return replace(state, status="completed")
        case ReviewDeadlineApproaching():
            return replace(state, milestones=state.milestones | {f"{event.months}_months"})
        case ReviewOverdue():
            return replace(state, milestones=state.milestones | {"overdue"})
    return state


def authorise_write(review: Review, user_id: str, notes_only: bool = False) -> None:
    """Only the allocated reviewer writes; a paused review takes notes only; a submitted or completed
    review takes nothing until the panel returns it."""
    if user_id != review.reviewer_user_id:
        raise NotTheAllocatedReviewer(f"case {review.case_id} is not allocated to {user_id}")
    if review.status == "paused" and not notes_only:
        raise ReviewIsPaused(f"the review of case {review.case_id} is paused: only notes can be added")
    if review.status in ("submitted", "completed") and not notes_only:
        raise ReviewNotEditable(f"the review of case {review.case_id} is {review.status}")


def decide_record(review: Review, user_id: str, payload: EventPayload) -> list[EventPayload]:
    """Record one piece of the review; a lapse in care in an initial review escalates it."""
    authorise_write(review, user_id, notes_only=isinstance(payload, NoteAdded))
    events = [payload]
    if isinstance(payload, LapseInCareRecorded) and review.review_type == "initial":
        events.append(
            ReviewEscalatedToFocused(
                case_id=review.case_id,
                reasons=["lapse_in_care"],
                detail=f"lapse in care: {payload.what}"[:500],
            )
        )
    return events


def decide_escalation_for_learning(
    review: Review, user_id: str, role: str, detail: str
) -> list[EventPayload]:
    if role != "lac":
        authorise_write(review, user_id)
    if review.review_type == "focused" and "learning" in review.focused_reasons:
        return []
    return [ReviewEscalatedToFocused(case_id=review.case_id, reasons=["learning"], detail=detail)]


def decide_pause(review: Review, user_id: str, reason: PauseReason, today: date) -> list[EventPayload]:
    authorise_write(review, user_id)
    return [ReviewPaused(case_id=review.case_id, reason=reason, paused_on=today)]


def decide_resume(review: Review, user_id: str, today: date) -> list[EventPayload]:
    if user_id != review.reviewer_user_id:
        raise NotTheAllocatedReviewer(f"case {review.case_id} is not allocated to {user_id}")
    if review.status != "paused":
        raise NotPaused(f"the review of case {review.case_id} is not paused")
    return [ReviewResumed(case_id=review.case_id, resumed_on=today)]


def missing_for_submission(review: Review) -> list[str]:
    """Everything the national minimum (and, for a focused review, more) still lacks."""

    def done(party: str, statuses: tuple[str, ...] = ("completed",)) -> list[ContactRecorded]:
        return [c for c in review.contacts if c.party == party and c.status in statuses]

    missing = []
    family_wanted = not done("family", ("not_wanted",))
    if family_wanted and not done("family", ("offered", "declined", "completed")):
        missing.append("family_or_carer_contact")
    if not done("gp") and not done("gp_records"):
        missing.append("gp_contact_or_gp_records")
    professionals = done("professional")
    if not professionals:
        missing.append("other_professional_contact")
    if not review.pen_portrait:
        missing.append("pen_portrait")
    if not review.care_judgements:
        missing.append("quality_of_care_judgement")
    if review.review_type == "focused":
        if len({(p.organisation or "").casefold() for p in professionals if p.organisation}) < 2:
            missing.append("multi_agency_contacts")
        if len(review.record_sources) < 2:
            missing.append("records_from_two_sources")
    return missing


def decide_submission(review: Review, user_id: str, today: date) -> list[EventPayload]:
    authorise_write(review, user_id)
    missing = missing_for_submission(review)
    if missing:
        raise ReviewIncomplete(missing)
    return [ReviewSubmittedForQA(case_id=review.case_id, submitted_on=today)]


def decide_qa_outcome(review: Review, approved: bool, comments: str, today: date) -> list[EventPayload]:
    if review.status != "submitted":
        raise ReviewNotEditable(f"the review of case {review.case_id} is {review.status}, not awaiting QA")
    if approved:
        return [ReviewCompleted(case_id=review.case_id, completed_on=today)]
    return [ReviewReturnedForRework(case_id=review.case_id, comments=comments)]


def decide_deadline_events(review: Review, today: date) -> list[EventPayload]:
    """At 4 and 5 months from notification the deadline approaches; at 6 the review is overdue.
    Once each: a milestone already recorded is not recorded again."""
    if review.status == "completed":
        return []
    events: list[EventPayload] = []
    for months in (4, 5):
        if f"{months}_months" not in review.milestones and today >= add_months(review.notified_on, months):
            events.append(
                ReviewDeadlineApproaching(case_id=review.case_id, months=months, deadline=review.deadline)
            )
    if "overdue" not in review.milestones and today > review.deadline:
        events.append(ReviewOverdue(case_id=review.case_id, deadline=review.deadline))
    return events
