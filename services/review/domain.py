"""The review domain: the reviewer's structured work on a case, its minimum, pauses and the clock.

Plain Python, no I/O: evolve folds events into a Review; the decide functions check who may write
and what the rules allow, and return events or raise a DomainError naming the rule."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Literal
from uuid import UUID

from events import EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.calendar import add_months
from events.notification import FocusedReason
from events.review import (
    AccessEndReason,
    CareJudged,
    CauseOfDeathRecorded,
    ContactParty,
    ContactRecorded,
    ContactStatus,
    Contribution,
    FamilyInvolvementRecorded,
    GoodPracticeRecorded,
    LapseInCareRecorded,
    LearningRecorded,
    NoteAdded,
    PauseReason,
    PenPortraitWritten,
    RecommendationRecorded,
    RecordsReceived,
    RecordsRequested,
    ReviewCompleted,
    ReviewDeadlineApproaching,
    ReviewerAccessEnded,
    ReviewerAccessRestored,
    ReviewEscalatedToFocused,
    ReviewHandedOver,
    ReviewOverdue,
    ReviewPaused,
    ReviewPersonalDataDestroyed,
    ReviewRead,
    ReviewReopened,
    ReviewResumed,
    ReviewReturnedForRework,
    ReviewStarted,
    ReviewSubmittedForQA,
    SafeguardingReferralMade,
)
from events.sealing import Sealed
from infra.domain import DomainError as DomainError

Status = Literal["in_progress", "paused", "submitted", "completed"]


class NotTheAllocatedReviewer(DomainError):
    code = "not_allocated_reviewer"
    status = 403


class ReviewNotSubmitted(DomainError):
    """The QA panel reads a review once it has been submitted, never a first draft."""

    code = "review_not_submitted"
    status = 403


class PersonalDataWasDestroyed(DomainError):
    """The case's retention period ended: its key is destroyed and nothing more is recorded."""

    code = "personal_data_destroyed"
    status = 410


class ReviewIsPaused(DomainError):
    code = "review_paused"


class ReviewNotEditable(DomainError):
    code = "review_not_editable"


class ReviewIsSubmitted(ReviewNotEditable):
    """Waiting for the QA panel: nothing changes but the reviewer's notes until the panel decides."""

    code = "review_submitted"


class ReviewIsCompleted(ReviewNotEditable):
    """Approved by the QA panel: the record is final, notes included."""

    code = "review_completed"


class NotPaused(DomainError):
    code = "review_not_paused"


