"""A realistic caseload for `leder demo`: who died, who notified, and what then happens to each case.

Plain Python and seeded, so one seed always gives the same caseload. The shares follow the LeDeR
annual reports in round figures: median age at death in the early sixties, a few more men than
women, most people White British, most with a learning disability (mild to profound), some autistic
without one; and the notifications a LeDeR team really gets: children (for the CDOP), people with
neither diagnosis, diagnoses not known, the same death notified twice.
"""

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal
from uuid import UUID

from leder.people import nhs_number

Outcome = Literal[
    "case_opened", "duplicate_linked", "referred_to_cdop", "not_eligible", "eligibility_to_confirm"
]
Door = Literal["kafka", "http"]

# NHS ethnic categories (Data Dictionary), weights in per cent of notifications.
ETHNICITY = {
    "A": 78.0,
    "B": 1.5,
    "C": 3.5,
    "D": 0.6,
    "E": 0.4,
    "F": 0.4,
    "G": 0.4,
    "H": 1.8,
    "J": 1.8,
    "K": 0.6,
    "L": 0.8,
    "M": 1.2,
    "N": 1.0,
    "P": 0.6,
    "R": 0.3,
    "S": 0.9,
    "Z": 3.5,
    "99": 1.7,
}
LEVELS = {"mild": 32, "moderate": 33, "severe": 20, "profound": 9, "unknown": 6}
PLACES = {"hospital": 62, "care_home": 20, "home": 13, "hospice": 3, "other": 2}
ACCOMMODATION = {
    "supported_living": 30,
    "residential_care": 28,
    "own_home_with_family": 18,
    "nursing_home": 10,
    "own_home_alone": 8,
    "hospital": 2,
    "secure_setting": 1,
    "other": 2,
    "unknown": 1,
}
CAUSES = {
    "pneumonia": 16,
    "aspiration pneumonia": 12,
    "sepsis": 8,
    "cancer": 12,
    "heart disease": 11,
    "epilepsy": 6,
    "dementia": 7,
    "COVID-19": 3,
    "bowel obstruction": 3,
    "stroke": 5,
    "chronic obstructive pulmonary disease": 5,
    "other causes": 12,
}
THEMES_BY_CAUSE = {
    "pneumonia": ["diagnostic_overshadowing", "delays_in_care"],
    "aspiration pneumonia": ["aspiration_pneumonia", "communication"],
    "sepsis": ["sepsis", "delays_in_care"],
    "cancer": ["access_to_services", "reasonable_adjustments_missing"],
    "heart disease": ["annual_health_check", "access_to_services"],
    "epilepsy": ["epilepsy_care", "medication"],
    "dementia": ["end_of_life_care", "mental_capacity_act_not_followed"],
    "COVID-19": ["dnacpr_process_not_followed", "communication"],
    "bowel obstruction": ["constipation", "diagnostic_overshadowing"],
    "stroke": ["delays_in_care", "care_coordination"],
    "chronic obstructive pulmonary disease": ["annual_health_check", "care_coordination"],
    "other causes": ["family_involvement", "communication"],
}
# Causes a good service could have prevented or treated (the avoidable-death definition).
TREATABLE = {"pneumonia", "aspiration pneumonia", "sepsis", "epilepsy", "bowel obstruction", "COVID-19"}
PAUSE_REASONS = {
    "coroners_investigation_or_inquest": 55,
    "safeguarding_adult_review_or_enquiry": 15,
    "police_investigation": 10,
    "serious_incident_review": 12,
    "family_asked_for_delay": 8,
}

