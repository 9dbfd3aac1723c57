"""Partner notifications for tests: a valid one, and ways to change it."""

import copy
from datetime import date
from typing import Any
from uuid import uuid4

# Who sends `notification()`: a partner system's token in tests names this organisation unless told.
NOTIFIER_ORGANISATION = "Southmead Hospital"


def notification(**changes: Any) -> dict[str, Any]:
    """A valid partner notification v1 as JSON-ready data. `changes` use dotted paths:
    notification(**{"person.autism": True})."""
    body: dict[str, Any] = {
        "notification_id": str(uuid4()),
        "schema_version": 1,
        "notifier": {
            "organisation": NOTIFIER_ORGANISATION,
            "role": "hospital",
            "name": "Dr Asha Patel",
            "email": "asha.patel@nbt.example.nhs.uk",
        },
        "person": {
            "nhs_number": "943 476 5919",
            "given_name": "Zoë",
            "family_name": "O'Brien",
            "date_of_birth": "1961-05-14",
            "sex": "female",
            "ethnicity": "A",
            "postcode": "BS10 5NB",
            "gp_practice_code": "L81001",
            "learning_disability": True,
            "learning_disability_level": "moderate",
            "autism": False,
            "accommodation_type": "supported_living",
            "opted_out_of_secondary_use": False,
        },
        "death": {
            "date_of_death": "2026-10-03",
            "place_of_death": "hospital",
            "place_of_death_organisation": "Southmead Hospital",
            "cause_of_death": "aspiration pneumonia",
        },
        "circumstances": {
            "detained_mental_health_act_within_5_years": False,
            "detained_criminal_justice_within_5_years": False,
            "family_requested_focused_review": False,
            "concerns_about_care": False,
            "likely_learning": False,
        },
        "organisations_involved": ["Southmead Hospital", "Brunswick Care Ltd"],
        "next_of_kin": {
            "name": "Maeve O'Brien",
            "relationship": "sister",
            "phone": "0117 496 0123",
            "involve_family": True,
        },
    }
    for path, value in changes.items():
        set_path(body, path, value)
    return body


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value


DELETE = object()

PERSONAL_STRINGS = (
    "Zoë",
    "O'Brien",
    "9434765919",
    "943 476 5919",
    "BS10 5NB",
    "1961-05-14",
    "Maeve",
    "Asha Patel",
    "asha.patel",
    "0117 496 0123",
    "aspiration pneumonia",
)


def born_and_died(born: date, died: date, **changes: Any) -> dict[str, Any]:
    return notification(
        **{"person.date_of_birth": born.isoformat(), "death.date_of_death": died.isoformat()}, **changes
    )


def clone(body: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(body)
