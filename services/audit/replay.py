"""The state of a case as the system knew it at a moment, rebuilt from the audit log's events."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from events import Envelope
from events.allocation import (
    CaseAwaitingAllocation,
    CaseReturnedToQueue,
    ReviewerAllocated,
)
from events.governance import (
    ActionAgreed,
    ActionCompleted,
    ActionOverdue,
    ActionProgressUpdated,
    CaseClosed,
    CaseReopened,
    ReviewApprovedByQA,
    ReviewReturnedByQA,
)
from events.notification import (
    CaseEscalatedToFocused,
    CaseOpened,
    EligibilityRejected,
    EligibilityToConfirm,
)
from events.registry import EventPayload, UnknownEventType, payload_class
from events.review import (
    ReviewCompleted,
    ReviewEscalatedToFocused,
    ReviewHandedOver,
    ReviewPaused,
    ReviewResumed,
    ReviewReturnedForRework,
    ReviewStarted,
    ReviewSubmittedForQA,
)

# The event types whose payloads the replay reads: the classes matched in `state_as_of`.
REPLAYED: frozenset[str] = frozenset(
    cls.event_type
    for cls in (
        CaseOpened,
        EligibilityToConfirm,
        EligibilityRejected,
        CaseEscalatedToFocused,
        ReviewEscalatedToFocused,
        CaseAwaitingAllocation,
        ReviewerAllocated,
        CaseReturnedToQueue,
        ReviewStarted,
        ReviewHandedOver,
        ReviewPaused,
        ReviewResumed,
        ReviewSubmittedForQA,
        ReviewReturnedForRework,
        ReviewReturnedByQA,
        ReviewApprovedByQA,
        ReviewCompleted,
        CaseClosed,
        CaseReopened,
        ActionAgreed,
        ActionProgressUpdated,
        ActionOverdue,
        ActionCompleted,
    )
)


@dataclass
class CaseState:
    case_id: str
    as_of: str
    reference: str | None = None
    status: str = "unknown"
    review_type: str | None = None
    focused_reasons: list[str] = field(default_factory=list)
    reviewer: str | None = None
    senior_reviewer: str | None = None
    review_status: str | None = None
    pauses: list[dict[str, Any]] = field(default_factory=list)
    qa_decisions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    # Each action agreed for the case and what became of it: open, overdue or completed.
    linked_actions: list[dict[str, Any]] = field(default_factory=list)
    events_seen: int = 0


def state_as_of(case_id: str, envelopes: list[Envelope], as_of: datetime) -> CaseState:
    """Each entry is read through the event registry (events/registry.py): decoded from the schema
    version it was written in, upcast to the version this code knows, so the replay reads typed fields,
    never a version's raw shape. An entry the registry cannot decode (a type this code does not know,
    a payload that is not valid) is counted but changes nothing: the log keeps any signed envelope,
    and the replay cannot tell what it means."""
    state = CaseState(case_id, as_of.isoformat())
    agreed_order: dict[str, int] = {}
    for e in envelopes:
        if e.occurred_at > as_of:
            continue
        state.events_seen += 1
        match _decoded(e):
            case CaseOpened() as p:
                state.status, state.review_type = "open", p.review_type
                state.reference = p.reference
                state.focused_reasons = list(p.focused_reasons)
            case EligibilityToConfirm():
                state.status = "eligibility_to_confirm"
            case EligibilityRejected():
                state.status = "not_eligible"
            case CaseEscalatedToFocused() | ReviewEscalatedToFocused() as p:
                state.review_type = "focused"
                state.focused_reasons += [r for r in p.reasons if r not in state.focused_reasons]
            case CaseAwaitingAllocation():
                state.status = "awaiting_allocation"
            case ReviewerAllocated() as p:
                state.status, state.reviewer = "allocated", p.reviewer_user_id
                state.senior_reviewer = p.senior_reviewer_user_id
            case CaseReturnedToQueue():
                state.status, state.reviewer, state.senior_reviewer = "awaiting_allocation", None, None
            case ReviewStarted():
                state.status, state.review_status = "review_in_progress", "in_progress"
            case ReviewHandedOver() as p:
                state.reviewer = p.reviewer_user_id
            case ReviewPaused() as p:
                state.review_status = "paused"
                state.pauses.append({"reason": p.reason, "from": p.paused_on.isoformat(), "to": None})
            case ReviewResumed() as p:
                state.review_status = "in_progress"
                if state.pauses:
                    state.pauses[-1]["to"] = p.resumed_on.isoformat()
            case ReviewSubmittedForQA():
                state.status, state.review_status = "submitted_for_qa", "submitted"
            case ReviewReturnedForRework():
                state.status, state.review_status = "returned_for_rework", "in_progress"
            case ReviewReturnedByQA() | ReviewApprovedByQA() as p:
                outcome = "approved" if isinstance(p, ReviewApprovedByQA) else "returned"
                state.qa_decisions.append(
                    {"outcome": outcome, "at": e.occurred_at.isoformat(), "by": e.actor.id}
                )
            case ReviewCompleted():
                state.review_status = "completed"
            case CaseClosed():
                state.status = "closed"
            case CaseReopened():
                state.status = "reopened"
            case ActionAgreed() as p:
                agreed_order[str(p.action_id)] = e.source_sequence
                state.actions.append(p.what)
                state.linked_actions.append(
                    {
                        "action_id": str(p.action_id),
                        "what": p.what,
                        "organisation": p.organisation,
                        "lead": p.lead,
                        "due_on": p.due_on.isoformat(),
                        "agreed_at": e.occurred_at.isoformat(),
                        "status": "open",
                        "progress_updates": 0,
                        "completed_on": None,
                    }
                )
            case ActionProgressUpdated() as p:
                for action in _actions(state, p.action_id):
                    action["progress_updates"] += 1
            case ActionOverdue() as p:
                for action in _actions(state, p.action_id):
                    if action["status"] != "completed":
                        action["status"] = "overdue"
            case ActionCompleted() as p:
                for action in _actions(state, p.action_id):
                    action["status"], action["completed_on"] = "completed", p.completed_on.isoformat()
    # Actions arrive on their own streams, so the log may hold two in either order: list them in
    # the order they were agreed, whatever order the broker delivered them in.
    # Two agreed at the same moment: the governance service's own sequence is the order it recorded them.
    state.linked_actions.sort(key=lambda a: (a["agreed_at"], agreed_order.get(a["action_id"], 0)))
    state.actions = [a["what"] for a in state.linked_actions]
    return state


def _decoded(envelope: Envelope) -> EventPayload | None:
    """The entry's payload in the version this code knows (upcast through the registry), or None."""
    if envelope.event_type not in REPLAYED:
        return None  # nothing the replay reads: not decoded, so an unknown type costs nothing
    try:
        return envelope.payload()
    except (ValidationError, UnknownEventType):
        return None


