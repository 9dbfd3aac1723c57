"""The state of a case as the system knew it at a moment, rebuilt from the audit log's events."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import Envelope


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
    state = CaseState(case_id, as_of.isoformat())
    agreed_order: dict[str, int] = {}
    for e in envelopes:
        if e.occurred_at > as_of:
            continue
        d = e.data
        state.events_seen += 1
        match e.event_type:
            case "notification.CaseOpened":
                state.status, state.review_type = "open", d["review_type"]
                state.reference = d.get("reference")
                state.focused_reasons = list(d["focused_reasons"])
            case "notification.EligibilityToConfirm":
                state.status = "eligibility_to_confirm"
            case "notification.EligibilityRejected":
                state.status = "not_eligible"
            case "notification.CaseEscalatedToFocused" | "review.ReviewEscalatedToFocused":
                state.review_type = "focused"
                state.focused_reasons += [r for r in d["reasons"] if r not in state.focused_reasons]
            case "allocation.CaseAwaitingAllocation":
                state.status = "awaiting_allocation"
            case "allocation.ReviewerAllocated":
                state.status, state.reviewer = "allocated", d["reviewer_user_id"]
                state.senior_reviewer = d["senior_reviewer_user_id"]
            case "allocation.CaseReturnedToQueue":
                state.status, state.reviewer, state.senior_reviewer = "awaiting_allocation", None, None
            case "review.ReviewStarted":
                state.status, state.review_status = "review_in_progress", "in_progress"
            case "review.ReviewHandedOver":
                state.reviewer = d["reviewer_user_id"]
            case "review.ReviewPaused":
                state.review_status = "paused"
                state.pauses.append({"reason": d["reason"], "from": d["paused_on"], "to": None})
            case "review.ReviewResumed":
                state.review_status = "in_progress"
                if state.pauses:
                    state.pauses[-1]["to"] = d["resumed_on"]
            case "review.ReviewSubmittedForQA":
                state.status, state.review_status = "submitted_for_qa", "submitted"
            case "review.ReviewReturnedForRework":
                state.status, state.review_status = "returned_for_rework", "in_progress"
            case "governance.ReviewReturnedByQA" | "governance.ReviewApprovedByQA":
                outcome = "approved" if e.event_type.endswith("Approved" + "ByQA") else "returned"
                state.qa_decisions.append(
                    {"outcome": outcome, "at": e.occurred_at.isoformat(), "by": e.actor.id}
                )
            case "review.ReviewCompleted":
                state.review_status = "completed"
            case "governance.CaseClosed":
                state.status = "closed"
            case "governance.CaseReopened":
                state.status = "reopened"
            case "governance.ActionAgreed":
                agreed_order[d["action_id"]] = e.source_sequence
                state.actions.append(d["what"])
                state.linked_actions.append(
                    {
                        "action_id": d["action_id"],
                        "what": d["what"],
                        "organisation": d.get("organisation"),
                        "lead": d.get("lead"),
                        "due_on": d.get("due_on"),
                        "agreed_at": e.occurred_at.isoformat(),
                        "status": "open",
                        "progress_updates": 0,
                        "completed_on": None,
                    }
                )
            case "governance.ActionProgressUpdated":
                for action in _actions(state, d):
                    action["progress_updates"] += 1
            case "governance.ActionOverdue":
                for action in _actions(state, d):
                    if action["status"] != "completed":
                        action["status"] = "overdue"
            case "governance.ActionCompleted":
                for action in _actions(state, d):
                    action["status"], action["completed_on"] = "completed", d.get("completed_on")
    # Actions arrive on their own streams, so the log may hold two in either order: list them in
    # the order they were agreed, whatever order the broker delivered them in.
    # Two agreed at the same moment: the governance service's own sequence is the order it recorded them.
    state.linked_actions.sort(key=lambda a: (a["agreed_at"], agreed_order.get(a["action_id"], 0)))
    state.actions = [a["what"] for a in state.linked_actions]
    return state


def _actions(state: CaseState, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [a for a in state.linked_actions if a["action_id"] == data.get("action_id")]


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
            return template.format(**{k: _words(k, v, names or {}) for k, v in envelope.data.items()})
        except (KeyError, IndexError):
            pass
    name = envelope.event_type.split(".", 1)[-1]
    return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