class ImpossibleDate(DomainError):
    """A date that cannot be true: in the future, or before the date it must follow. `field` is the
    request's field, `code` the rule."""

    status = 422

    def __init__(self, code: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.field = field

    def problem_extras(self) -> dict[str, Any]:
        """The one field refused, as a validation error names it."""
        return {"errors": [{"field": self.field, "type": self.code, "message": self.detail}]}


class ReviewIncomplete(DomainError):
    code = "review_incomplete"
    status = 422

    def __init__(self, missing: list[str]) -> None:
        super().__init__("the review cannot be submitted yet: missing " + ", ".join(missing))
        self.missing = missing

    def problem_extras(self) -> dict[str, Any]:
        """What the review still needs before it can be submitted."""
        return {"missing": self.missing}


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
    records_requested: frozenset[str] = frozenset()
    family_steps: frozenset[str] = frozenset()
    # The optional sections with something recorded (SECTIONS' keys).
    sections: frozenset[str] = frozenset()
    pause_reason: PauseReason | None = None
    submissions: int = 0
    # The QA panel's comments while the review is back with the reviewer; cleared on resubmission.
    returned_comments: Sealed | None = None
    # Why the case was reopened, while the reopened review is back with the reviewer; cleared on
    # resubmission.
    reopened_reason: Sealed | None = None
    # The date records were first asked for, per source (casefolded): they cannot arrive before.
    requested_on: tuple[tuple[str, date], ...] = ()
    # Why the reviewer's and senior reviewer's access ended with their allocation; None while they
    # have it. Only a new allocation gives it back (ReviewHandedOver, ReviewerAccessRestored).
    access_ended: AccessEndReason | None = None
    # The review service's key for the case was destroyed: its sealed texts open no more.
    personal_data_destroyed: bool = False

    def allocated_to(self, user_id: str) -> bool:
        """The person is the reviewer or the senior reviewer of the allocation in force now."""
        return self.access_ended is None and user_id in (self.reviewer_user_id, self.senior_reviewer_user_id)

    def records_requested_on(self, source: str) -> date | None:
        return next((on for s, on in self.requested_on if s == source.casefold()), None)

    @property
    def returned_by_qa(self) -> bool:
        return self.returned_comments is not None

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
        case ReviewHandedOver() | ReviewerAccessRestored():
            return replace(
                state,
                reviewer_user_id=event.reviewer_user_id,
                senior_reviewer_user_id=event.senior_reviewer_user_id,
                access_ended=None,
            )
        case ReviewerAccessEnded():
            return replace(state, access_ended=event.reason)
        case ReviewPersonalDataDestroyed():
            return replace(state, personal_data_destroyed=True)
        case ContactRecorded():
            return replace(state, contacts=(*state.contacts, event))
        case RecordsRequested():
            source = event.source.casefold()
            first = state.records_requested_on(source)
            return replace(
                state,
                records_requested=state.records_requested | {source},
                requested_on=state.requested_on
                if first is not None and first <= event.requested_on
                else (
                    *((s, on) for s, on in state.requested_on if s != source),
                    (source, event.requested_on),
                ),
            )
        case RecordsReceived():
            return replace(state, record_sources=state.record_sources | {event.source.casefold()})
        case PenPortraitWritten():
            return replace(state, pen_portrait=True)
        case CareJudged():
            return replace(state, care_judgements=state.care_judgements + 1)
        case FamilyInvolvementRecorded():
            return replace(
                state,
                family_steps=state.family_steps | {event.step},
                sections=state.sections | {"family_involvement"},
            )
        case (
            LapseInCareRecorded()
            | GoodPracticeRecorded()
            | LearningRecorded()
            | RecommendationRecorded()
            | CauseOfDeathRecorded()
            | SafeguardingReferralMade()
        ):
            return replace(state, sections=state.sections | {_SECTION_OF[type(event)]})
        case ReviewEscalatedToFocused():
            reasons = state.focused_reasons + tuple(
                r for r in event.reasons if r not in state.focused_reasons
            )
            return replace(state, review_type="focused", focused_reasons=reasons)
        case ReviewPaused():
            return replace(
                state,
                status="paused",
                pauses=(*state.pauses, (event.paused_on, None)),
                pause_reason=event.reason,
            )
        case ReviewResumed():
            start, _ = state.pauses[-1]
            return replace(
                state,
                status="in_progress",
                pauses=(*state.pauses[:-1], (start, event.resumed_on)),
                pause_reason=None,
            )
        case ReviewSubmittedForQA():
            return replace(
                state,
                status="submitted",
                submissions=state.submissions + 1,
                returned_comments=None,
                reopened_reason=None,
            )
        case ReviewReturnedForRework():
            return replace(state, status="in_progress", returned_comments=event.comments)
        case ReviewCompleted():
            return replace(state, status="completed")
        case ReviewReopened():
            return replace(state, status="in_progress", reopened_reason=event.reason)
        case ReviewDeadlineApproaching():
            return replace(state, milestones=state.milestones | {f"{event.months}_months"})
        case ReviewOverdue():
            return replace(state, milestones=state.milestones | {"overdue"})
    return state


_ENDED_BECAUSE: dict[str, str] = {
    "conflict_declared": "a conflict of interest was declared",
    "returned_to_queue": "the case went back to the queue",
    "review_completed": "the review was completed",
    "case_closed": "the case was closed",
}


def _not_allocated(review: Review, user_id: str) -> NotTheAllocatedReviewer:
    detail = f"case {review.case_id} is not allocated to {user_id}"
    if review.access_ended is not None and user_id in (
        review.reviewer_user_id,
        review.senior_reviewer_user_id,
    ):
        detail += f": the allocation ended ({_ENDED_BECAUSE[review.access_ended]})"
    return NotTheAllocatedReviewer(detail)


def decide_read(review: Review, user_id: str, role: str) -> list[EventPayload]:
    """Who reads the review: the LAC; the QA panel once it has been submitted; the reviewer and senior
    reviewer of the allocation in force now (not once it has ended). Every read by a person is
    recorded (review.ReviewRead), so that each look at a case is attributable."""
    if role == "qa_panel":
        if not review.submissions:
            raise ReviewNotSubmitted(f"the review of case {review.case_id} has not been submitted for QA yet")
    elif role != "lac" and not review.allocated_to(user_id):
        raise _not_allocated(review, user_id)
    return read_by(review.case_id, user_id, role)


def read_by(case_id: UUID, user_id: str, role: str) -> list[EventPayload]:
    """A read of the review's content by a person, whoever allowed it: what is recorded of it."""
    return [ReviewRead(case_id=case_id, reader=user_id, role=role)]


def decide_access_end(review: Review, reason: AccessEndReason) -> list[EventPayload]:
    """The allocation ended (a conflict declared, the case back in the queue for any reason, the review
    completed or the case closed): the reviewer and senior reviewer lose the review, reads included.
    Already ended (the CaseReturnedToQueue after a declared conflict, say): nothing more."""
    if review.access_ended is not None:
        return []
    return [
        ReviewerAccessEnded(
            case_id=review.case_id,
            reviewer_user_id=review.reviewer_user_id,
            senior_reviewer_user_id=review.senior_reviewer_user_id,
            reason=reason,
        )
    ]


def decide_allocation(
    review: Review, reviewer_user_id: str, senior_reviewer_user_id: str, restored: bool = False
) -> list[EventPayload]:
    """A new allocation of a case whose review has started (allocation.ReviewerAllocated, or
    AllocationRestored on reopening, `restored`): another reviewer takes the review over, with its
    whole history; the same pair whose access had ended has it again. The allocation in force told
    again (a redelivery) changes nothing."""
    same_pair = (review.reviewer_user_id, review.senior_reviewer_user_id) == (
        reviewer_user_id,
        senior_reviewer_user_id,
    )
    if same_pair and review.access_ended is None:
        return []
    if reviewer_user_id != review.reviewer_user_id:
        return [
            ReviewHandedOver(
                case_id=review.case_id,
                from_reviewer_user_id=review.reviewer_user_id,
                reviewer_user_id=reviewer_user_id,
                senior_reviewer_user_id=senior_reviewer_user_id,
            )
        ]
    return [
        ReviewerAccessRestored(
            case_id=review.case_id,
            reviewer_user_id=reviewer_user_id,
            senior_reviewer_user_id=senior_reviewer_user_id,
            because="allocation_restored" if restored else "allocated",
        )
    ]


def decide_start_or_hand_over(review: Review | None, allocated: ReviewerAllocated) -> list[EventPayload]:
    """An allocation (allocation.ReviewerAllocated) starts the review of the case's current type, with
    the deadline the allocation carries; a reallocation hands it over; the pair whose access had
    ended, allocated the case again, have it back (decide_allocation)."""
    if review is None:
        return [
            ReviewStarted(
                case_id=allocated.case_id,
                review_type=allocated.review_type,
                focused_reasons=allocated.focused_reasons,
                reviewer_user_id=allocated.reviewer_user_id,
                senior_reviewer_user_id=allocated.senior_reviewer_user_id,
                notified_on=allocated.notified_on,
                deadline=allocated.deadline,
            )
        ]
    return decide_allocation(review, allocated.reviewer_user_id, allocated.senior_reviewer_user_id)


def decide_restoring(review: Review, restored: AllocationRestored) -> list[EventPayload]:
    """The case was reopened and its ended allocation restored to the same pair
    (allocation.AllocationRestored): they have the review again (decide_allocation)."""
    return decide_allocation(
        review, restored.reviewer_user_id, restored.senior_reviewer_user_id, restored=True
    )


AllocationEnding = ConflictOfInterestDeclared | CaseReturnedToQueue | AllocationEnded


def access_end_reason(ending: AllocationEnding) -> AccessEndReason:
    """Why the allocation ended, as the review records it: whatever returned the case to the queue (a
    conflict, the reviewer's deactivation, a reopening that could not go back to them) ends it."""
    if isinstance(ending, ConflictOfInterestDeclared):
        return "conflict_declared"
    if isinstance(ending, CaseReturnedToQueue):
        return "returned_to_queue"
    return ending.reason


def decide_allocation_ended(review: Review, ending: AllocationEnding) -> list[EventPayload]:
    """The allocation ended, and the reviewers' access with it (decide_access_end)."""
    return decide_access_end(review, access_end_reason(ending))


def decide_focused_escalation(review: Review, reasons: Sequence[FocusedReason]) -> list[EventPayload]:
    """The notification service escalated the case to a focused review (a reason found after the
    review started: the family asked for one, say): the review records the reasons it did not have.
    The reasons say why (from a controlled list): no free text to seal. Already known: nothing."""
    new = [r for r in reasons if r not in review.focused_reasons]
    return [ReviewEscalatedToFocused(case_id=review.case_id, reasons=new)] if new else []


# The reviewer's records, as commands: the API builds one from a request, and the domain turns it into
# the event it records (sealing its free text with the `seal` it is given, the handler's, under the
# case's key); decide_record then checks who may write it and its dates against the review.
Sealer = Callable[[str], Sealed]

# Avoidable mortality (the ONS definition LeDeR uses): a death under this age from a cause that is
# preventable or treatable.
AVOIDABLE_BEFORE_AGE = 75
# How much of a lapse's words its escalation repeats.
ESCALATION_DETAIL_CHARS = 500


class IncompleteRecord(DomainError):
    """A record missing what its kind needs (a professional's role and organisation, a date for
    records): 422, the code naming what."""

    status = 422

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class RecordContact:
    party: ContactParty
    status: ContactStatus
    on: date
    role: str | None = None
    organisation: str | None = None


def contact_recorded(case_id: UUID, command: RecordContact) -> ContactRecorded:
    """A contact with a professional names their role and organisation."""
    if command.party == "professional" and not (command.role and command.organisation):
        raise IncompleteRecord(
            "professional_needs_role_and_organisation", "give the professional's role and organisation"
        )
    return ContactRecorded(
        case_id=case_id,
        party=command.party,
        status=command.status,
        on=command.on,
        role=command.role,
        organisation=command.organisation,
    )


@dataclass(frozen=True)
class RecordRecords:
    source: str
    requested_on: date | None = None
    received_on: date | None = None


def records_recorded(case_id: UUID, command: RecordRecords) -> list[EventPayload]:
    """Records asked for, received, or both (in that order): at least one of the two dates."""
    events: list[EventPayload] = []
    if command.requested_on:
        events.append(
            RecordsRequested(case_id=case_id, source=command.source, requested_on=command.requested_on)
        )
    if command.received_on:
        events.append(
            RecordsReceived(case_id=case_id, source=command.source, received_on=command.received_on)
        )
    if not events:
        raise IncompleteRecord("records_need_a_date", "give requested_on or received_on")
    return events


def pen_portrait_written(case_id: UUID, text: str, seal: Sealer) -> PenPortraitWritten:
    return PenPortraitWritten(case_id=case_id, text=seal(text))


@dataclass(frozen=True)
class RecordFamilyInvolvement:
    step: Literal["invited_to_comment", "comments_received", "final_copy_offered"]
    on: date
    comments: str | None = None


def family_involvement_recorded(
    case_id: UUID, command: RecordFamilyInvolvement, seal: Sealer
) -> FamilyInvolvementRecorded:
    return FamilyInvolvementRecorded(
        case_id=case_id,
        step=command.step,
        on=command.on,
        comments=seal(command.comments) if command.comments is not None else None,
    )


@dataclass(frozen=True)
class JudgeCare:
    phase: str
    grade: int
    rationale: str
    scale_version: str  # the grading scale in force (configuration, read at the edge)


def care_judged(case_id: UUID, command: JudgeCare, seal: Sealer) -> CareJudged:
    return CareJudged(
        case_id=case_id,
        phase=command.phase,
        grade=command.grade,
        scale_version=command.scale_version,
        rationale=seal(command.rationale),
    )


@dataclass(frozen=True)
class RecordLapse:
    what: str
    where: str
    organisation: str
    contribution: Contribution


def lapse_recorded(case_id: UUID, command: RecordLapse, seal: Sealer) -> tuple[LapseInCareRecorded, Sealed]:
    """The lapse, and what its escalation of an initial review would say (decide_record): the same
    words, sealed, after what it is."""
    lapse = LapseInCareRecorded(
        case_id=case_id,
        what=seal(command.what),
        where=seal(command.where),
        organisation=command.organisation,
        contribution=command.contribution,
    )
    return lapse, seal(f"lapse in care: {command.what}"[:ESCALATION_DETAIL_CHARS])


@dataclass(frozen=True)
class RecordThemed:
    text: str
    themes: list[str]
    themes_version: str  # the version of the learning themes the API checked them against


def good_practice_recorded(case_id: UUID, command: RecordThemed, seal: Sealer) -> GoodPracticeRecorded:
    return GoodPracticeRecorded(
        case_id=case_id, text=seal(command.text), themes=command.themes, themes_version=command.themes_version
    )


def learning_recorded(case_id: UUID, command: RecordThemed, seal: Sealer) -> LearningRecorded:
    return LearningRecorded(
        case_id=case_id, text=seal(command.text), themes=command.themes, themes_version=command.themes_version
    )


def recommendation_recorded(
    case_id: UUID, what: str, organisation: str, seal: Sealer
) -> RecommendationRecorded:
    return RecommendationRecorded(case_id=case_id, what=seal(what), organisation=organisation)


@dataclass(frozen=True)
class RecordCauseOfDeath:
    cause: str
    preventable_or_treatable: bool
    age_at_death: int


def avoidable(age_at_death: int, preventable_or_treatable: bool) -> bool:
    """Avoidable: under AVOIDABLE_BEFORE_AGE and from a preventable or treatable cause."""
    return age_at_death < AVOIDABLE_BEFORE_AGE and preventable_or_treatable


def cause_of_death_recorded(case_id: UUID, command: RecordCauseOfDeath, seal: Sealer) -> CauseOfDeathRecorded:
    return CauseOfDeathRecorded(
        case_id=case_id,
        cause=seal(command.cause),
        preventable_or_treatable=command.preventable_or_treatable,
        avoidable=avoidable(command.age_at_death, command.preventable_or_treatable),
    )


@dataclass(frozen=True)
class Refer:
    to: str
    on: date
    why: str


def referral_made(case_id: UUID, command: Refer, seal: Sealer) -> SafeguardingReferralMade:
    return SafeguardingReferralMade(
        case_id=case_id, to=seal(command.to), on=command.on, why=seal(command.why)
    )


def note_added(case_id: UUID, text: str, seal: Sealer) -> NoteAdded:
    return NoteAdded(case_id=case_id, text=seal(text))


def authorise_write(review: Review, user_id: str, notes_only: bool = False) -> None:
    """Only the allocated reviewer writes, while the allocation lasts. A paused review takes notes
    only; a submitted review takes notes only, until the QA panel returns it (or approves it); a
    completed review takes nothing, notes included, unless the case is reopened (409 review_paused /
    review_submitted / review_completed)."""
    if user_id != review.reviewer_user_id or review.access_ended is not None:
        raise _not_allocated(review, user_id)
    _check_not_destroyed(review)
    if review.status == "paused" and not notes_only:
        raise ReviewIsPaused(f"the review of case {review.case_id} is paused: only notes can be added")
    # A submitted review waits for the QA panel: like a paused one it takes only the reviewer's notes
    # (what happened meanwhile). A completed review is the record the panel approved: nothing more.
    if review.status == "submitted" and not notes_only:
        raise ReviewIsSubmitted(
            f"the review of case {review.case_id} is submitted for QA: only notes can be added"
        )
    if review.status == "completed":
        raise ReviewIsCompleted(
            f"the review of case {review.case_id} is completed: nothing more can be added"
        )


# The dates a reviewer gives, by the kind of record: (field, what it is) for the rule's message.
_DATED: dict[type[EventPayload], tuple[str, str]] = {
    ContactRecorded: ("on", "a contact"),
    RecordsRequested: ("requested_on", "records requested"),
    RecordsReceived: ("received_on", "records received"),
    FamilyInvolvementRecorded: ("on", "the family's involvement"),
    SafeguardingReferralMade: ("on", "a safeguarding referral"),
}


def check_dates(review: Review, payload: EventPayload, today: date | None) -> None:
    """A record's date cannot be after today (`today`: the service's clock; None checks only the
    order of dates), and records cannot be received before they were asked for from that source."""
    dated = _DATED.get(type(payload))
    if dated is None:
        return
    field, what = dated
    on: date = getattr(payload, field)
    if today is not None and on > today:
        raise ImpossibleDate(
            "date_in_future", field, f"{field}: {what} cannot be dated after today ({on} is after {today})"
        )
    if isinstance(payload, RecordsReceived):
        asked = review.records_requested_on(payload.source)
        if asked is not None and payload.received_on < asked:
            raise ImpossibleDate(
                "received_before_requested",
                field,
                f"received_on: records from {payload.source} cannot be received ({payload.received_on})"
                f" before they were requested ({asked})",
            )


def decide_record(
    review: Review,
    user_id: str,
    payload: EventPayload,
    today: date | None = None,
    escalation_detail: Sealed | None = None,
) -> list[EventPayload]:
    """Record one piece of the review, its date checked against `today` and the review's other dates;
    a lapse in care in an initial review escalates it, saying why (`escalation_detail`, sealed by the
    caller; the lapse's own text if none is given)."""
    authorise_write(review, user_id, notes_only=isinstance(payload, NoteAdded))
    check_dates(review, payload, today)
    events = [payload]
    if isinstance(payload, LapseInCareRecorded) and review.review_type == "initial":
        events.append(
            ReviewEscalatedToFocused(
                case_id=review.case_id,
                reasons=["lapse_in_care"],
                detail=escalation_detail or payload.what,
            )
        )
    return events


def decide_escalation_for_learning(
    review: Review, user_id: str, role: str, detail: Sealed
) -> list[EventPayload]:
    if role != "lac":
        authorise_write(review, user_id)
    elif review.status == "completed":
        raise ReviewIsCompleted(f"the review of case {review.case_id} is completed: it cannot be escalated")
    _check_not_destroyed(review)
    if review.review_type == "focused" and "learning" in review.focused_reasons:
        return []
    return [ReviewEscalatedToFocused(case_id=review.case_id, reasons=["learning"], detail=detail)]


def decide_pause(review: Review, user_id: str, reason: PauseReason, today: date) -> list[EventPayload]:
    authorise_write(review, user_id)
    return [ReviewPaused(case_id=review.case_id, reason=reason, paused_on=today)]


def decide_resume(review: Review, user_id: str, today: date) -> list[EventPayload]:
    if user_id != review.reviewer_user_id or review.access_ended is not None:
        raise _not_allocated(review, user_id)
    if review.status != "paused":
        raise NotPaused(f"the review of case {review.case_id} is not paused")
    return [ReviewResumed(case_id=review.case_id, resumed_on=today)]


ItemStatus = Literal["not_started", "in_progress", "done"]


@dataclass(frozen=True)
class ChecklistItem:
    """One line of the review's task list. A required item not done is missing for submission."""

    key: str
    label: str
    status: ItemStatus
    required: bool
    hint: str


_SECTION_OF: dict[type[EventPayload], str] = {
    LapseInCareRecorded: "lapses_in_care",
    GoodPracticeRecorded: "good_practice",
    LearningRecorded: "learning",
    RecommendationRecorded: "recommendations",
    CauseOfDeathRecorded: "cause_of_death",
    SafeguardingReferralMade: "safeguarding_referrals",
}
# The optional sections, in the order the report shows them: (key, label, hint).
SECTIONS = (
    ("learning", "Learning", "What others can learn from this death, tagged with themes"),
    ("good_practice", "Good practice", "Care that went well, tagged with themes"),
    ("lapses_in_care", "Lapses in care", "Any lapse in care (an initial review becomes focused)"),
    ("recommendations", "Recommendations", "What an organisation should change"),
    ("cause_of_death", "Cause of death", "The cause of death and whether it was preventable or treatable"),
    ("safeguarding_referrals", "Safeguarding referrals", "Any safeguarding referral you made"),
    (
        "family_involvement",
        "Family involvement in the report",
        "Invite the family to comment on the draft and offer them the final copy",
    ),
)


def checklist(review: Review) -> list[ChecklistItem]:
    """The review as a task list: the national minimum, a focused review's extras, then the optional
    sections. The one home of the submission rule: what is required and not done is missing."""

    def contacts(party: str, statuses: tuple[str, ...] = ("completed",)) -> list[ContactRecorded]:
        return [c for c in review.contacts if c.party == party and c.status in statuses]

    def status(done: bool, started: bool = False) -> ItemStatus:
        return "done" if done else "in_progress" if started else "not_started"

    not_wanted = bool(contacts("family", ("not_wanted",)))
    gp = contacts("gp") or contacts("gp_records")
    gp_started = bool(
        contacts("gp", ("offered", "declined")) + contacts("gp_records", ("offered", "declined"))
    )
    professionals = contacts("professional")
    items = [
        ChecklistItem(
            "family_or_carer_contact",
            "Family or carer contact",
            status(not_wanted or bool(contacts("family", ("offered", "declined", "completed")))),
            True,
            "The person did not want their family involved"
            if not_wanted
            else "Offer the family or carers a conversation, or record that the person did not want it",
        ),
        ChecklistItem(
            "gp_contact_or_gp_records",
            "GP contact or GP records",
            status(bool(gp), gp_started or bool(review.records_requested)),
            True,
            "Speak with the GP or see the GP records",
        ),
        ChecklistItem(
            "other_professional_contact",
            "Contact with another professional",
            status(bool(professionals), bool(contacts("professional", ("offered", "declined")))),
            True,
            "Speak with another professional who knew the person, giving their role and organisation",
        ),
        ChecklistItem(
            "pen_portrait",
            "Pen portrait",
            status(review.pen_portrait),
            True,
            "Describe the person: who they were and what mattered to them",
        ),
        ChecklistItem(
            "quality_of_care_judgement",
            "Quality of care judgement",
            status(review.care_judgements > 0),
            True,
            "Grade the care given in at least one phase of care",
        ),
    ]
    if review.review_type == "focused":
        agencies = {(p.organisation or "").casefold() for p in professionals if p.organisation}
        items += [
            ChecklistItem(
                "multi_agency_contacts",
                "Contacts from two agencies",
                status(len(agencies) >= 2, len(agencies) == 1),
                True,
                "A focused review needs completed contacts with professionals of at least two organisations",
            ),
            ChecklistItem(
                "records_from_two_sources",
                "Records from two sources",
                status(
                    len(review.record_sources) >= 2, bool(review.record_sources or review.records_requested)
                ),
                True,
                "A focused review needs records received from at least two sources",
            ),
        ]
    for key, label, hint in SECTIONS:
        if key == "family_involvement":
            state = status("final_copy_offered" in review.family_steps, bool(review.family_steps))
        else:
            state = status(key in review.sections)
        items.append(ChecklistItem(key, label, state, False, hint))
    return items


def missing_for_submission(review: Review) -> list[str]:
    """Everything the national minimum (and, for a focused review, more) still lacks."""
    return [item.key for item in checklist(review) if item.required and item.status != "done"]


def decide_submission(review: Review, user_id: str, today: date) -> list[EventPayload]:
    authorise_write(review, user_id)
    missing = missing_for_submission(review)
    if missing:
        raise ReviewIncomplete(missing)
    return [ReviewSubmittedForQA(case_id=review.case_id, submitted_on=today)]


def decide_qa_outcome(
    review: Review, approved: bool, comments: Sealed | None, today: date
) -> list[EventPayload]:
    """The panel's decision; a return carries its comments (sealed by the caller)."""
    if review.status != "submitted":
        raise ReviewNotEditable(f"the review of case {review.case_id} is {review.status}, not awaiting QA")
    if approved:
        return [ReviewCompleted(case_id=review.case_id, completed_on=today)]
    if comments is None:
        raise ValueError("a return for rework carries the panel's comments")
    return [ReviewReturnedForRework(case_id=review.case_id, comments=comments)]


def decide_reopen(review: Review, reason: Sealed, today: date) -> list[EventPayload]:
    """The case was reopened (governance.CaseReopened): a completed review goes back to its reviewer,
    in progress. Any other state changes nothing (the review is already open: a redelivery)."""
    if review.status != "completed":
        return []
    return [ReviewReopened(case_id=review.case_id, reason=reason, reopened_on=today)]


def _check_not_destroyed(review: Review) -> None:
    if review.personal_data_destroyed:
        raise PersonalDataWasDestroyed(
            f"the personal data of case {review.case_id} was destroyed at the end of its retention period"
        )


def decide_personal_data_destruction(review: Review) -> list[EventPayload]:
    """The case's retention period ended: the review's key goes, with this event. Once only."""
    if review.personal_data_destroyed:
        return []
    return [ReviewPersonalDataDestroyed(case_id=review.case_id, reason="retention_period_ended")]


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
