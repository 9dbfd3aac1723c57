"""Events of the governance service: QA panels and their decisions, case closure, actions, and who
read a case's content here."""

from datetime import date
from uuid import UUID

from pydantic import Field

from events.registry import EventPayload, event


@event("governance.QAPanelScheduled")
class QAPanelScheduled(EventPayload):
    panel_id: UUID
    held_on: date


@event("governance.ReviewAwaitingQA")
class ReviewAwaitingQA(EventPayload):
    case_id: UUID
    submitted_on: date


@event("governance.ReviewAddedToPanelAgenda")
class ReviewAddedToPanelAgenda(EventPayload):
    case_id: UUID
    panel_id: UUID
    held_on: date | None = Field(
        default=None,
        description="the panel's date: its decision cannot be made before (absent in old events)",
    )


@event("governance.ReviewApprovedByQA")
class ReviewApprovedByQA(EventPayload):
    case_id: UUID
    panel_id: UUID
    quality_rating: int = Field(ge=1, le=5)
    themes: list[str]


@event("governance.ReviewReturnedByQA")
class ReviewReturnedByQA(EventPayload):
    case_id: UUID
    panel_id: UUID
    comments: str


@event("governance.CaseClosed")
class CaseClosed(EventPayload):
    case_id: UUID
    closed_on: date


@event("governance.CaseReopened")
class CaseReopened(EventPayload):
    case_id: UUID
    reason: str


@event("governance.ActionAgreed")
class ActionAgreed(EventPayload):
    action_id: UUID
    what: str
    organisation: str
    lead: str
    due_on: date
    case_ids: list[UUID]
    themes: list[str]
    agreed_on: date | None = Field(
        default=None,
        description="the day it was agreed: it cannot be completed before (absent in old events)",
    )


@event("governance.ActionProgressUpdated")
class ActionProgressUpdated(EventPayload):
    action_id: UUID
    update: str


@event("governance.ActionCompleted")
class ActionCompleted(EventPayload):
    action_id: UUID
    evidence: str
    completed_on: date


@event("governance.ActionOverdue")
class ActionOverdue(EventPayload):
    action_id: UUID
    due_on: date


@event("governance.CaseRead")
class CaseRead(EventPayload):
    """A person read content of the case from the governance service (an action agreed for it, with its
    updates and evidence): kept on the case's reads stream (`reads-<case_id>`), apart from the case's
    own, so a read never conflicts with a write."""

    case_id: UUID
    reader: str = Field(description="the `sub` of the reader's token")
    role: str = Field(description="the role the reader acted in")
    what: str = Field(description="what of the case was read: `action`, an action agreed for it")
    action_id: UUID | None = Field(default=None, description="the action read, when `what` is `action`")
