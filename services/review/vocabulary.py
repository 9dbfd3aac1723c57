"""The review's controlled vocabularies, each value with the label people read: learning themes and
the quality-of-care grading scale, and every other list a form offers (GET /vocabulary serves them all,
so the web app never keeps a copy).

Themes and grades are versioned, and each recorded theme or grade says which version it used. The national
grading scale was not published, so the scale is configurable (LEDER_CARE_GRADE_SCALE: the grade
names from best to worst, comma-separated)."""

import hashlib
import os

THEMES_VERSION = "2026.1"
THEME_LABELS = {
    "diagnostic_overshadowing": "Diagnostic overshadowing",
    "mental_capacity_act_not_followed": "Mental Capacity Act not followed",
    "dnacpr_process_not_followed": "DNACPR process not followed",
    "delays_in_care": "Delays in care",
    "reasonable_adjustments_missing": "Reasonable adjustments missing",
    "annual_health_check": "Annual health check",
    "epilepsy_care": "Epilepsy care",
    "aspiration_pneumonia": "Aspiration pneumonia",
    "constipation": "Constipation",
    "sepsis": "Sepsis",
    "communication": "Communication",
    "care_coordination": "Care coordination",
    "family_involvement": "Family involvement",
    "end_of_life_care": "End of life care",
    "medication": "Medication",
    "access_to_services": "Access to services",
}
THEMES = frozenset(THEME_LABELS)

DEFAULT_SCALE = ("excellent", "good", "satisfactory", "care_fell_short", "care_fell_far_short")


def care_scale() -> tuple[str, tuple[str, ...]]:
    """(version, grade names best first); grade n is names[n - 1]."""
    configured = os.environ.get("LEDER_CARE_GRADE_SCALE")
    if not configured:
        return "default-1", DEFAULT_SCALE
    names = tuple(n.strip() for n in configured.split(",") if n.strip())
    return "custom-" + hashlib.sha256(",".join(names).encode()).hexdigest()[:8], names


GRADE_LABELS = {
    "excellent": "Excellent care",
    "good": "Good care",
    "satisfactory": "Satisfactory care",
    "care_fell_short": "Care fell short of expected good practice",
    "care_fell_far_short": "Care fell far short of expected good practice",
}


def humanise(code: str) -> str:
    """A label for a value nobody wrote one for: 'care_fell_short' -> 'Care fell short'."""
    words = code.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def grade_label(grade: int, scale_version: str) -> str:
    version, names = care_scale()
    if scale_version == version and 1 <= grade <= len(names):
        name = names[grade - 1]
        return GRADE_LABELS.get(name, humanise(name))
    return f"Grade {grade} (scale {scale_version})"


# Every value a write endpoint accepts, or a read returns, with its label. Free-text fields (phases of
# care, record sources) have suggestions: the code is what to send; any other text is accepted too.
LABELS: dict[str, dict[str, str]] = {
    "contact_parties": {
        "family": "Family or carers",
        "gp": "GP",
        "gp_records": "GP records",
        "professional": "Another professional",
    },
    "contact_statuses": {
        "offered": "Offered",
        "declined": "Declined",
        "completed": "Completed",
        "not_wanted": "Not wanted by the person",
    },
    "pause_reasons": {
        "police_investigation": "Police investigation",
        "coroners_investigation_or_inquest": "Coroner's investigation or inquest",
        "safeguarding_adult_review_or_enquiry": "Safeguarding adult review or enquiry",
        "domestic_homicide_review": "Domestic homicide review",
        "serious_incident_review": "Serious incident review",
        "family_asked_for_delay": "The family asked for a delay",
    },
    "family_involvement_steps": {
        "invited_to_comment": "Invited to comment on the draft",
        "comments_received": "Comments received",
        "final_copy_offered": "Offered a copy of the final review",
    },
    "lapse_contributions": {
        "contributed": "Contributed to the death",
        "possibly_contributed": "Possibly contributed to the death",
        "did_not_contribute": "Did not contribute to the death",
        "unknown": "Not known",
    },
    "focused_reasons": {
        "autistic_without_learning_disability": "Autistic without a learning disability",
        "ethnicity": "Ethnicity other than White British",
        "detained_within_5_years": "Detained under the Mental Health Act in the last 5 years",
        "family_request": "The family asked for a focused review",
        "concerns_about_care": "Concerns about care",
        "likely_learning": "Likely learning",
        "lapse_in_care": "A lapse in care",
        "learning": "Escalated for learning",
    },
    "review_types": {"initial": "Initial review", "focused": "Focused review"},
    "review_statuses": {
        "in_progress": "In progress",
        "paused": "Paused",
        "submitted": "Submitted for QA",
        "completed": "Completed",
    },
    "qa_outcomes": {
        "submitted": "Submitted for QA",
        "returned_for_rework": "Returned for rework",
        "approved": "Approved",
        "reopened": "Case reopened",
    },
    "roles_in_case": {"reviewer": "Reviewer", "senior_reviewer": "Senior reviewer"},
    "checklist_statuses": {
        "not_started": "Not yet started",
        "in_progress": "In progress",
        "done": "Completed",
    },
    "phases_of_care": {
        "care_in_the_community": "Care in the community",
        "primary_care": "Primary care",
        "hospital_admission": "Hospital admission",
        "final_illness": "Final illness",
        "end_of_life_care": "End of life care",
    },
    "record_sources": {
        "gp": "GP practice",
        "acute_hospital": "Acute hospital",
        "mental_health_trust": "Mental health trust",
        "community_health_services": "Community health services",
        "social_care": "Social care",
        "care_provider": "Care provider",
        "ambulance_service": "Ambulance service",
    },
}
FREE_TEXT = frozenset({"phases_of_care", "record_sources"})


def label(vocabulary: str, code: str) -> str:
    """The label of a code; free text (or a value recorded before a label existed) reads as itself."""
    return LABELS[vocabulary].get(code, code if vocabulary in FREE_TEXT else humanise(code))


def choices(vocabulary: str) -> list[dict[str, str]]:
    return [{"code": code, "label": text} for code, text in LABELS[vocabulary].items()]
