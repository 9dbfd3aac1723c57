"""Words for codes the LAC's pages show that no service serves labels for yet (display only: the
choices themselves are the API's, and the service still decides what it accepts)."""

# NHS Data Dictionary, ETHNIC CATEGORY (2001 census): the notification service takes the codes
# (events/partner.py EthnicCategory) but serves no labels; until it does, these are the words.
ETHNIC_CATEGORIES: dict[str, str] = {
    "A": "White: British",
    "B": "White: Irish",
    "C": "White: any other White background",
    "D": "Mixed: White and Black Caribbean",
    "E": "Mixed: White and Black African",
    "F": "Mixed: White and Asian",
    "G": "Mixed: any other mixed background",
    "H": "Asian or Asian British: Indian",
    "J": "Asian or Asian British: Pakistani",
    "K": "Asian or Asian British: Bangladeshi",
    "L": "Asian or Asian British: any other Asian background",
    "M": "Black or Black British: Caribbean",
    "N": "Black or Black British: African",
    "P": "Black or Black British: any other Black background",
    "R": "Other ethnic groups: Chinese",
    "S": "Other ethnic groups: any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}

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
