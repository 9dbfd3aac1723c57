"""The allocation domain: reviewers, the queue, and the rules an allocation must keep.

Plain Python, no I/O: evolve folds events into state; decide turns a command and state into events
or refuses, naming every rule broken. Configuration (the conflict rule) arrives as an argument,
read from the environment at the service's edge (services/allocation/settings.py), never here."""

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal
from uuid import UUID

from events import EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseAwaitingAllocation,
    CasePersonalDataDestroyed,
    CaseReallocated,
    CaseReturnedToQueue,
    CaseReviewTypeChanged,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
    ReviewerConflictRecorded,
    ReviewerDeactivated,
    ReviewerReactivated,
    ReviewerRegistered,
    ReviewerTrainingRecorded,
)
from events.calendar import add_months
from events.notification import CaseFacts, CaseOpened, FocusedReason, ReviewType
from events.sealing import Sealed
from infra.domain import DomainError as DomainError

# Reviews should be completed within six months of notification: the deadline every allocation of the
# case carries (CaseAwaitingAllocation, ReviewerAllocated), and so the review's and every page's.
REVIEW_DEADLINE_MONTHS = 6

# How long training stays valid: a reviewer whose training is older cannot take new cases (refreshed
# every year, LEDER.md). Read at each call, so this is the one place the rule lives.
TRAINING_VALID_MONTHS = 12
# The most cases a senior reviewer supports at once (peer supervision). Supporting counts towards a
# senior's load with this capacity of its own, apart from the capacity of cases they review. The
# national programme publishes no figure.
SUPPORT_CAPACITY = 25

# The order in which refusals are reported; the first broken rule is the problem's code.
RULES = (
    "case_not_waiting",
    "reviewer_inactive",
    "training_missing",
    "training_expired",
    "conflict_of_interest",
    "at_capacity",
    "same_person",
    "not_senior",
)


# What each rule is called on a page, beside the detail that names the person.
RULE_NAMES = {
    "case_not_waiting": "the case is not waiting for allocation",
    "eligibility_to_confirm": "the case's eligibility is still to be confirmed",
    "not_eligible": "the case is not eligible for a LeDeR review",
    "case_not_allocated": "the case is not allocated",
    "reviewer_inactive": "inactive",
    "training_missing": "no training recorded",
    "training_expired": "training expired",
    "conflict_of_interest": "conflict of interest",
    "at_capacity": "at capacity",
    "same_person": "the reviewer cannot be their own senior reviewer",
    "not_senior": "not a senior reviewer",
}


def rule_name(code: str) -> str:
    """What the rule `code` is called on a page. Training's names its validity as it is read now
    (TRAINING_VALID_MONTHS), so changing that constant changes the page too."""
    if code == "training_expired":
        return f"training expired (valid for {TRAINING_VALID_MONTHS} months)"
    return RULE_NAMES.get(code, code)


class AllocationRefused(DomainError):
    def __init__(self, violations: list["Violation"]) -> None:
        super().__init__("; ".join(v.detail for v in violations))
        self.violations = violations
        self.code = violations[0].code

    def problem_extras(self) -> dict[str, Any]:
        """Each rule the choice breaks, by its code and its name in words."""
        return {
            "violations": [
                {"code": v.code, "rule": rule_name(v.code), "detail": v.detail} for v in self.violations
            ]
        }


NotOpenStatus = Literal["eligibility_to_confirm", "not_eligible"]


class CaseNotOpen(DomainError):
    """The notification service has the case but has not opened it, so it is not in the queue: its
    eligibility is still to be confirmed, or it is not eligible. The code names which."""

    def __init__(self, case_id: UUID, status: NotOpenStatus) -> None:
        why = {
            "eligibility_to_confirm": "its eligibility is still to be confirmed by the LAC",
            "not_eligible": "it is not eligible for a LeDeR review",
        }[status]
        super().__init__(f"case {case_id} cannot be allocated: {why}")
        self.code = status


