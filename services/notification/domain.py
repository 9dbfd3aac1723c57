"""The notification domain: what a death notification is, and what becomes of a case here.

Plain Python: decide (command + state -> events, or a DomainError naming the rule) and evolve
(state + event -> state). No I/O; sealing personal data and finding duplicates happen at the edge.
"""

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal
from uuid import UUID

from events import EventPayload
from events.canonical import canonical_bytes
from events.notification import (
    AllocationEndReason,
    CaseAllocationEnded,
    CaseAllocationRecorded,
    CaseClosureRecorded,
    CaseEscalatedToFocused,
    CaseFacts,
    CaseOpened,
    CaseRead,
    CaseReopeningRecorded,
    Diagnosis,
    DuplicateNotificationLinked,
    EligibilityConfirmed,
    EligibilityRejected,
    EligibilityToConfirm,
    EthnicityRecorded,
    FocusedReason,
    NotificationNotEligible,
    NotificationPersonalDataDestroyed,
    PersonalDataDestroyed,
    PersonalDetailsViewed,
    ReferredToChildDeathOverviewPanel,
    SealedPersonalData,
)
from events.partner import EthnicCategory, PartnerNotification
from infra.domain import DomainError as DomainError

ADULT_AGE = 18
ETHNICITY_NOT_STATED: frozenset[str] = frozenset({"Z", "99"})
FLAG_ETHNICITY_NOT_STATED = "ethnicity_not_stated"

Outcome = Literal[
    "case_opened", "duplicate_linked", "referred_to_cdop", "not_eligible", "eligibility_to_confirm"
]
CaseStatus = Literal["eligibility_to_confirm", "open", "not_eligible", "closed"]


class NotAwaitingEligibility(DomainError):
    code = "not_awaiting_eligibility"


class NoDiagnosisConfirmed(DomainError):
    code = "no_diagnosis_confirmed"
    status = 422


class NotAnOpenCase(DomainError):
    code = "case_not_open"


class PersonalDataWasDestroyed(DomainError):
    code = "personal_data_destroyed"
    status = 410


class NotAllowedToSeePersonalDetails(DomainError):
    code = "not_allocated_to_caller"
    status = 403


class NotificationIdConflict(DomainError):
    """A notification_id already taken by another notification: never a silent drop of this one."""

    code = "notification_id_conflict"


class NotYourOrganisation(DomainError):
    """A partner notifies in its own organisation's name only."""

    code = "not_your_organisation"
    status = 422


class ReferencesExhausted(DomainError):
    code = "references_exhausted"
    status = 503


REFERENCE_PREFIX = "LDR"
LAST_REFERENCE_NUMBER = 99_999


def case_reference(year: int, number: int) -> str:
    """The reference people name a case by: LDR-<year the death was notified>-<five digits>. Which
    number is next is the handler's to find (in the order cases are opened); this only writes it."""
    if not 1 <= number <= LAST_REFERENCE_NUMBER:
        raise ReferencesExhausted(f"no case reference left in {year}: {number} has more than five digits")
    return f"{REFERENCE_PREFIX}-{year:04d}-{number:05d}"


def reference_parts(reference: str) -> tuple[int, int]:
    """(year, number) of a reference written by case_reference."""
    _, year, number = reference.split("-")
    return int(year), int(number)


def may_see_case(role: str, viewer: str, allowed_viewers: frozenset[str]) -> bool:
    """The LAC sees every case; a reviewer or senior reviewer only a case allocated to them."""
    return role == "lac" or viewer in allowed_viewers


