"""Events of the allocation service that other services consume (the contract; issue 4 builds the
service that records them)."""

from datetime import date
from uuid import UUID

from events.registry import EventPayload, event


@event("allocation.ReviewerAllocated")
class ReviewerAllocated(EventPayload):
    case_id: UUID
    reviewer_id: UUID
    reviewer_user_id: str
    senior_reviewer_id: UUID
    senior_reviewer_user_id: str
    allocated_on: date