class NotAllocatedToCaller(DomainError):
    code = "not_allocated_to_caller"
    status = 403


class ReviewerNotSenior(DomainError):
    code = "not_senior"


@dataclass(frozen=True)
class Violation:
    code: str
    detail: str


# The national conflict rule was not published: `employing_organisation` (a reviewer whose employer
# was involved in the person's care is conflicted) or `standing_only` (declared and recorded conflicts
# only). Chosen by configuration (settings.conflict_rule) and passed to every rule that reads it.
ConflictRule = str
DEFAULT_CONFLICT_RULE: ConflictRule = "employing_organisation"


def review_deadline(notified_on: date) -> date:
    """Reviews should be completed within six months of notification (REVIEW_DEADLINE_MONTHS)."""
    return add_months(notified_on, REVIEW_DEADLINE_MONTHS)


def training_expiry(trained_on: date, valid_months: int | None = None) -> date:
    """The last day training completed on `trained_on` is valid: `valid_months` (by default
    TRAINING_VALID_MONTHS) later, the month's last day where it has no such day (29 February + 12
    months = 28 February)."""
    return add_months(trained_on, TRAINING_VALID_MONTHS if valid_months is None else valid_months)


@dataclass(frozen=True)
class Reviewer:
    reviewer_id: UUID
    user_id: str
    name: str
    organisations: tuple[str, ...]
    senior: bool
    capacity: int
    active: bool = True
    trained_on: date | None = None
    conflicts: tuple[tuple[str, str], ...] = ()

    def training_expires_on(self) -> date | None:
        """The last day the training is valid (see training_expiry)."""
        return None if self.trained_on is None else training_expiry(self.trained_on)

    def trained_on_day(self, day: date) -> bool:
        expires = self.training_expires_on()
        return expires is not None and self.trained_on is not None and self.trained_on <= day <= expires


def evolve_reviewer(state: Reviewer | None, event: EventPayload) -> Reviewer | None:
    match event:
        case ReviewerRegistered():
            return Reviewer(
                event.reviewer_id,
                event.user_id,
                event.name,
                tuple(event.organisations),
                event.senior,
                event.capacity,
            )
        case ReviewerTrainingRecorded() if state is not None:
            latest = max(filter(None, (state.trained_on, event.completed_on)))
            return replace(state, trained_on=latest)
        case ReviewerConflictRecorded() if state is not None:
            return replace(state, conflicts=(*state.conflicts, (event.kind, event.name)))
        case ReviewerDeactivated() if state is not None:
            return replace(state, active=False)
        case ReviewerReactivated() if state is not None:
            return replace(state, active=True)
    return state


CaseStatus = Literal["waiting", "allocated", "ended"]

# Seals a free text about the case under the allocation service's key for it (given by the handler,
# so the domain stays pure): every reason an event gives is sealed, generated or typed.
Sealer = Callable[[str], Sealed]


@dataclass(frozen=True)
class CaseAllocation:
    case_id: UUID
    status: CaseStatus
    notified_on: date
    deadline: date
    review_type: ReviewType
    organisations_involved: tuple[str, ...]
    focused_reasons: tuple[FocusedReason, ...] = ()
    reviewer_id: UUID | None = None
    senior_reviewer_id: UUID | None = None
    declared_conflicts: frozenset[UUID] = field(default_factory=frozenset)
    # Reopened since it first closed (its allocation restored, or the case queued again): from then on
    # only the case's closure ends an allocation (see decide_end).
    reopened: bool = False
    # The case's retention ended: the service's key for it, and every reason sealed under it, is gone.
    personal_data_destroyed: bool = False


