"""Events of the review service that other services consume (the contract; issue 5 builds the
service that records them)."""

from uuid import UUID

from events.notification import FocusedReason
from events.registry import EventPayload, event


@event("review.ReviewEscalatedToFocused")
class ReviewEscalatedToFocused(EventPayload):
    case_id: UUID
    reasons: list[FocusedReason]
    detail: str | None = None


@event("review.ReviewCompleted")
class ReviewCompleted(EventPayload):
    """The QA panel approved the review."""

    case_id: UUID
