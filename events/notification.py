"""Events of the notification service: what became of each death notification.

Identifying details travel only sealed (AES-GCM under a key per case that the notification service
holds); everything another service needs is in clear in `CaseFacts`."""

from datetime import date
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from events.partner import (
    AccommodationType,
    EthnicCategory,
    LearningDisabilityLevel,
    NotifierRole,
    PlaceOfDeath,
    Sex,
)
from events.registry import EventPayload, event
from events.sealing import Sealed

ReviewType = Literal["initial", "focused"]
FocusedReason = Literal[
    "autistic_without_learning_disability",
    "ethnicity",
    "detained_within_5_years",
    "family_request",
    "concerns_about_care",
    "likely_learning",
    "lapse_in_care",
    "learning",
]
Diagnosis = Literal["learning_disability", "autism"]
CONTENT_HASH = (
    "sha256 of the notification's canonical JSON, with the organisation that sent it (notifier_organisation)"
    " its owner: a re-send of its notification_id with other content is refused; events recorded before"
    " it existed have none"
)


# Identifying details, sealed under the notification service's key of the case (events.sealing).
SealedPersonalData = Sealed


class CaseFacts(BaseModel):
    """What other services may know about the person: nothing that identifies them by itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    age_at_death: int
    sex: Sex
    ethnicity: EthnicCategory
    learning_disability: bool | None
    learning_disability_level: LearningDisabilityLevel
    autism: bool | None
    accommodation_type: AccommodationType
    opted_out_of_secondary_use: bool | None
    date_of_death: date
    place_of_death: PlaceOfDeath
    place_of_death_organisation: str | None
    gp_practice_code: str | None
    organisations_involved: list[str]
    notifier_organisation: str
    notifier_role: NotifierRole
    involve_family: bool | None


@event("notification.CaseOpened")
class CaseOpened(EventPayload):
    case_id: UUID
    notification_id: UUID
    # People name a case by this, never by its id (LDR-<year notified>-<five digits>, in the order the
    # notification service opened them); events recorded before references existed have none.
    reference: str | None = Field(None, pattern=r"^LDR-\d{4}-\d{5}$")
    notified_on: date | None = Field(
        None,
        description="the day the death was notified (UTC), where the six-month clock starts: earlier than"
        " this event when the LAC confirmed eligibility later; events recorded before it existed have"
        " none, and then the event's own date is the notification's",
    )
    review_type: ReviewType
    focused_reasons: list[FocusedReason]
    flags: list[str]
    facts: CaseFacts
    personal: SealedPersonalData
    content_hash: str | None = Field(None, description=CONTENT_HASH)


@event("notification.EligibilityToConfirm")
class EligibilityToConfirm(EventPayload):
    """A diagnosis the notifier did not know: the Local Area Contact decides."""

    case_id: UUID
    notification_id: UUID
    unknown: list[Diagnosis]
    focused_reasons: list[FocusedReason] = Field(description="reasons known before the diagnoses are")
    flags: list[str]
    facts: CaseFacts
    personal: SealedPersonalData
    content_hash: str | None = Field(None, description=CONTENT_HASH)


@event("notification.EligibilityConfirmed")
class EligibilityConfirmed(EventPayload):
    case_id: UUID
    learning_disability: bool
    autism: bool


@event("notification.EligibilityRejected")
class EligibilityRejected(EventPayload):
    case_id: UUID
    reason: str


@event("notification.ReferredToChildDeathOverviewPanel")
class ReferredToChildDeathOverviewPanel(EventPayload):
    notification_id: UUID
    facts: CaseFacts
    personal: SealedPersonalData
    content_hash: str | None = Field(None, description=CONTENT_HASH)


@event("notification.NotificationNotEligible")
class NotificationNotEligible(EventPayload):
    notification_id: UUID
    reason: str
    facts: CaseFacts
    personal: SealedPersonalData
    content_hash: str | None = Field(None, description=CONTENT_HASH)


@event("notification.DuplicateNotificationLinked")
class DuplicateNotificationLinked(EventPayload):
    case_id: UUID
    notification_id: UUID
    matched_on: Literal["nhs_number", "name_and_dates"]
    notifier_organisation: str
    notifier_role: NotifierRole
    personal: SealedPersonalData
    content_hash: str | None = Field(None, description=CONTENT_HASH)


@event("notification.EthnicityRecorded")
class EthnicityRecorded(EventPayload):
    case_id: UUID
    ethnicity: EthnicCategory


@event("notification.CaseEscalatedToFocused")
class CaseEscalatedToFocused(EventPayload):
    case_id: UUID
    reasons: list[FocusedReason]
    source: Literal["ethnicity_recorded", "review"]


@event("notification.CaseAllocationRecorded")
class CaseAllocationRecorded(EventPayload):
    """The allocation service allocated the case: who may now see its personal details."""

    case_id: UUID
    reviewer_user_id: str
    senior_reviewer_user_id: str | None


AllocationEndReason = Literal[
    "conflict_declared", "returned_to_queue", "reallocated", "review_completed", "case_closed"
]


@event("notification.CaseAllocationEnded")
class CaseAllocationEnded(EventPayload):
    """The allocation ended (allocation.ConflictOfInterestDeclared, CaseReturnedToQueue, CaseReallocated
    or AllocationEnded): the reviewer and the senior reviewer who had it may no longer see the
    person's details, until a new allocation (CaseAllocationRecorded) names them again."""

    case_id: UUID
    reviewer_user_id: str
    senior_reviewer_user_id: str | None
    reason: AllocationEndReason


@event("notification.CaseClosureRecorded")
class CaseClosureRecorded(EventPayload):
    """The QA panel closed the case (governance.CaseClosed): the case shows closed here too."""

    case_id: UUID
    closed_on: date


@event("notification.CaseReopeningRecorded")
class CaseReopeningRecorded(EventPayload):
    """The LAC reopened the case (governance.CaseReopened): the case shows open here again."""

    case_id: UUID
    reason: str


@event("notification.PersonalDetailsViewed")
class PersonalDetailsViewed(EventPayload):
    case_id: UUID
    viewer: str
    role: str
    reason: str


@event("notification.CaseRead")
class CaseRead(EventPayload):
    """A person read one case's content (GET /cases/{case_id}), on the case's own reads stream
    (`reads-<case_id>`) so that reads never conflict with the case's changes."""

    case_id: UUID
    reader: str
    role: str


@event("notification.PersonalDataDestroyed")
class PersonalDataDestroyed(EventPayload):
    case_id: UUID
    reason: Literal["retention_period_ended"]
    retention_years: int
    retention_days: int | None = Field(
        None, description="the shorter retention, in days, of a case found not eligible, when it applied"
    )


@event("notification.NotificationPersonalDataDestroyed")
class NotificationPersonalDataDestroyed(EventPayload):
    """A notification that never became a case (referred to the CDOP, not eligible) reached the end of
    its own, short retention: its key is destroyed, its personal details unreadable everywhere."""

    notification_id: UUID
    reason: Literal["retention_period_ended"]
    retention_days: int