def evolve_case(state: CaseAllocation | None, event: EventPayload) -> CaseAllocation | None:
    match event:
        case CaseAwaitingAllocation():
            return CaseAllocation(
                event.case_id,
                "waiting",
                event.notified_on,
                event.deadline,
                event.review_type,
                tuple(event.organisations_involved),
                tuple(event.focused_reasons),
            )
        case CaseReviewTypeChanged() if state is not None:
            return replace(state, review_type=event.review_type, focused_reasons=tuple(event.focused_reasons))
        case ReviewerAllocated() if state is not None:
            return replace(
                state,
                status="allocated",
                reviewer_id=event.reviewer_id,
                senior_reviewer_id=event.senior_reviewer_id,
            )
        case ConflictOfInterestDeclared() if state is not None:
            return replace(state, declared_conflicts=state.declared_conflicts | {event.reviewer_id})
        case CaseReturnedToQueue() if state is not None:
            reopened = state.reopened or state.status == "ended"  # an ended allocation: a reopening
            return replace(
                state, status="waiting", reviewer_id=None, senior_reviewer_id=None, reopened=reopened
            )
        case AllocationEnded() if state is not None:
            return replace(state, status="ended")
        case CasePersonalDataDestroyed() if state is not None:
            return replace(state, personal_data_destroyed=True)
        case AllocationRestored() if state is not None:
            return replace(
                state,
                status="allocated",
                reviewer_id=event.reviewer_id,
                senior_reviewer_id=event.senior_reviewer_id,
                reopened=True,
            )
    return state  # CaseReallocated: the ReviewerAllocated that follows it moves the case


