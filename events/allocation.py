"""Events of the allocation service: reviewers, the queue, allocations and conflicts of interest.

The free text about a case (why a conflict was declared, why it was returned to the queue or
reallocated, why it was reopened) may name people: it is `Sealed` under the allocation service's own
key for the case (infra.sealing), destroyed when the case's retention ends
(allocation.CasePersonalDataDestroyed); no other service reads it. Changed in place, not versioned:
the system holds no live data yet."""

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import Field

from events.notification import FocusedReason, ReviewType
from events.registry import EventPayload, event
from events.sealing import Sealed


@event("allocation.ReviewerRegistered")
class ReviewerRegistered(EventPayload):
    reviewer_id: UUID
    user_id: str = Field(description="the `sub` of the reviewer's token")
    name: str
    organisations: list[str] = Field(description="employing organisation(s)")
    senior: bool
    capacity: int = Field(ge=1, description="the most active cases at once")


@event("allocation.ReviewerTrainingRecorded")
class ReviewerTrainingRecorded(EventPayload):
    reviewer_id: UUID
    completed_on: date


@event("allocation.ReviewerConflictRecorded")
class ReviewerConflictRecorded(EventPayload):
    """A standing conflict of interest: an organisation, or a named person."""

    reviewer_id: UUID
    kind: Literal["organisation", "person"]
    name: str


@event("allocation.ReviewerDeactivated")
class ReviewerDeactivated(EventPayload):
    reviewer_id: UUID
    reason: str


@event("allocation.ReviewerReactivated")
class ReviewerReactivated(EventPayload):
    reviewer_id: UUID


@event("allocation.CaseAwaitingAllocation")
class CaseAwaitingAllocation(EventPayload):
    case_id: UUID
    notified_on: date
    deadline: date = Field(description="six months from notification")
    review_type: ReviewType
    focused_reasons: list[FocusedReason]
    organisations_involved: list[str]


@event("allocation.CaseReviewTypeChanged")
class CaseReviewTypeChanged(EventPayload):
    case_id: UUID
    review_type: ReviewType
    focused_reasons: list[FocusedReason]


@event("allocation.ReviewerAllocated")
class ReviewerAllocated(EventPayload):
    case_id: UUID
    reviewer_id: UUID
    reviewer_user_id: str
    senior_reviewer_id: UUID
    senior_reviewer_user_id: str
    allocated_on: date
    # What the review service needs to start the review and its six-month clock.
    notified_on: date
    deadline: date
    review_type: ReviewType
    focused_reasons: list[FocusedReason]


@event("allocation.AllocationRestored")
class AllocationRestored(EventPayload):
    """The case was reopened (governance.CaseReopened) and the reviewer and senior reviewer whose
    allocation its closure ended can still take it: they have it again and it counts in their
    caseloads. The review service returns the review to its reviewer on the reopening itself
    (review.ReviewReopened), so this starts and hands over nothing; the reviewer's and senior
    reviewer's access, which the closure ended, comes back with it."""

    case_id: UUID
    reviewer_id: UUID
    reviewer_user_id: str
    senior_reviewer_id: UUID
    senior_reviewer_user_id: str
    restored_on: date
    reason: Sealed = Field(description="why the case was reopened (sealed)")


@event("allocation.ConflictOfInterestDeclared")
class ConflictOfInterestDeclared(EventPayload):
    case_id: UUID
    reviewer_id: UUID
    reason: Sealed


@event("allocation.CaseReturnedToQueue")
class CaseReturnedToQueue(EventPayload):
    """Back at the front of the queue; the reviewer and senior reviewer it leaves no longer have it
    (a conflict declared, a reopened case that cannot go back to them, or one of them deactivated)."""

    case_id: UUID
    reviewer_id: UUID
    reason: Sealed


@event("allocation.CaseReallocated")
class CaseReallocated(EventPayload):
    """The LAC moved the case to another reviewer (a ReviewerAllocated follows); the review's
    history stays with the case."""

    case_id: UUID
    from_reviewer_id: UUID
    to_reviewer_id: UUID
    reason: Sealed


@event("allocation.AllocationEnded")
class AllocationEnded(EventPayload):
    """The review was completed or the case closed: the reviewer's caseload drops."""

    case_id: UUID
    reviewer_id: UUID | None
    reason: Literal["review_completed", "case_closed"]


@event("allocation.CasePersonalDataDestroyed")
class CasePersonalDataDestroyed(EventPayload):
    """The case's retention period ended (notification.PersonalDataDestroyed): the allocation service's
    key for the case was destroyed with this event, and every sealed reason about the case, wherever a
    copy went, opens no more."""

    case_id: UUID
    reason: Literal["retention_period_ended"]