HOSPITALS = [
    ("Southmead Hospital", "North Bristol NHS Trust"),
    ("Bristol Royal Infirmary", "University Hospitals Bristol and Weston NHS Foundation Trust"),
    ("Weston General Hospital", "University Hospitals Bristol and Weston NHS Foundation Trust"),
]
CARE_PROVIDERS = ["Brunswick Care Ltd", "Avon Supported Living", "Kingswood Lodge", "Clevedon Court Care"]
GP_PRACTICES = [
    ("Horfield Health Centre", "L81001"),
    ("Fishponds Family Practice", "L81018"),
    ("Clevedon Medical Centre", "L81086"),
    ("Portishead Medical Group", "L81039"),
    ("Weston Hillside Surgery", "L81624"),
    ("Bedminster Family Practice", "L81012"),
]
COMMUNITY = ["Sirona Care and Health", "Avon and Wiltshire Mental Health Partnership"]
GIVEN = {
    "male": [
        "James",
        "David",
        "Michael",
        "Peter",
        "Paul",
        "Mark",
        "Daniel",
        "Tomasz",
        "Imran",
        "Kwame",
        "Rhys",
        "Joseph",
        "Sean",
        "Arjun",
        "Callum",
        "Gareth",
    ],
    "female": [
        "Susan",
        "Margaret",
        "Sarah",
        "Helen",
        "Joanne",
        "Zoë",
        "Amira",
        "Grace",
        "Siobhan",
        "Priya",
        "Chloe",
        "Rachel",
        "Ngozi",
        "Elaine",
        "Bethan",
        "Lucy",
    ],
}
FAMILY = [
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Walker",
    "Wright",
    "Khan",
    "Patel",
    "Hughes",
    "O'Brien",
    "Nowak",
    "Mensah",
    "Clarke",
    "Edwards",
    "Morgan",
    "Hussain",
    "Lewis",
    "Okafor",
    "Green",
    "Ahmed",
    "Cooper",
    "Ward",
    "Kaur",
]
POSTCODE_DISTRICTS = [
    "BS1",
    "BS2",
    "BS3",
    "BS4",
    "BS5",
    "BS7",
    "BS10",
    "BS13",
    "BS16",
    "BS20",
    "BS21",
    "BS23",
]


@dataclass(frozen=True)
class Story:
    """What happens to an opened case, in days. The LAC, the reviewer and the panel follow it; the
    system decides everything else (review type, deadlines, overdue, escalation)."""

    wait_for_allocation: int
    review_days: int  # active work from allocation to submission
    pause_after: int | None = None
    pause_days: int = 0
    pause_reason: str = "coroners_investigation_or_inquest"
    lapse_in_care: bool = False
    conflict_declared: bool = False
    returned_by_qa: bool = False
    rework_days: int = 14
    quality_rating: int = 4
    themes: tuple[str, ...] = ()
    preventable_or_treatable: bool = False
    eligibility_confirmed: bool = True
    eligibility_after: int = 5
    ethnicity_recorded_later: str | None = None
    ethnicity_after: int = 10
    care_grade: int = 3


@dataclass(frozen=True)
class Notice:
    """One notification as a partner sends it, on a simulated day, and what the system should make of it."""

    day: date
    door: Door
    body: dict[str, Any]
    expected: Outcome
    age_at_death: int
    story: Story | None = None
    duplicate_of: UUID | None = None


@dataclass(frozen=True)
class Reviewer:
    user_id: str
    name: str
    organisations: tuple[str, ...]
    senior: bool
    capacity: int
    trained_days_before_start: int = 0
    refresher_after_days: int = 365  # now and then late: the reviewer takes no case meanwhile


@dataclass
class Caseload:
    start: date
    end: date
    notices: list[Notice]
    reviewers: list[Reviewer] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for n in self.notices if n.expected == outcome)