def organisation_key(name: str) -> str:
    """An organisation's name as matched for conflicts of interest: case- and accent-insensitive,
    spacing folded ("St Mary's  Hospital" and "st mary's hospital" are one organisation)."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


def _same_organisation(a: str, b: str) -> bool:
    return organisation_key(a) == organisation_key(b)


def organisations_involved(facts: CaseFacts) -> list[str]:
    """Every organisation involved in the person's care, for conflicts of interest: those the
    notification lists, the place of death, and the organisation that notified the death (a GP
    practice notifies the deaths of its own patients). Each once, in that order."""
    named = [
        *facts.organisations_involved,
        *([facts.place_of_death_organisation] if facts.place_of_death_organisation else []),
        facts.notifier_organisation,
    ]
    involved: list[str] = []
    keys: set[str] = set()  # each name's key made once, not once for every name it is compared with
    for organisation in named:
        key = organisation_key(organisation)
        if key not in keys:
            keys.add(key)
            involved.append(organisation)
    return involved


def conflicts_with(case: CaseAllocation, reviewer: Reviewer, rule: str) -> list[str]:
    """Why `reviewer` may not touch `case`, if they may not."""
    reasons = []
    if reviewer.reviewer_id in case.declared_conflicts:
        reasons.append(f"{reviewer.name} declared a conflict of interest on this case")
    for kind, name in reviewer.conflicts:
        if kind == "organisation" and any(_same_organisation(name, o) for o in case.organisations_involved):
            reasons.append(
                f"{reviewer.name} has a standing conflict with {name}, involved in the person's care"
            )
    if rule == "employing_organisation":
        for employer in reviewer.organisations:
            if any(_same_organisation(employer, o) for o in case.organisations_involved):
                reasons.append(f"{reviewer.name}'s employer {employer} was involved in the person's care")
    return reasons


def _in_rule_order(violations: list[Violation]) -> list[Violation]:
    return sorted(violations, key=lambda v: RULES.index(v.code))


def training_violation(reviewer: Reviewer, today: date, who: str | None = None) -> Violation | None:
    """None if `reviewer` is trained on `today`; else whether their training is missing or expired."""
    if reviewer.trained_on_day(today):
        return None
    who = who or reviewer.name
    expired = reviewer.training_expires_on()
    if expired is None:
        return Violation("training_missing", f"{who} has no training recorded")
    if reviewer.trained_on is not None and reviewer.trained_on > today:
        return Violation("training_missing", f"{who}'s training is recorded from {reviewer.trained_on}")
    return Violation("training_expired", f"{who}'s training expired on {expired}")


def availability(reviewer: Reviewer, load: int, today: date) -> list[Violation]:
    """Why `reviewer` cannot take any case as its reviewer today, whatever the case (empty: they can)."""
    found = []
    if not reviewer.active:
        found.append(Violation("reviewer_inactive", f"{reviewer.name} is inactive"))
    training = training_violation(reviewer, today)
    if training is not None:
        found.append(training)
    if load >= reviewer.capacity:
        found.append(
            Violation("at_capacity", f"{reviewer.name} has {load} active cases, capacity {reviewer.capacity}")
        )
    return found


def exclusions(
    case: CaseAllocation, reviewer: Reviewer, load: int, today: date, rule: str
) -> list[Violation]:
    """Why `reviewer` cannot take `case` as its reviewer today (empty: they can)."""
    found = availability(reviewer, load, today)
    found += [Violation("conflict_of_interest", reason) for reason in conflicts_with(case, reviewer, rule)]
    return _in_rule_order(found)


def senior_exclusions(
    case: CaseAllocation,
    senior: Reviewer,
    today: date,
    rule: str,
    supporting: int = 0,
    support_capacity: int | None = None,
) -> list[Violation]:
    """Why `senior` cannot support `case` as its senior reviewer today (empty: they can), given the
    cases they `supporting` now (out of `support_capacity`, by default SUPPORT_CAPACITY)."""
    who = f"{senior.name} (senior reviewer)"
    capacity = SUPPORT_CAPACITY if support_capacity is None else support_capacity
    found = []
    if not senior.active:
        found.append(Violation("reviewer_inactive", f"{who} is inactive"))
    training = training_violation(senior, today, who)
    if training is not None:
        found.append(training)
    for reason in conflicts_with(case, senior, rule):
        found.append(Violation("conflict_of_interest", f"senior reviewer: {reason}"))
    if supporting >= capacity:
        found.append(Violation("at_capacity", f"{who} supports {supporting} cases, capacity {capacity}"))
    if not senior.senior:
        found.append(Violation("not_senior", f"{senior.name} is not a senior reviewer"))
    return _in_rule_order(found)


def same_person(reviewer: Reviewer, senior: Reviewer) -> bool:
    return reviewer.reviewer_id == senior.reviewer_id or reviewer.user_id == senior.user_id


def decide_allocation(
    case: CaseAllocation,
    reviewer: Reviewer,
    senior: Reviewer,
    reviewer_load: int,
    today: date,
    rule: str,
    senior_supporting: int = 0,
) -> list[EventPayload]:
    """`senior_supporting`: the other cases `senior` supports now."""
    violations = []
    if case.status != "waiting":
        violations.append(Violation("case_not_waiting", f"case {case.case_id} is {case.status}, not waiting"))
    violations += exclusions(case, reviewer, reviewer_load, today, rule)
    if same_person(reviewer, senior):
        violations.append(
            Violation("same_person", "the reviewer and the senior reviewer are the same person")
        )
        senior_broken = [v for v in senior_exclusions(case, senior, today, rule) if v.code == "not_senior"]
    else:
        senior_broken = senior_exclusions(case, senior, today, rule, senior_supporting)
    violations += senior_broken
    if violations:
        raise AllocationRefused(_in_rule_order(violations))
    return [
        ReviewerAllocated(
            case_id=case.case_id,
            reviewer_id=reviewer.reviewer_id,
            reviewer_user_id=reviewer.user_id,
            senior_reviewer_id=senior.reviewer_id,
            senior_reviewer_user_id=senior.user_id,
            allocated_on=today,
            notified_on=case.notified_on,
            deadline=case.deadline,
            review_type=case.review_type,
            focused_reasons=list(case.focused_reasons),
        )
    ]


def decide_reallocation(
    case: CaseAllocation,
    reviewer: Reviewer,
    senior: Reviewer,
    reviewer_load: int,
    today: date,
    rule: str,
    reason: str,
    senior_supporting: int = 0,
    *,
    seal: Sealer,
) -> list[EventPayload]:
    if case.status != "allocated" or case.reviewer_id is None:
        raise AllocationRefused([Violation("case_not_allocated", f"case {case.case_id} is {case.status}")])
    waiting = replace(case, status="waiting")
    allocated = decide_allocation(waiting, reviewer, senior, reviewer_load, today, rule, senior_supporting)
    moved = CaseReallocated(
        case_id=case.case_id,
        from_reviewer_id=case.reviewer_id,
        to_reviewer_id=reviewer.reviewer_id,
        reason=seal(reason),
    )
    return [moved, *allocated]


def decide_conflict_declaration(
    case: CaseAllocation, reviewer: Reviewer, reason: str, *, seal: Sealer
) -> list[EventPayload]:
    if case.status != "allocated" or case.reviewer_id != reviewer.reviewer_id:
        raise NotAllocatedToCaller(f"case {case.case_id} is not allocated to {reviewer.name}")
    return [
        ConflictOfInterestDeclared(
            case_id=case.case_id, reviewer_id=reviewer.reviewer_id, reason=seal(reason)
        ),
        CaseReturnedToQueue(
            case_id=case.case_id,
            reviewer_id=reviewer.reviewer_id,
            reason=seal("the reviewer declared a conflict of interest"),
        ),
    ]


def decide_deactivation(reviewer: Reviewer, reason: str) -> list[EventPayload]:
    """The LAC deactivates a reviewer (they left, or their access is withdrawn). Told again, nothing."""
    return [ReviewerDeactivated(reviewer_id=reviewer.reviewer_id, reason=reason)] if reviewer.active else []


def decide_return_on_deactivation(
    case: CaseAllocation, reviewer: Reviewer, reason: str, *, seal: Sealer
) -> list[EventPayload]:
    """A deactivated reviewer holds no case: every allocation naming them, as its reviewer or as its
    supporting senior reviewer, ends, and the case goes back to the front of the queue (its reviewer's
    caseload drops), so that their access to it ends everywhere and the LAC allocates it again. An
    allocation that has already ended (review completed, case closed) is not theirs to hand back: a
    reopening checks again that its reviewers are active (decide_reopening)."""
    if case.status != "allocated" or case.reviewer_id is None:
        return []
    if reviewer.reviewer_id == case.reviewer_id:
        role = "reviewer"
    elif reviewer.reviewer_id == case.senior_reviewer_id:
        role = "senior reviewer"
    else:
        return []
    return [
        CaseReturnedToQueue(
            case_id=case.case_id,
            reviewer_id=case.reviewer_id,
            reason=seal(f"the {role} {reviewer.name} was deactivated ({reason})"),
        )
    ]


def decide_end(
    case: CaseAllocation, reason: Literal["review_completed", "case_closed"]
) -> list[EventPayload]:
    """The review was completed (review.ReviewCompleted) or the case closed (governance.CaseClosed),
    whichever the service hears first: the QA panel's approval brings both. Once a case has been
    reopened, only its closure ends the allocation: the completion of the review before the reopening
    may arrive after it (from another topic) and must not end the allocation the reopening restored,
    and each later approval closes the case again."""
    if case.status == "ended" or (reason == "review_completed" and case.reopened):
        return []
    return [AllocationEnded(case_id=case.case_id, reviewer_id=case.reviewer_id, reason=reason)]


def allocation_to_restore(case: CaseAllocation) -> bool:
    """The case has an ended allocation a reopening may restore (decide_reopening): not one that
    has not ended (told again), nor one never allocated. The handler loads the pair only then."""
    return case.status == "ended" and case.reviewer_id is not None and case.senior_reviewer_id is not None


def decide_reopening(
    case: CaseAllocation,
    reviewer: Reviewer,
    senior: Reviewer,
    reviewer_load: int,
    today: date,
    rule: str,
    reason: str,
    senior_supporting: int = 0,
    *,
    seal: Sealer,
) -> list[EventPayload]:
    """The case was reopened (governance.CaseReopened, `reason`). Its allocation, ended when the case
    closed, is restored if `reviewer` and `senior` (who had it) can still take it by the rules of an
    allocation: active, trained today, no conflict of interest, room in their caseload
    (`reviewer_load`, the cases they have now) and in the senior reviewer's support
    (`senior_supporting`). Otherwise the case goes back to the front of the queue, saying why. A case
    whose allocation has not ended (told again) changes nothing."""
    if not allocation_to_restore(case):
        return []
    broken = exclusions(case, reviewer, reviewer_load, today, rule)
    broken += senior_exclusions(case, senior, today, rule, senior_supporting)
    if broken:
        why = "; ".join(v.detail for v in _in_rule_order(broken))
        return [
            CaseReturnedToQueue(
                case_id=case.case_id,
                reviewer_id=case.reviewer_id,
                reason=seal(
                    f"the case was reopened ({reason}) and cannot go back to {reviewer.name} and"
                    f" {senior.name}: {why}"
                ),
            )
        ]
    return [
        AllocationRestored(
            case_id=case.case_id,
            reviewer_id=reviewer.reviewer_id,
            reviewer_user_id=reviewer.user_id,
            senior_reviewer_id=senior.reviewer_id,
            senior_reviewer_user_id=senior.user_id,
            restored_on=today,
            reason=seal(reason),
        )
    ]


def decide_review_type(
    case: CaseAllocation, review_type: ReviewType, reasons: Sequence[FocusedReason]
) -> list[EventPayload]:
    return [
        CaseReviewTypeChanged(case_id=case.case_id, review_type=review_type, focused_reasons=list(reasons))
    ]


@dataclass(frozen=True)
class Suggestion:
    reviewer: Reviewer
    load: int
    last_allocated_on: date | None
    excluded_because: list[Violation]
    supporting: int = 0  # for a senior reviewer, the cases they support now


def reviewer_load(suggestion: Suggestion, support_capacity: int | None = None) -> float:
    """How full a reviewer is, relative to capacity; a senior reviewer's support of other cases counts
    too, against its own capacity (SUPPORT_CAPACITY)."""
    load = suggestion.load / suggestion.reviewer.capacity
    if suggestion.reviewer.senior:
        load += suggestion.supporting / (SUPPORT_CAPACITY if support_capacity is None else support_capacity)
    return load


def rank(suggestions: list[Suggestion]) -> list[Suggestion]:
    """Eligible first; reviewers who are not senior before senior reviewers (a senior reviewer's own
    caseload is small because they support others: they review when no one else can); then lowest
    load relative to capacity; then longest since their last allocation."""
    return sorted(
        suggestions,
        key=lambda s: (
            bool(s.excluded_because),
            s.reviewer.senior,
            reviewer_load(s),
            s.last_allocated_on or date.min,
            s.reviewer.name,
        ),
    )


@dataclass(frozen=True)
class SeniorCandidate:
    reviewer: Reviewer
    supporting: int  # cases they currently support as senior reviewer
    last_supported_on: date | None
    excluded_because: list[Violation]


def rank_seniors(candidates: list[SeniorCandidate]) -> list[SeniorCandidate]:
    """Eligible first; then fewest cases currently supported; then longest since they last supported."""
    return sorted(
        candidates,
        key=lambda c: (
            bool(c.excluded_because),
            c.supporting,
            c.last_supported_on or date.min,
            c.reviewer.name,
        ),
    )


@dataclass(frozen=True)
class Pair:
    reviewer: Suggestion
    senior: SeniorCandidate


MAX_PAIRS = 5


def suggest_pairs(
    reviewers: list[Suggestion], seniors: list[SeniorCandidate], limit: int = MAX_PAIRS
) -> list[Pair]:
    """Up to `limit` (reviewer, senior reviewer) pairs the LAC can allocate as they stand: each
    eligible reviewer who is not senior, in rank order, with the best senior; then, while there is
    room, each with their next best senior. Senior reviewers are offered as reviewers only after every
    pair with a reviewer who is not senior. Never one person in both roles."""
    ranked = [r for r in rank(reviewers) if not r.excluded_because]
    supporters = [s for s in rank_seniors(seniors) if not s.excluded_because]
    pairs: list[Pair] = []
    for group in ([r for r in ranked if not r.reviewer.senior], [r for r in ranked if r.reviewer.senior]):
        options = {
            r.reviewer.reviewer_id: [s for s in supporters if not same_person(r.reviewer, s.reviewer)]
            for r in group
        }
        choice = 0
        while len(pairs) < limit and any(len(o) > choice for o in options.values()):
            for r in group:
                mine = options[r.reviewer.reviewer_id]
                if choice < len(mine) and len(pairs) < limit:
                    pairs.append(Pair(r, mine[choice]))
            choice += 1
    return pairs


def decide_personal_data_destruction(case: CaseAllocation) -> list[EventPayload]:
    """The case's retention period ended (notification.PersonalDataDestroyed): the service records that
    its key for the case goes (the handler destroys it in the same transaction). Told again, nothing."""
    if case.personal_data_destroyed:
        return []
    return [CasePersonalDataDestroyed(case_id=case.case_id, reason="retention_period_ended")]


def decide_queue(case: CaseAllocation | None, opened: CaseOpened, occurred_on: date) -> list[EventPayload]:
    """The notification service opened the case (notification.CaseOpened, published on
    `occurred_on`): it waits for allocation with the six-month deadline, its review type and every
    organisation involved in the person's care. A case already queued (told again) changes nothing."""
    if case is not None:
        return []
    # The six-month clock starts when the death was notified, which for a case opened when the LAC
    # confirmed its eligibility is before this event (events from before notified_on have none).
    notified_on = opened.notified_on or occurred_on
    return [
        CaseAwaitingAllocation(
            case_id=opened.case_id,
            notified_on=notified_on,
            deadline=review_deadline(notified_on),
            review_type=opened.review_type,
            focused_reasons=opened.focused_reasons,
            organisations_involved=organisations_involved(opened.facts),
        )
    ]


