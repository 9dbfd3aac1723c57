"""The state of a case as the system knew it at a moment, rebuilt from the audit log's events."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from events import Envelope


@dataclass
class CaseState:
    case_id: str
    as_of: str
    status: str = "unknown"
    review_type: str | None = None
    focused_reasons: list[str] = field(default_factory=list)
    reviewer: str | None = None
    senior_reviewer: str | None = None
    review_status: str | None = None
    pauses: list[dict[str, Any]] = field(default_factory=list)
    qa_decisions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    events_seen: int = 0


def state_as_of(case_id: str, envelopes: list[Envelope], as_of: datetime) -> CaseState:
    state = CaseState(case_id, as_of.isoformat())
    for e in envelopes:
        if e.occurred_at > as_of:
            continue
        d = e.data
        state.events_seen += 1
        match e.event_type:
            case "notification.CaseOpened":
                state.status, state.review_type = "open", d["review_type"]
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
                state.actions.append(d["what"])
    return state


SUMMARIES = {
    "notification.CaseOpened": "case opened ({review_type} review)",
    "notification.DuplicateNotificationLinked": "another notification linked ({notifier_organisation})",
    "notification.PersonalDetailsViewed": "personal details viewed: {reason}",
    "allocation.ReviewerAllocated": "allocated to {reviewer_user_id}, senior {senior_reviewer_user_id}",
    "review.ReviewPaused": "review paused ({reason})",
    "review.LapseInCareRecorded": "lapse in care recorded ({organisation})",
    "review.ReviewSubmittedForQA": "review submitted for QA",
    "governance.ReviewReturnedByQA": "returned by the QA panel",
    "governance.ReviewApprovedByQA": "approved by the QA panel (rating {quality_rating})",
    "governance.CaseClosed": "case closed",
}


def summary(envelope: Envelope) -> str:
    template = SUMMARIES.get(envelope.event_type)
    if template:
        try:
            return template.format(**envelope.data)
        except (KeyError, IndexError):
            pass
    name = envelope.event_type.split(".", 1)[1]
    return "".join(" " + c.lower() if c.isupper() else c for c in name).strip()
