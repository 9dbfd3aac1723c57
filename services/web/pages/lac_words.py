"""Words for codes the LAC's pages show that no service serves labels for yet (display only: the
choices themselves are the API's, and the service still decides what it accepts)."""

from events.partner import ETHNIC_CATEGORY_NAMES

# NHS Data Dictionary, ETHNIC CATEGORY: the words the partner contract defines beside its codes.
ETHNIC_CATEGORIES = ETHNIC_CATEGORY_NAMES

PLACES_OF_DEATH: dict[str, str] = {
    "hospital": "Hospital",
    "home": "Home",
    "care_home": "Care home",
    "hospice": "Hospice",
    "other": "Somewhere else",
}

CASE_STATUSES: dict[str, str] = {
    "open": "Open",
    "eligibility_to_confirm": "Eligibility to confirm",
    "not_eligible": "Not eligible",
    "closed": "Closed",
}

REVIEW_TYPES: dict[str, str] = {"initial": "Initial review", "focused": "Focused review"}


def ethnicity(code: str | None) -> str:
    if code is None:
        return ""
    return f"{ETHNIC_CATEGORIES.get(code, code)} ({code})"


def place(code: str | None) -> str:
    return PLACES_OF_DEATH.get(code or "", code or "")