def age_at(date_of_birth: date, on: date) -> int:
    """Completed years. A 29 February birthday falls on 1 March in other years."""
    birthday_month, birthday_day = date_of_birth.month, date_of_birth.day
    if (birthday_month, birthday_day) == (2, 29) and not _is_leap(on.year):
        birthday_month, birthday_day = 3, 1
    had_birthday = (on.month, on.day) >= (birthday_month, birthday_day)
    return on.year - date_of_birth.year - (0 if had_birthday else 1)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def facts_of(notification: PartnerNotification) -> CaseFacts:
    person, death = notification.person, notification.death
    return CaseFacts(
        age_at_death=age_at(person.date_of_birth, death.date_of_death),
        sex=person.sex,
        ethnicity=person.ethnicity,
        learning_disability=person.learning_disability,
        learning_disability_level=person.learning_disability_level,
        autism=person.autism,
        accommodation_type=person.accommodation_type,
        opted_out_of_secondary_use=person.opted_out_of_secondary_use,
        date_of_death=death.date_of_death,
        place_of_death=death.place_of_death,
        place_of_death_organisation=death.place_of_death_organisation,
        gp_practice_code=person.gp_practice_code,
        organisations_involved=list(notification.organisations_involved),
        notifier_organisation=notification.notifier.organisation,
        notifier_role=notification.notifier.role,
        involve_family=notification.next_of_kin.involve_family if notification.next_of_kin else None,
    )


def focused_reasons(notification: PartnerNotification) -> list[FocusedReason]:
    """Every reason for a focused review that the notification gives, in the policy's order."""
    person, circumstances = notification.person, notification.circumstances
    reasons: list[FocusedReason] = []
    if person.autism is True and person.learning_disability is False:
        reasons.append("autistic_without_learning_disability")
    if person.ethnicity != "A" and person.ethnicity not in ETHNICITY_NOT_STATED:
        reasons.append("ethnicity")
    if (
        circumstances.detained_mental_health_act_within_5_years
        or circumstances.detained_criminal_justice_within_5_years
    ):
        reasons.append("detained_within_5_years")
    if circumstances.family_requested_focused_review:
        reasons.append("family_request")
    if circumstances.concerns_about_care:
        reasons.append("concerns_about_care")
    if circumstances.likely_learning:
        reasons.append("likely_learning")
    return reasons


def flags_of(notification: PartnerNotification) -> list[str]:
    return [FLAG_ETHNICITY_NOT_STATED] if notification.person.ethnicity in ETHNICITY_NOT_STATED else []


def content_hash(notification: PartnerNotification) -> str:
    """What a notification says, as one value: sha256 of its canonical JSON as validated (so the same
    notification written with other spacing or key order is the same notification)."""
    return hashlib.sha256(canonical_bytes(notification.model_dump(mode="json"))).hexdigest()


def check_notifier(notification: PartnerNotification, role: str, organisation: str | None) -> None:
    """A partner notifies in its own organisation's name only (its token always names one: infra.auth
    refuses a partner token that names none): the notification then belongs to it. The LAC records
    notifications made to them (a family's call, say) in the name of whoever made them."""
    if role == "partner_system" and notification.notifier.organisation != organisation:
        raise NotYourOrganisation(
            f"you notify for {organisation}: the notifier's organisation must be it, not"
            f" {notification.notifier.organisation}"
        )


def decide_resend(
    notification: PartnerNotification, digest: str, owner: str | None, earlier_digest: str | None
) -> None:
    """A notification_id already taken: the same notification sent again by the organisation that
    sent it is idempotent (its first outcome answers); other content, or another organisation, under
    that id is refused, so a different death is never dropped in silence. (A notification taken before
    hashes were kept has none to compare: it is taken as the same.)"""
    nid = notification.notification_id
    if owner is not None and owner != notification.notifier.organisation:
        # Says nothing of the other organisation's notification, not even that it is another's.
        raise NotificationIdConflict(f"notification_id {nid} is taken: send this notification with a new one")
    if earlier_digest is not None and earlier_digest != digest:
        raise NotificationIdConflict(
            f"notification {nid} was sent before with other content: a changed notification needs a new"
            " notification_id"
        )


def may_read_outcome(role: str, organisation: str | None, owner: str | None) -> bool:
    """The LAC reads every notification's outcome; a partner only its own organisation's."""
    return role == "lac" or (organisation is not None and organisation == owner)


