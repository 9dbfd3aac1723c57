"""Made-up people and the partner notifications about them: the one generator the demo, the benchmarks and
the tests share.

- NHS numbers that pass the modulus 11 check (events/partner.py nhs_number_is_valid): at random from a
  generator (seeded for the demo, system randomness for the fault tests), one fixed number per person n
  (the benchmarks' worlds), or a run of distinct numbers (a new person each, nobody another run has met);
- `notification()`: a valid partner notification v1 as JSON-ready data, changed by dotted field names
  (`notification(**{"person.autism": True})`), the base every caller changes to the person it needs;
- `NewPeople`: notifications of people nobody else has notified (their own NHS number and family name),
  so that no notification is linked to another run's case as the same person.

The demo's caseload (leder/demo/caseload.py) draws who died, and of what, from the LeDeR reports' shares;
it takes its NHS numbers from here.
"""

import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

# Who sends `notification()`: a partner system's token in tests names this organisation unless told.
NOTIFIER_ORGANISATION = "Southmead Hospital"

# The modulus 11 weights of the first nine digits (NHS Data Dictionary).
_WEIGHTS = range(10, 1, -1)


def check_digit(stem: str) -> int | None:
    """The tenth digit of the NHS number whose first nine are `stem`; None if there is none (a remainder
    that makes 10: no valid number starts so)."""
    check = 11 - sum(int(d) * w for d, w in zip(stem, _WEIGHTS, strict=True)) % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def spaced(number: str) -> str:
    """As people write it: 943 476 5919."""
    return f"{number[:3]} {number[3:6]} {number[6:]}"


def nhs_number(rng: random.Random, *, with_spaces: bool = False) -> str:
    """A random valid NHS number (a look-alike, nobody's), drawn from `rng`: the same one for the same
    seed, so a seeded caseload is the same every time."""
    while True:
        stem = "".join(str(rng.randint(0, 9)) for _ in range(9))
        check = check_digit(stem)
        if check is not None:
            number = f"{stem}{check}"
            return spaced(number) if with_spaces else number


def nhs_number_for(n: int) -> str:
    """Person n's valid NHS number, the same one every time (n apart by 7, so neighbours differ more than
    a typing slip would)."""
    base = 400_000_000 + n * 7
    while (check := check_digit(f"{base:09d}")) is None:
        base += 1
    return f"{base:09d}{check}"


def nhs_numbers(start: int | None = None) -> Iterator[str]:
    """Distinct valid NHS numbers in order from the nine digits `start` (a random one if None: another run
    on the same system then meets nobody it met before)."""
    first = random.randrange(100_000_000, 800_000_000) if start is None else start
    for stem in itertools.count(first):
        check = check_digit(f"{stem:09d}")
        if check is not None:
            yield f"{stem:09d}{check}"


def notification(**changes: Any) -> dict[str, Any]:
    """A valid partner notification v1 as JSON-ready data. `changes` use dotted paths:
    notification(**{"person.autism": True}); the value DELETE removes the field."""
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


# A value for `notification()` that removes the field instead of setting it.
DELETE = object()


class NewPeople:
    """Notifications of people nobody else has notified: a fresh, valid NHS number each and a family name
    of their own, so that no notification is linked to another's case as the same person."""

    def __init__(
        self,
        start: int | None = None,
        family_name: Callable[[int], str] = lambda _: f"Testperson {uuid4().hex[:10]}",
    ) -> None:
        self._numbers = nhs_numbers(start)
        self._family_name = family_name
        self.count = 0

    def nhs_number(self) -> str:
        return next(self._numbers)

    def notification(self, **changes: Any) -> dict[str, Any]:
        self.count += 1
        return notification(
            **{
                "person.nhs_number": self.nhs_number(),
                "person.family_name": self._family_name(self.count),
                **changes,
            }
        )
