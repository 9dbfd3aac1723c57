"""Events of the governance service that other services consume (the contract; issue 6 builds the
service that records them)."""

from uuid import UUID

from events.registry import EventPayload, event


@event("governance.CaseClosed")
class CaseClosed(EventPayload):
    case_id: UUID


@event("governance.ReviewApprovedByQA")
class ReviewApprovedByQA(EventPayload):
    case_id: UUID
    quality_rating: int
    themes: list[str]


@event("governance.ReviewReturnedByQA")
class ReviewReturnedByQA(EventPayload):
    case_id: UUID
    comments: str
