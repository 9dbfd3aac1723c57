"""The review as people read it: its recorded content grouped by kind, and its QA decisions, from its
events. Pure (no I/O): the API reads the history and the names, this shapes them."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from events import Envelope
from events.review import (
    CareJudged,
    CauseOfDeathRecorded,
    ContactRecorded,
    FamilyInvolvementRecorded,
    GoodPracticeRecorded,
    LapseInCareRecorded,
    LearningRecorded,
    NoteAdded,
    PenPortraitWritten,
    RecommendationRecorded,
    RecordsReceived,
    RecordsRequested,
    ReviewCompleted,
    ReviewEscalatedToFocused,
    ReviewPaused,
    ReviewReopened,
    ReviewResumed,
    ReviewReturnedForRework,
    ReviewSubmittedForQA,
    SafeguardingReferralMade,
)
from services.review.domain import ChecklistItem
from services.review.texts import Opener
from services.review.vocabulary import THEME_LABELS, grade_label, humanise, label


def checklist(items: Sequence[ChecklistItem]) -> list[dict[str, Any]]:
    return [
        {
            "key": i.key,
            "label": i.label,
            "status": i.status,
            "status_label": label("checklist_statuses", i.status),
            "required": i.required,
            "hint": i.hint,
        }
        for i in items
    ]


def _themes(codes: Sequence[str]) -> list[dict[str, str]]:
    return [{"code": c, "label": THEME_LABELS.get(c, humanise(c))} for c in codes]


def records(history: Sequence[Envelope], names: Mapping[str, str], open_: Opener) -> dict[str, Any]:
    """Everything the reviewer recorded, grouped by kind, in the order it was recorded. Each entry says
    when (`recorded_at`) and by whom (`recorded_by`, a name where one is known). Sealed text is opened
    by `open_` (None once the case's key is destroyed)."""
    out: dict[str, Any] = {
        "contacts": [],
        "records": [],
        "pen_portrait": None,
        "family_involvement": [],
        "care_judgements": [],
        "lapses_in_care": [],
        "good_practice": [],
        "learning": [],
        "recommendations": [],
        "cause_of_death": None,
        "safeguarding_referrals": [],
        "escalations": [],
        "pauses": [],
        "notes": [],
    }
    sources: dict[str, dict[str, Any]] = {}
    for envelope in history:
        event = envelope.payload()
        when: dict[str, Any] = {
            "recorded_at": envelope.occurred_at,
            "recorded_by": names.get(envelope.actor.id, envelope.actor.id),
        }
        match event:
            case ContactRecorded():
                out["contacts"].append(
                    {
                        "party": event.party,
                        "party_label": label("contact_parties", event.party),
                        "status": event.status,
                        "status_label": label("contact_statuses", event.status),
                        "on": event.on,
                        "role": event.role,
                        "organisation": event.organisation,
                        **when,
                    }
                )
            case RecordsRequested() | RecordsReceived():
                key = event.source.casefold()
                if key not in sources:
                    sources[key] = {
                        "source": event.source,
                        "source_label": label("record_sources", event.source),
                        "requested_on": None,
                        "received_on": None,
                    }
                    out["records"].append(sources[key])
                if isinstance(event, RecordsRequested):
                    sources[key]["requested_on"] = event.requested_on
                else:
                    sources[key]["received_on"] = event.received_on
                sources[key].update(when)
            case PenPortraitWritten():
                out["pen_portrait"] = {"text": open_(event.text), **when}  # the latest one stands
            case FamilyInvolvementRecorded():
                out["family_involvement"].append(
                    {
                        "step": event.step,
                        "step_label": label("family_involvement_steps", event.step),
                        "on": event.on,
                        "comments": open_(event.comments),
                        **when,
                    }
                )
            case CareJudged():
                out["care_judgements"].append(
                    {
                        "phase": event.phase,
                        "phase_label": label("phases_of_care", event.phase),
                        "grade": event.grade,
                        "grade_label": grade_label(event.grade, event.scale_version),
                        "scale_version": event.scale_version,
                        "rationale": open_(event.rationale),
                        **when,
                    }
                )
            case LapseInCareRecorded():
                out["lapses_in_care"].append(
                    {
                        "what": open_(event.what),
                        "where": open_(event.where),
                        "organisation": event.organisation,
                        "contribution": event.contribution,
                        "contribution_label": label("lapse_contributions", event.contribution),
                        **when,
                    }
                )
            case GoodPracticeRecorded() | LearningRecorded():
                kind = "good_practice" if isinstance(event, GoodPracticeRecorded) else "learning"
                out[kind].append(
                    {
                        "text": open_(event.text),
                        "themes": _themes(event.themes),
                        "themes_version": event.themes_version,
                        **when,
                    }
                )
            case RecommendationRecorded():
                out["recommendations"].append(
                    {"what": open_(event.what), "organisation": event.organisation, **when}
                )
            case CauseOfDeathRecorded():
                out["cause_of_death"] = {
                    "cause": open_(event.cause),
                    "preventable_or_treatable": event.preventable_or_treatable,
                    "avoidable": event.avoidable,
                    **when,
                }
            case SafeguardingReferralMade():
                out["safeguarding_referrals"].append(
                    {"to": open_(event.to), "on": event.on, "why": open_(event.why), **when}
                )
            case ReviewEscalatedToFocused():
                out["escalations"].append(
                    {
                        "reasons": [{"code": r, "label": label("focused_reasons", r)} for r in event.reasons],
                        "detail": open_(event.detail),
                        **when,
                    }
                )
            case ReviewPaused():
                out["pauses"].append(
                    {
                        "reason": event.reason,
                        "reason_label": label("pause_reasons", event.reason),
                        "paused_on": event.paused_on,
                        "resumed_on": None,
                        **when,
                    }
                )
            case ReviewResumed():
                if out["pauses"]:
                    out["pauses"][-1]["resumed_on"] = event.resumed_on
            case NoteAdded():
                out["notes"].append({"text": open_(event.text), **when})
    return out


def qa(history: Sequence[Envelope], open_: Opener) -> list[dict[str, Any]]:
    """Each submission and the QA panel's answer to it: returned for rework (with the panel's
    comments) or approved; and the case reopened after approval (with the reason, as `comments`)."""
    out: list[dict[str, Any]] = []

    def at(when: datetime) -> str:
        return when.date().isoformat()

    for envelope in history:
        event = envelope.payload()
        match event:
            case ReviewSubmittedForQA():
                out.append({"outcome": "submitted", "on": event.submitted_on.isoformat(), "comments": None})
            case ReviewReturnedForRework():
                out.append(
                    {
                        "outcome": "returned_for_rework",
                        "on": at(envelope.occurred_at),
                        "comments": open_(event.comments),
                    }
                )
            case ReviewCompleted():
                out.append({"outcome": "approved", "on": event.completed_on.isoformat(), "comments": None})
            case ReviewReopened():
                out.append(
                    {
                        "outcome": "reopened",
                        "on": event.reopened_on.isoformat(),
                        "comments": open_(event.reason),
                    }
                )
    for entry in out:
        entry["outcome_label"] = label("qa_outcomes", entry["outcome"])
    return out