def _actions(state: CaseState, action_id: UUID) -> list[dict[str, Any]]:
    return [a for a in state.linked_actions if a["action_id"] == str(action_id)]


# A line a person reads for each kind of event: plain words, no free text a reviewer wrote (notes and
# pen portraits stay in the event), and never the sealed personal fields.
SUMMARIES = {
    "notification.CaseOpened": "case opened ({review_type} review)",
    "notification.EligibilityToConfirm": "eligibility to be confirmed",
    "notification.EligibilityConfirmed": "eligibility confirmed",
    "notification.EligibilityRejected": "not eligible: {reason}",
    "notification.ReferredToChildDeathOverviewPanel": "referred to the child death overview panel",
    "notification.NotificationNotEligible": "notification not eligible: {reason}",
    "notification.DuplicateNotificationLinked": "another notification linked ({notifier_organisation})",
    "notification.EthnicityRecorded": "ethnicity recorded",
    "notification.CaseEscalatedToFocused": "escalated to a focused review ({reasons})",
    "notification.CaseAllocationRecorded": "allocation noted: reviewer {reviewer_user_id}",
    "notification.PersonalDetailsViewed": "personal details viewed: {reason}",
    "notification.CaseRead": "case read by {reader}",
    "notification.CaseAllocationEnded": "personal details closed to {reviewer_user_id}, senior"
    " {senior_reviewer_user_id}, as the allocation ended ({reason})",
    "notification.NotificationPersonalDataDestroyed": "personal data of a notification that never became"
    " a case destroyed ({reason})",
    "notification.PersonalDataDestroyed": "personal data destroyed ({reason})",
    "notification.CaseClosureRecorded": "case closed on {closed_on} (noted by the notification service)",
    "notification.CaseReopeningRecorded": "case reopened (noted by the notification service): {reason}",
    "allocation.ReviewerRegistered": "reviewer registered: {name}",
    "allocation.ReviewerTrainingRecorded": "reviewer training recorded (completed {completed_on})",
    # Not the name: a standing conflict with a person may name someone close to a person who died.
    "allocation.ReviewerConflictRecorded": "standing conflict of interest recorded ({kind})",
    "allocation.ReviewerDeactivated": "reviewer deactivated: {reason}",
    "allocation.ReviewerReactivated": "reviewer reactivated",
    "allocation.CaseAwaitingAllocation": "awaiting allocation (deadline {deadline})",
    "allocation.CaseReviewTypeChanged": "review type changed to {review_type}",
    "allocation.ReviewerAllocated": "allocated to {reviewer_user_id}, senior {senior_reviewer_user_id}",
    "allocation.ConflictOfInterestDeclared": "conflict of interest declared: {reason}",
    "allocation.CaseReturnedToQueue": "returned to the allocation queue: {reason}",
    "allocation.CaseReallocated": "reallocated to another reviewer: {reason}",
    "allocation.CasePersonalDataDestroyed": "the allocation's sealed reasons destroyed ({reason})",
    "allocation.AllocationEnded": "allocation ended ({reason})",
    "allocation.AllocationRestored": "allocation restored to {reviewer_user_id}, senior"
    " {senior_reviewer_user_id}, as the case was reopened",
    "review.ReviewStarted": "review started by {reviewer_user_id}",
    "review.ReviewHandedOver": "review handed over from {from_reviewer_user_id} to {reviewer_user_id}",
    "review.ContactRecorded": "contact with {party}: {status}",
    "review.RecordsRequested": "records requested from {source}",
    "review.RecordsReceived": "records received from {source}",
    "review.PenPortraitWritten": "pen portrait written",
    "review.FamilyInvolvementRecorded": "family involvement: {step}",
    "review.CareJudged": "care judged ({phase}): grade {grade}",
    "review.LapseInCareRecorded": "lapse in care recorded ({organisation})",
    "review.GoodPracticeRecorded": "good practice recorded",
    "review.LearningRecorded": "learning recorded",
    "review.RecommendationRecorded": "recommendation recorded ({organisation})",
    "review.CauseOfDeathRecorded": "cause of death recorded",
    "review.SafeguardingReferralMade": "safeguarding referral made to {to}",
    "review.ReviewEscalatedToFocused": "escalated to a focused review ({reasons})",
    "review.ReviewPaused": "review paused ({reason})",
    "review.ReviewResumed": "review resumed",
    "review.NoteAdded": "note added",
    "review.ReviewSubmittedForQA": "review submitted for QA",
    "review.ReviewReturnedForRework": "review returned for rework",
    "review.ReviewCompleted": "review completed",
    "review.ReviewReopened": "review reopened, back with its reviewer: {reason}",
    "review.ReviewDeadlineApproaching": "review deadline approaching ({deadline})",
    "review.ReviewOverdue": "review overdue (deadline {deadline})",
    "review.ReviewPersonalDataDestroyed": "the review's sealed text destroyed ({reason})",
    "review.ReviewRead": "review read by {reader}",
    "review.ReviewerAccessEnded": "review closed to {reviewer_user_id}, senior {senior_reviewer_user_id},"
    " as the allocation ended ({reason})",
    "review.ReviewerAccessRestored": "review open again to {reviewer_user_id}, senior"
    " {senior_reviewer_user_id} ({because})",
    "governance.QAPanelScheduled": "QA panel scheduled for {held_on}",
    "governance.ReviewAwaitingQA": "awaiting QA",
    "governance.ReviewAddedToPanelAgenda": "added to a QA panel's agenda",
    "governance.ReviewReturnedByQA": "returned by the QA panel",
    "governance.ReviewApprovedByQA": "approved by the QA panel (rating {quality_rating})",
    "governance.CaseClosed": "case closed",
    "governance.CaseReopened": "case reopened: {reason}",
    "governance.ActionAgreed": "action agreed ({organisation}, due {due_on})",
    "governance.ActionProgressUpdated": "action progress updated",
    "governance.ActionCompleted": "action completed",
    "governance.ActionOverdue": "action overdue (due {due_on})",
    "governance.CaseRead": "{what} read by {reader}",
    "audit.AuditLogRead": "audit log: {what}",
    "audit.RejectedNotificationRecorded": "rejected notification recorded",
    "audit.LogHighWaterMarked": "audit log's high-water marks published ({log_size} entries)",
}
# Fields naming a person by the `sub` of their token: shown by name where the log knows it.
PERSON_FIELDS = frozenset(
    {"reviewer_user_id", "senior_reviewer_user_id", "from_reviewer_user_id", "viewer", "reader"}
)
# What each kind of audit read was, in words (the CLI's are "cli <command>").
READS = {
    "history": "read the case history",
    "state": "viewed the case as it stood at a moment",
    "access": "read the access log",
    "verification": "checked the log's verification",
    "export": "downloaded the case export with proofs",
    "find case": "looked up a case",
    "verify": "checked the log's verification",
    "replay": "replayed the case",
    "gaps": "read the log's gaps",
    "reconcile": "reconciled the log with the services",
}


