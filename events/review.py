"""Events of the review service: the reviewer's work on a case, from start to QA and completion.

Free text that can name or describe a person (the pen portrait, notes, family comments, rationales,
narratives, safeguarding details, the panel's comments, why a case was reopened) is `Sealed` under the
review service's own key for the case, destroyed when the case's retention ends
(review.ReviewPersonalDataDestroyed). In clear: what other services read (dates, grades, themes,
organisations, reasons from controlled lists, whether a death was avoidable) and what the review's
own rules count (contacts' roles and organisations, record sources). Changed in place, not versioned:
no stored text could be sealed by an upcaster, and the system holds no live data yet."""

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import Field

from events.notification import FocusedReason, ReviewType
from events.registry import EventPayload, event
from events.sealing import Sealed

ContactParty = Literal["family", "gp", "gp_records", "professional"]
ContactStatus = Literal["offered", "declined", "completed", "not_wanted"]
PauseReason = Literal[
    "police_investigation",
    "coroners_investigation_or_inquest",
    "safeguarding_adult_review_or_enquiry",
    "domestic_homicide_review",
    "serious_incident_review",
    "family_asked_for_delay",
]
Contribution = Literal["contributed", "possibly_contributed", "did_not_contribute", "unknown"]


@event("review.ReviewStarted")
class ReviewStarted(EventPayload):
    case_id: UUID
    review_type: ReviewType
    focused_reasons: list[FocusedReason]
    reviewer_user_id: str
    senior_reviewer_user_id: str
    notified_on: date
    deadline: date


@event("review.ReviewHandedOver")
class ReviewHandedOver(EventPayload):
    """Reallocation: the review, with its whole history, passes to another reviewer."""

    case_id: UUID
    from_reviewer_user_id: str
    reviewer_user_id: str
    senior_reviewer_user_id: str


@event("review.ContactRecorded")
class ContactRecorded(EventPayload):
    case_id: UUID
    party: ContactParty
    status: ContactStatus
    on: date
    role: str | None = Field(default=None, max_length=200)
    organisation: str | None = Field(default=None, max_length=200)


@event("review.RecordsRequested")
class RecordsRequested(EventPayload):
    case_id: UUID
    source: str
    requested_on: date


@event("review.RecordsReceived")
class RecordsReceived(EventPayload):
    case_id: UUID
    source: str
    received_on: date


@event("review.PenPortraitWritten")
class PenPortraitWritten(EventPayload):
    case_id: UUID
    text: Sealed


@event("review.FamilyInvolvementRecorded")
class FamilyInvolvementRecorded(EventPayload):
    """The family was invited to comment on the draft, commented, or was offered the final copy."""

    case_id: UUID
    step: Literal["invited_to_comment", "comments_received", "final_copy_offered"]
    on: date
    comments: Sealed | None = None


@event("review.CareJudged")
class CareJudged(EventPayload):
    case_id: UUID
    phase: str
    grade: int = Field(description="a point on the configured ordinal scale (scale_version)")
    scale_version: str
    rationale: Sealed


@event("review.LapseInCareRecorded")
class LapseInCareRecorded(EventPayload):
    case_id: UUID
    what: Sealed
    where: Sealed
    organisation: str
    contribution: Contribution


@event("review.GoodPracticeRecorded")
class GoodPracticeRecorded(EventPayload):
    case_id: UUID
    text: Sealed
    themes: list[str]
    themes_version: str


@event("review.LearningRecorded")
class LearningRecorded(EventPayload):
    case_id: UUID
    text: Sealed
    themes: list[str]
    themes_version: str


@event("review.RecommendationRecorded")
class RecommendationRecorded(EventPayload):
    case_id: UUID
    what: Sealed
    organisation: str


@event("review.CauseOfDeathRecorded")
class CauseOfDeathRecorded(EventPayload):
    case_id: UUID
    cause: Sealed
    preventable_or_treatable: bool
    avoidable: bool = Field(description="under 75 and from a preventable or treatable cause")


@event("review.SafeguardingReferralMade")
class SafeguardingReferralMade(EventPayload):
    case_id: UUID
    to: Sealed
    on: date
    why: Sealed


@event("review.ReviewEscalatedToFocused")
class ReviewEscalatedToFocused(EventPayload):
    case_id: UUID
    reasons: list[FocusedReason]
    detail: Sealed | None = None


@event("review.ReviewPaused")
class ReviewPaused(EventPayload):
    case_id: UUID
    reason: PauseReason
    paused_on: date


@event("review.ReviewResumed")
class ReviewResumed(EventPayload):
    case_id: UUID
    resumed_on: date


@event("review.NoteAdded")
class NoteAdded(EventPayload):
    case_id: UUID
    text: Sealed


@event("review.ReviewSubmittedForQA")
class ReviewSubmittedForQA(EventPayload):
    case_id: UUID
    submitted_on: date


@event("review.ReviewReturnedForRework")
class ReviewReturnedForRework(EventPayload):
    case_id: UUID
    comments: Sealed


@event("review.ReviewCompleted")
class ReviewCompleted(EventPayload):
    """The QA panel approved the review."""

    case_id: UUID
    completed_on: date


@event("review.ReviewReopened")
class ReviewReopened(EventPayload):
    """The case was reopened after the QA panel approved the review (governance.CaseReopened): the
    review is back with its reviewer, in progress, to be written further and submitted again."""

    case_id: UUID
    reason: Sealed
    reopened_on: date


@event("review.ReviewDeadlineApproaching")
class ReviewDeadlineApproaching(EventPayload):
    case_id: UUID
    months: Literal[4, 5]
    deadline: date


@event("review.ReviewOverdue")
class ReviewOverdue(EventPayload):
    case_id: UUID
    deadline: date


AccessEndReason = Literal["conflict_declared", "returned_to_queue", "review_completed", "case_closed"]


@event("review.ReviewerAccessEnded")
class ReviewerAccessEnded(EventPayload):
    """The allocation ended (allocation.ConflictOfInterestDeclared, CaseReturnedToQueue for any reason,
    or AllocationEnded): the reviewer and senior reviewer named no longer read nor write the review, until
    a new allocation (review.ReviewHandedOver or review.ReviewerAccessRestored)."""

    case_id: UUID
    reviewer_user_id: str
    senior_reviewer_user_id: str
    reason: AccessEndReason


@event("review.ReviewerAccessRestored")
class ReviewerAccessRestored(EventPayload):
    """A new allocation to the reviewer and senior reviewer whose access had ended: the allocation
    restored on reopening (allocation.AllocationRestored), or the case allocated to them again."""

    case_id: UUID
    reviewer_user_id: str
    senior_reviewer_user_id: str
    because: Literal["allocation_restored", "allocated"]


@event("review.ReviewRead")
class ReviewRead(EventPayload):
    """A person read the review's content (GET /reviews/{case_id}): kept on the case's reads stream
    (`reads-<case_id>`), apart from the review's own, so a read never conflicts with a write."""

    case_id: UUID
    reader: str = Field(description="the `sub` of the reader's token")
    role: str = Field(description="the role the reader acted in")


@event("review.ReviewPersonalDataDestroyed")
class ReviewPersonalDataDestroyed(EventPayload):
    """The case's retention period ended (notification.PersonalDataDestroyed): the review service's key
    for the case was destroyed with this event, and every sealed text of the review, wherever a copy
    went, opens no more."""

    case_id: UUID
    reason: Literal["retention_period_ended"]
