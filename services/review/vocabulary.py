"""The review's controlled vocabularies: learning themes and the quality-of-care grading scale.

Both are versioned, and each recorded theme or grade says which version it used. The national
grading scale was not published, so the scale is configurable (LEDER_CARE_GRADE_SCALE: the grade
names from best to worst, comma-separated)."""

import hashlib
import os

THEMES_VERSION = "2026.1"
THEMES = frozenset(
    {
        "diagnostic_overshadowing",
        "mental_capacity_act_not_followed",
        "dnacpr_process_not_followed",
        "delays_in_care",
        "reasonable_adjustments_missing",
        "annual_health_check",
        "epilepsy_care",
        "aspiration_pneumonia",
        "constipation",
        "sepsis",
        "communication",
        "care_coordination",
        "family_involvement",
        "end_of_life_care",
        "medication",
        "access_to_services",
    }
)

DEFAULT_SCALE = ("excellent", "good", "satisfactory", "care_fell_short", "care_fell_far_short")


def care_scale() -> tuple[str, tuple[str, ...]]:
    """(version, grade names best first); grade n is names[n - 1]."""
    configured = os.environ.get("LEDER_CARE_GRADE_SCALE")
    if not configured:
        return "default-1", DEFAULT_SCALE
    names = tuple(n.strip() for n in configured.split(",") if n.strip())
    return "custom-" + hashlib.sha256(",".join(names).encode()).hexdigest()[:8], names
