"""Partner notifications for tests: a valid one, and ways to change it. The notification and its dotted
changes are the shared generator's (leder/people.py), which the demo and the benchmarks use too."""

import copy
from datetime import date
from typing import Any

from leder.people import DELETE, NOTIFIER_ORGANISATION, notification, set_path

__all__ = [
    "DELETE",
    "NOTIFIER_ORGANISATION",
    "PERSONAL_STRINGS",
    "born_and_died",
    "clone",
    "notification",
    "set_path",
]

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