# The LAC's commands about a reviewer, as values: the API builds one from a request, the handler
# loads the reviewer and hands both to decide_reviewer.


@dataclass(frozen=True)
class RecordTraining:
    completed_on: date


@dataclass(frozen=True)
class RecordConflict:
    kind: Literal["organisation", "person"]
    name: str


@dataclass(frozen=True)
class Reactivate:
    pass


ReviewerCommand = RecordTraining | RecordConflict | Reactivate


class TrainingInFuture(DomainError):
    code = "training_in_future"
    status = 422


def check_training(command: RecordTraining, today: date) -> None:
    """Training cannot be recorded as completed after `today` (the service's day). Checked before the
    reviewer is looked up, so a date in the future is refused whoever it names."""
    if command.completed_on > today:
        raise TrainingInFuture("training cannot be completed in the future")


def decide_reviewer(reviewer: Reviewer, command: ReviewerCommand) -> list[EventPayload]:
    """Training and standing conflicts are recorded each time they are given (the latest training
    counts); a reviewer reactivated who is active already changes nothing."""
    match command:
        case RecordTraining():
            return [
                ReviewerTrainingRecorded(reviewer_id=reviewer.reviewer_id, completed_on=command.completed_on)
            ]
        case RecordConflict():
            return [
                ReviewerConflictRecorded(
                    reviewer_id=reviewer.reviewer_id, kind=command.kind, name=command.name
                )
            ]
        case Reactivate():
            return [] if reviewer.active else [ReviewerReactivated(reviewer_id=reviewer.reviewer_id)]