@dataclass(frozen=True)
class Match:
    """An existing case for the same person, found by the edge."""

    case_id: UUID
    matched_on: Literal["nhs_number", "name_and_dates"]


@dataclass(frozen=True)
class Intake:
    outcome: Outcome
    stream_id: str
    case_id: UUID | None
    events: list[EventPayload]
    review_type: str | None = None
    focused_reasons: list[FocusedReason] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def classify(notification: PartnerNotification, match: Match | None) -> Outcome:
    person = notification.person
    if age_at(person.date_of_birth, notification.death.date_of_death) < ADULT_AGE:
        return "referred_to_cdop"  # never a LeDeR case, not even a duplicate of one
    if match is not None:
        return "duplicate_linked"
    diagnoses = (person.learning_disability, person.autism)
    if True in diagnoses:
        return "case_opened"
    return "eligibility_to_confirm" if None in diagnoses else "not_eligible"


def intake_stream(
    outcome: Outcome, notification: PartnerNotification, match: Match | None, new_case_id: UUID
) -> str:
    """The stream a notification's events go to, and so the key its personal data is sealed under."""
    if outcome == "duplicate_linked":
        assert match is not None
        return str(match.case_id)
    if outcome in ("case_opened", "eligibility_to_confirm"):
        return str(new_case_id)
    return non_case_stream(notification.notification_id)


def non_case_stream(notification_id: UUID) -> str:
    """The stream of a notification that opened no case (and the key its personal data is sealed
    under)."""
    return f"notification-{notification_id}"


def decide_intake(
    notification: PartnerNotification,
    match: Match | None,
    new_case_id: UUID,
    personal: SealedPersonalData,
    *,
    reference: str | None,
    notified_on: date | None = None,
    digest: str | None = None,
) -> Intake:
    """What a notification is. `personal` is sealed under the key of its intake_stream; `reference`
    names the case if the notification opens one (the handler found the next); `notified_on` is the
    day it was notified (today), where an opened case's six-month clock starts; `digest` its
    content_hash, kept with it."""
    outcome = classify(notification, match)
    stream_id = intake_stream(outcome, notification, match, new_case_id)
    facts = facts_of(notification)
    nid = notification.notification_id
    flags = flags_of(notification)
    if outcome == "referred_to_cdop":
        event: EventPayload = ReferredToChildDeathOverviewPanel(
            notification_id=nid, facts=facts, personal=personal, content_hash=digest
        )
        return Intake(outcome, stream_id, None, [event])
    if outcome == "not_eligible":
        event = NotificationNotEligible(
            notification_id=nid,
            reason="neither a learning disability nor autism",
            facts=facts,
            personal=personal,
            content_hash=digest,
        )
        return Intake(outcome, stream_id, None, [event])
    if outcome == "duplicate_linked":
        assert match is not None
        event = DuplicateNotificationLinked(
            case_id=match.case_id,
            notification_id=nid,
            matched_on=match.matched_on,
            notifier_organisation=facts.notifier_organisation,
            notifier_role=facts.notifier_role,
            personal=personal,
            content_hash=digest,
        )
        return Intake(outcome, stream_id, match.case_id, [event])
    reasons = focused_reasons(notification)
    if outcome == "eligibility_to_confirm":
        known: dict[Diagnosis, bool | None] = {
            "learning_disability": facts.learning_disability,
            "autism": facts.autism,
        }
        unknown = [diagnosis for diagnosis, value in known.items() if value is None]
        event = EligibilityToConfirm(
            case_id=new_case_id,
            notification_id=nid,
            unknown=unknown,
            focused_reasons=reasons,
            flags=flags,
            facts=facts,
            personal=personal,
            content_hash=digest,
        )
        return Intake(outcome, stream_id, new_case_id, [event], None, reasons, flags)
    review_type = "focused" if reasons else "initial"
    event = CaseOpened(
        case_id=new_case_id,
        notification_id=nid,
        reference=reference,
        notified_on=notified_on,
        review_type=review_type,
        focused_reasons=reasons,
        flags=flags,
        facts=facts,
        personal=personal,
        content_hash=digest,
    )
    return Intake(outcome, stream_id, new_case_id, [event], review_type, reasons, flags)