def _pick(rng: random.Random, weights: dict[str, float] | dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def postcode(rng: random.Random) -> str:
    inward = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{rng.choice(POSTCODE_DISTRICTS)} {rng.randint(1, 9)}{rng.choice(inward)}{rng.choice(inward)}"


def _age(rng: random.Random) -> int:
    if rng.random() < 0.04:  # children and young people: the CDOP reviews them
        return rng.randint(1, 17)
    return max(18, min(99, round(rng.gauss(62, 14))))


def _birth_date(rng: random.Random, died: date, age: int) -> date:
    """A date of birth that makes the person `age` on the day they died."""
    latest = (
        died.replace(year=died.year - age)
        if not (died.month == 2 and died.day == 29)
        else died - timedelta(days=365 * age)
    )
    return latest - timedelta(days=rng.randint(0, 364))


def _story(rng: random.Random, cause: str) -> Story:
    paused = rng.random() < 0.14
    themes = tuple(THEMES_BY_CAUSE[cause][: rng.choice((1, 2))])
    return Story(
        wait_for_allocation=max(1, round(rng.gammavariate(2.0, 6.0))),
        review_days=max(35, round(rng.gauss(120, 40))),
        pause_after=rng.randint(10, 45) if paused else None,
        pause_days=rng.randint(30, 150) if paused else 0,
        pause_reason=_pick(rng, PAUSE_REASONS),
        lapse_in_care=rng.random() < 0.11,
        conflict_declared=rng.random() < 0.03,
        returned_by_qa=rng.random() < 0.2,
        rework_days=rng.randint(7, 28),
        quality_rating=rng.choices([2, 3, 4, 5], weights=[5, 25, 50, 20])[0],
        themes=themes,
        preventable_or_treatable=cause in TREATABLE and rng.random() < 0.6,
        eligibility_confirmed=rng.random() < 0.85,
        eligibility_after=rng.randint(2, 10),
        ethnicity_after=rng.randint(3, 20),
        care_grade=rng.choice([2, 2, 3, 3, 4]),
        ethnicity_recorded_later=rng.choice(["A", "A", "A", "C", "H", "N"]) if rng.random() < 0.6 else None,
    )


def _notification(
    rng: random.Random, notified: date, number: int
) -> tuple[dict[str, Any], Outcome, int, str]:
    sex = rng.choices(["male", "female"], weights=[58, 42])[0]
    age = _age(rng)
    died = notified - timedelta(days=min(60, round(rng.expovariate(1 / 6))))
    ethnicity = _pick(rng, ETHNICITY)
    diagnosis = rng.random()
    if diagnosis < 0.80:
        learning_disability: bool | None = True
        autism: bool | None = rng.random() < 0.28
    elif diagnosis < 0.89:
        learning_disability, autism = False, True  # autistic without a learning disability
    elif diagnosis < 0.95:
        learning_disability, autism = None, None  # nobody knows yet: the LAC confirms
    else:
        learning_disability, autism = False, False  # neither: not for LeDeR
    level = _pick(rng, LEVELS) if learning_disability else "unknown"
    place = _pick(rng, PLACES)
    hospital, trust = rng.choice(HOSPITALS)
    gp_name, gp_code = rng.choice(GP_PRACTICES)
    carer = rng.choice(CARE_PROVIDERS)
    notifier_role = rng.choices(["hospital", "gp", "care_provider", "family"], weights=[55, 20, 20, 5])[0]
    notifier_org = {"hospital": hospital, "gp": gp_name, "care_provider": carer, "family": "Family member"}[
        notifier_role
    ]
    cause = _pick(rng, CAUSES)
    given, family = rng.choice(GIVEN[sex]), rng.choice(FAMILY)
    concerns = rng.random() < 0.12
    body: dict[str, Any] = {
        "notification_id": str(UUID(int=rng.getrandbits(128), version=4)),
        "schema_version": 1,
        "notifier": {
            "organisation": notifier_org,
            "role": notifier_role,
            "name": f"{rng.choice(GIVEN['female'] + GIVEN['male'])} {rng.choice(FAMILY)}",
            "email": f"leder.notifications{number}@example.nhs.uk",
        },
        "person": {
            "nhs_number": nhs_number(rng, with_spaces=True) if rng.random() < 0.97 else None,
            "given_name": given,
            "family_name": family,
            "date_of_birth": _birth_date(rng, died, age).isoformat(),
            "sex": sex,
            "ethnicity": ethnicity,
            "postcode": postcode(rng),
            "gp_practice_code": gp_code,
            "learning_disability": learning_disability,
            "learning_disability_level": level,
            "autism": autism,
            "accommodation_type": _pick(rng, ACCOMMODATION),
            "opted_out_of_secondary_use": rng.random() < 0.03,
        },
        "death": {
            "date_of_death": died.isoformat(),
            "place_of_death": place,
            "place_of_death_organisation": hospital if place == "hospital" else None,
            "cause_of_death": cause,
        },
        "circumstances": {
            "detained_mental_health_act_within_5_years": rng.random() < 0.03,
            "detained_criminal_justice_within_5_years": rng.random() < 0.01,
            "family_requested_focused_review": rng.random() < 0.05,
            "concerns_about_care": concerns,
            "concerns_details": "the family felt his pain was not recognised" if concerns else None,
            "likely_learning": rng.random() < 0.1,
        },
        "organisations_involved": sorted({trust, gp_name, carer}),
        "next_of_kin": {
            "name": f"{rng.choice(GIVEN['female'] + GIVEN['male'])} {family}",
            "relationship": rng.choice(["sister", "brother", "mother", "father", "niece", "nephew"]),
            "phone": f"0117 496 {rng.randint(0, 9999):04d}",
            "involve_family": rng.random() < 0.93,
        },
    }
    if age < 18:
        outcome: Outcome = "referred_to_cdop"
    elif learning_disability is None:
        outcome = "eligibility_to_confirm"
    elif not learning_disability and not autism:
        outcome = "not_eligible"
    else:
        outcome = "case_opened"
    return body, outcome, age, cause


def _renotified(rng: random.Random, first: Notice, day: date) -> dict[str, Any]:
    """The same death, told again by someone else (a GP after the hospital, say)."""
    body = {k: (dict(v) if isinstance(v, dict) else v) for k, v in first.body.items()}
    body["notification_id"] = str(UUID(int=rng.getrandbits(128), version=4))
    gp_name, _ = rng.choice(GP_PRACTICES)
    body["notifier"] = {**body["notifier"], "organisation": gp_name, "role": "gp"}
    return body


def reviewers(rng: random.Random, count: int = 24) -> list[Reviewer]:
    employers = [
        "Sirona Care and Health",
        "BNSSG ICB",
        "Bristol City Council",
        "North Somerset Council",
        "Avon and Wiltshire Mental Health Partnership",
        "Independent reviewer",
    ]
    made = []
    for i in range(count):
        sex = rng.choice(["male", "female"])
        name = f"{rng.choice(GIVEN[sex])} {rng.choice(FAMILY)}"
        made.append(
            Reviewer(
                user_id=f"reviewer{i + 1:02d}",
                name=name,
                organisations=(employers[i % len(employers)],),
                senior=i < max(2, count // 4),
                capacity=rng.randint(5, 8),
                trained_days_before_start=rng.randint(0, 200),
                refresher_after_days=rng.randint(320, 390),
            )
        )
    return made


def generate(seed: int, notifications: int, start: date, end: date) -> Caseload:
    """`notifications` notices on days between `start` and `end` (exclusive), oldest first."""
    rng = random.Random(seed)
    span = (end - start).days
    days = sorted(start + timedelta(days=rng.randrange(span)) for _ in range(notifications))
    notices: list[Notice] = []
    for number, day in enumerate(days):
        earlier = [n for n in notices if n.expected == "case_opened" and 0 < (day - n.day).days <= 30]
        if earlier and rng.random() < 0.05:
            first = rng.choice(earlier)
            notices.append(
                Notice(
                    day,
                    "kafka",
                    _renotified(rng, first, day),
                    "duplicate_linked",
                    first.age_at_death,
                    duplicate_of=UUID(first.body["notification_id"]),
                )
            )
            continue
        body, outcome, age, cause = _notification(rng, day, number)
        door: Door = "http" if rng.random() < 0.2 else "kafka"
        story = _story(rng, cause) if outcome in ("case_opened", "eligibility_to_confirm") else None
        notices.append(Notice(day, door, body, outcome, age, story))
    return Caseload(start, end, notices, reviewers(rng))