def describe_read(what: str) -> str:
    """An audit read (`AuditLogRead.what`) in words."""
    command = what.removeprefix("cli ")
    words = READS.get(command, command)
    return f"{words} (command line)" if what.startswith("cli ") else words


def _words(key: str, value: Any, names: Mapping[str, str]) -> str:
    if key in PERSON_FIELDS and isinstance(value, str):
        return names.get(value, value)
    if key == "what" and isinstance(value, str):
        return describe_read(value)
    if isinstance(value, list):
        return ", ".join(_words(key, v, names) for v in value) or "none"
    if value is None:
        return "not given"
    if isinstance(value, dict) and "ciphertext" in value:
        return "[sealed]"  # a sealed text (events.sealing.Sealed) is never shown, not even its ciphertext
    return str(value).replace("_", " ")


def summary(envelope: Envelope, names: Mapping[str, str] | None = None) -> str:
    """The event in a few words; people named (by `names`, user id to name) where known."""
    template = SUMMARIES.get(envelope.event_type)
    if template:
        try:
            return template.format(**{k: _words(k, v, names or {}) for k, v in _fields(envelope).items()})
        except (KeyError, IndexError):
            pass
    name = envelope.event_type.split(".", 1)[-1]
    return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()


def _fields(envelope: Envelope) -> Mapping[str, Any]:
    """The entry's data in the published shape of the version the summaries are written for: as logged
    when it is the version this code knows (so a summary reads exactly what was logged), upcast through
    the registry when it is older; as logged when the registry cannot decode it."""
    try:
        if envelope.schema_version == payload_class(envelope.event_type).schema_version:
            return envelope.data
        return envelope.payload().model_dump(mode="json", by_alias=True)
    except (ValidationError, UnknownEventType):
        return envelope.data