@dataclass(frozen=True)
class Case:
    """A case as the notification service sees it."""

    case_id: UUID
    status: CaseStatus
    notification_id: UUID
    facts: CaseFacts
    personal: SealedPersonalData
    reference: str | None = None
    review_type: str | None = None
    focused_reasons: tuple[FocusedReason, ...] = ()
    flags: tuple[str, ...] = ()
    unknown: tuple[Diagnosis, ...] = ()
    allowed_viewers: frozenset[str] = frozenset()
    personal_destroyed: bool = False
    # Who the standing allocation names (None once it ended): their access ends with it.
    reviewer_user_id: str | None = None
    senior_reviewer_user_id: str | None = None


def evolve(state: Case | None, event: EventPayload) -> Case | None:
    match event:
        case CaseOpened() if state is None:
            return Case(
                case_id=event.case_id,
                status="open",
                notification_id=event.notification_id,
                facts=event.facts,
                personal=event.personal,
                reference=event.reference,
                review_type=event.review_type,
                focused_reasons=tuple(event.focused_reasons),
                flags=tuple(event.flags),
            )
        case CaseOpened():
            assert state is not None
            return replace(
                state,
                status="open",
                reference=event.reference,
                review_type=event.review_type,
                focused_reasons=tuple(event.focused_reasons),
                flags=tuple(event.flags),
                facts=event.facts,
                unknown=(),
            )
        case EligibilityToConfirm():
            return Case(
                case_id=event.case_id,
                status="eligibility_to_confirm",
                notification_id=event.notification_id,
                facts=event.facts,
                personal=event.personal,
                focused_reasons=tuple(event.focused_reasons),
                flags=tuple(event.flags),
                unknown=tuple(event.unknown),
            )
        case EligibilityRejected():
            assert state is not None
            return replace(state, status="not_eligible")
        case EthnicityRecorded():
            assert state is not None
            flags = tuple(f for f in state.flags if f != FLAG_ETHNICITY_NOT_STATED)
            if event.ethnicity in ETHNICITY_NOT_STATED:
                flags = (*flags, FLAG_ETHNICITY_NOT_STATED)
            return replace(
                state, facts=state.facts.model_copy(update={"ethnicity": event.ethnicity}), flags=flags
            )
        case CaseEscalatedToFocused():
            assert state is not None
            reasons = state.focused_reasons + tuple(
                r for r in event.reasons if r not in state.focused_reasons
            )
            return replace(state, review_type="focused", focused_reasons=reasons)
        case CaseAllocationRecorded():
            assert state is not None
            viewers = {event.reviewer_user_id} | ({event.senior_reviewer_user_id} - {None})
            return replace(
                state,
                allowed_viewers=frozenset(viewers),  # type: ignore[arg-type]
                reviewer_user_id=event.reviewer_user_id,
                senior_reviewer_user_id=event.senior_reviewer_user_id,
            )
        case CaseAllocationEnded():
            assert state is not None
            return replace(
                state, allowed_viewers=frozenset(), reviewer_user_id=None, senior_reviewer_user_id=None
            )
        case PersonalDataDestroyed():
            assert state is not None
            return replace(state, personal_destroyed=True)
        case CaseClosureRecorded():
            assert state is not None
            return replace(state, status="closed")
        case CaseReopeningRecorded():
            assert state is not None
            return replace(state, status="open")
        case _:
            return state  # EligibilityConfirmed, DuplicateNotificationLinked, PersonalDetailsViewed


def decide_eligibility(
    case: Case,
    confirm: bool,
    learning_disability: bool | None,
    autism: bool | None,
    reason: str | None,
    *,
    reference: str | None = None,
    notified_on: date | None = None,
) -> list[EventPayload]:
    """`reference` names the case if confirming opens it (the handler found the next); `notified_on`
    is the day the death was notified, not today: the case's six-month clock started then."""
    if case.status != "eligibility_to_confirm":
        raise NotAwaitingEligibility(
            f"case {case.case_id} is {case.status}, not awaiting an eligibility decision"
        )
    if not confirm:
        return [EligibilityRejected(case_id=case.case_id, reason=reason or "not eligible")]
    if not (learning_disability or autism):
        raise NoDiagnosisConfirmed("confirming eligibility needs a learning disability or autism, or both")
    facts = case.facts.model_copy(
        update={"learning_disability": bool(learning_disability), "autism": bool(autism)}
    )
    reasons: list[FocusedReason] = list(case.focused_reasons)
    if autism and not learning_disability:
        reasons.insert(0, "autistic_without_learning_disability")
    return [
        EligibilityConfirmed(
            case_id=case.case_id, learning_disability=bool(learning_disability), autism=bool(autism)
        ),
        CaseOpened(
            case_id=case.case_id,
            notification_id=case.notification_id,
            reference=reference,
            notified_on=notified_on,
            review_type="focused" if reasons else "initial",
            focused_reasons=reasons,
            flags=list(case.flags),
            facts=facts,
            personal=case.personal,
        ),
    ]


def decide_ethnicity(case: Case, ethnicity: EthnicCategory) -> list[EventPayload]:
    if case.status == "not_eligible":
        raise NotAnOpenCase(f"case {case.case_id} is not eligible")
    events: list[EventPayload] = [EthnicityRecorded(case_id=case.case_id, ethnicity=ethnicity)]
    if (
        ethnicity != "A"
        and ethnicity not in ETHNICITY_NOT_STATED
        and case.status == "open"
        and "ethnicity" not in case.focused_reasons
    ):
        events.append(
            CaseEscalatedToFocused(case_id=case.case_id, reasons=["ethnicity"], source="ethnicity_recorded")
        )
    return events


def decide_review_escalation(case: Case, reasons: list[FocusedReason]) -> list[EventPayload]:
    new = [r for r in reasons if r not in case.focused_reasons]
    if case.review_type == "focused" and not new:
        return []
    return [CaseEscalatedToFocused(case_id=case.case_id, reasons=new, source="review")]


def decide_closure(case: Case, closed_on: date) -> list[EventPayload]:
    """The QA panel closed the case (governance.CaseClosed): it shows closed here too. Only an open
    case is closed; told again, nothing changes."""
    if case.status == "closed":
        return []
    if case.status != "open":
        raise NotAnOpenCase(f"case {case.case_id} is {case.status}: it was never open, so cannot be closed")
    return [CaseClosureRecorded(case_id=case.case_id, closed_on=closed_on)]


def decide_reopening(case: Case, reason: str) -> list[EventPayload]:
    """The LAC reopened the case (governance.CaseReopened): it shows open here again."""
    if case.status != "closed":
        return []
    return [CaseReopeningRecorded(case_id=case.case_id, reason=reason)]


def decide_allocation(
    case: Case, reviewer_user_id: str, senior_reviewer_user_id: str | None
) -> list[EventPayload]:
    """A reviewer and senior reviewer were allocated the case (allocation.ReviewerAllocated), or had
    it again when it was reopened (allocation.AllocationRestored): they may see the person's details."""
    return [
        CaseAllocationRecorded(
            case_id=case.case_id,
            reviewer_user_id=reviewer_user_id,
            senior_reviewer_user_id=senior_reviewer_user_id,
        )
    ]


def decide_allocation_end(case: Case, reason: AllocationEndReason) -> list[EventPayload]:
    """The allocation ended, for whatever reason (a conflict declared, the case back in the queue or
    moved to another reviewer, the review completed, the case closed): the reviewer's and senior
    reviewer's access to the person's details ends with it, and comes back only with a new
    allocation. An allocation already ended (a conflict declared, then the case returned to the queue
    in the same breath) ends once."""
    if case.reviewer_user_id is None:
        return []
    return [
        CaseAllocationEnded(
            case_id=case.case_id,
            reviewer_user_id=case.reviewer_user_id,
            senior_reviewer_user_id=case.senior_reviewer_user_id,
            reason=reason,
        )
    ]


def decide_view(case: Case, viewer: str, role: str, reason: str) -> list[EventPayload]:
    if not may_see_case(role, viewer, case.allowed_viewers):
        raise NotAllowedToSeePersonalDetails(f"{viewer} is not allocated to case {case.case_id}")
    if case.personal_destroyed:
        raise PersonalDataWasDestroyed(
            f"the personal data of case {case.case_id} was destroyed at the end of its retention period"
        )
    return [PersonalDetailsViewed(case_id=case.case_id, viewer=viewer, role=role, reason=reason)]


def decide_destruction(
    case: Case, retention_years: int, retention_days: int | None = None
) -> list[EventPayload]:
    """The end of the case's retention: `retention_years` for a case, or the short `retention_days` of
    one found not eligible (see non_case_retention_applies)."""
    if case.personal_destroyed:
        return []
    return [
        PersonalDataDestroyed(
            case_id=case.case_id,
            reason="retention_period_ended",
            retention_years=retention_years,
            retention_days=retention_days,
        )
    ]


def non_case_retention_applies(case: Case) -> bool:
    """A case found not eligible (eligibility rejected) never became a LeDeR case: it is kept as
    briefly as a notification that opened none."""
    return case.status == "not_eligible"


@dataclass(frozen=True)
class NonCaseNotification:
    """A notification that opened no case (referred to the CDOP, or not eligible), as its own stream
    tells it: the key its personal details are sealed under, and whether they were destroyed."""

    notification_id: UUID
    key_id: str
    destroyed: bool = False


def evolve_non_case(state: NonCaseNotification | None, event: EventPayload) -> NonCaseNotification | None:
    match event:
        case ReferredToChildDeathOverviewPanel() | NotificationNotEligible():
            return NonCaseNotification(event.notification_id, event.personal.key_id)
        case NotificationPersonalDataDestroyed() if state is not None:
            return replace(state, destroyed=True)
    return state


def decide_non_case_destruction(notification: NonCaseNotification, retention_days: int) -> list[EventPayload]:
    """The end of a non-case notification's short retention: its personal details are destroyed (its
    key, by the handler, after this is recorded). Once."""
    if notification.destroyed:
        return []
    return [
        NotificationPersonalDataDestroyed(
            notification_id=notification.notification_id,
            reason="retention_period_ended",
            retention_days=retention_days,
        )
    ]


DEAD_LETTER_KEY_PREFIX = "dead-letter-"


def dead_letter_key_id(dead_letter_id: UUID) -> str:
    """The key a partner notification refused to the DLQ is sealed under: one per dead letter, so that
    each is destroyed when the non-case retention ends, as a notification that opened no case is."""
    return f"{DEAD_LETTER_KEY_PREFIX}{dead_letter_id}"


def reads_stream(case_id: UUID) -> str:
    """Where a case's reads are recorded: a stream of their own, so that a read never conflicts with a
    change of the case (nor waits for one)."""
    return f"reads-{case_id}"


def decide_read(case_id: UUID, reader: str, role: str, allowed_viewers: frozenset[str]) -> list[EventPayload]:
    """A person reads one case's content: allowed as `may_see_case` says, and recorded (who, in which
    role), so that every look at a case is attributable."""
    if not may_see_case(role, reader, allowed_viewers):
        raise NotAllowedToSeePersonalDetails(f"{reader} is not allocated to case {case_id}")
    return [CaseRead(case_id=case_id, reader=reader, role=role)]
