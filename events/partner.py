"""The partner notification: what GP practices, hospitals and care providers send, on
`leder.partner.death-notifications` or to `POST /notifications`. Published as JSON Schema in
events/schemas/partner-notification.v<version>.json; partners rely on it.

Versioned like any event: `SCHEMA_VERSION` is the version this code reads. A notification of an older
version is lifted by the upcasters registered for PARTNER_NOTIFICATION in events/registry.py (as an
event's are) before it is validated, and each older version's schema file stays published. To add a
version: change the model, raise SCHEMA_VERSION (and the Literal of `schema_version`), register
`@upcaster(PARTNER_NOTIFICATION, <old version>)`, and run `leder schemas`."""

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from events.registry import can_upcast, upcast
from events.text import refuse_unstorable

# The message type the partner notification's upcasters are registered under, and its current version.
PARTNER_NOTIFICATION = "partner.DeathNotification"
SCHEMA_VERSION = 1

NHS_ETHNIC_CATEGORIES = (
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "J",
    "K",
    "L",
    "M",
    "N",
    "P",
    "R",
    "S",
    "Z",
    "99",
)
EthnicCategory = Literal[
    "A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z", "99"
]
# The NHS data dictionary's words for each ethnic category, in its order: what every page, report
# and form shows beside (or instead of) the code.
ETHNIC_CATEGORY_NAMES: dict[str, str] = {
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
    "R": "Other ethnic group: Chinese",
    "S": "Other ethnic group: any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}
Sex = Literal["female", "male", "other", "unknown"]
PlaceOfDeath = Literal["hospital", "home", "care_home", "hospice", "other"]
LearningDisabilityLevel = Literal["mild", "moderate", "severe", "profound", "unknown"]
NotifierRole = Literal["gp", "hospital", "care_provider", "family", "other"]
AccommodationType = Literal[
    "own_home_alone",
    "own_home_with_family",
    "supported_living",
    "residential_care",
    "nursing_home",
    "hospital",
    "secure_setting",
    "homeless",
    "other",
    "unknown",
]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()-]{6,20}$")]

# The UK postcode format (GOV.UK's pattern, with the special GIR 0AA).
_POSTCODE = re.compile(
    r"^(GIR ?0AA|[A-PR-UWYZ]([0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPS-UW]|[A-HK-Y][0-9][ABEHMNPRV-Y])"
    r" ?[0-9][ABD-HJLNP-UW-Z]{2})$"
)


def nhs_number_is_valid(digits: str) -> bool:
    """Modulus 11: weights 10..2 on the first nine digits; 11 - (sum mod 11), 11 -> 0, 10 invalid."""
    if not re.fullmatch(r"[0-9]{10}", digits):
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    if check == 11:
        check = 0
    return check != 10 and check == int(digits[9])


def normalise_name(name: str) -> str:
    """For matching: case- and accent-insensitive, spacing folded."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str
    type: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "type": self.type}


class _Strict(BaseModel):
    # Strict: a partner that sends "yes" for a boolean or a number for a date hears about it.
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, strict=True)


class Notifier(_Strict):
    organisation: ShortText
    role: NotifierRole
    name: Name
    email: EmailStr | None = None
    phone: Phone | None = None

    @model_validator(mode="after")
    def _reachable(self) -> "Notifier":
        if self.email is None and self.phone is None:
            raise ValueError("give an email or a phone number (or both)")
        return self


class Person(_Strict):
    nhs_number: str | None = Field(
        default=None, description="10 digits with a valid check digit; spaces allowed"
    )
    given_name: Name
    family_name: Name
    date_of_birth: date
    sex: Sex
    ethnicity: EthnicCategory = Field(description="NHS ethnic category code; Z not stated, 99 not known")
    postcode: str = Field(max_length=10)
    gp_practice_code: Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{5}$")] | None = None
    learning_disability: bool | None = Field(description="null: not known")
    learning_disability_level: LearningDisabilityLevel
    autism: bool | None = Field(description="null: not known")
    accommodation_type: AccommodationType
    opted_out_of_secondary_use: bool | None

    @field_validator("nhs_number")
    @classmethod
    def _nhs_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = value.replace(" ", "")
        if not re.fullmatch(r"[0-9]{10}", digits):
            raise ValueError("an NHS number is 10 digits")
        if not nhs_number_is_valid(digits):
            raise ValueError("the NHS number's check digit is wrong")
        return digits

    @field_validator("postcode")
    @classmethod
    def _postcode(cls, value: str) -> str:
        compact = value.upper().replace(" ", "")
        if not _POSTCODE.match(compact):
            raise ValueError("not a UK postcode")
        return f"{compact[:-3]} {compact[-3:]}"


class Death(_Strict):
    date_of_death: date
    place_of_death: PlaceOfDeath
    place_of_death_organisation: ShortText | None = None
    cause_of_death: LongText | None = None


class Circumstances(_Strict):
    detained_mental_health_act_within_5_years: bool
    detained_criminal_justice_within_5_years: bool
    family_requested_focused_review: bool
    concerns_about_care: bool
    concerns_details: LongText | None = None
    likely_learning: bool


class NextOfKin(_Strict):
    name: Name
    relationship: ShortText
    phone: Phone | None = None
    email: EmailStr | None = None
    involve_family: bool = Field(description="false when the person did not want their family involved")


class PartnerNotification(_Strict):
    # The docstring is the published schema's description: name the version (SCHEMA_VERSION) in it.
    """A death notification, version 1."""

    notification_id: UUID = Field(description="the notifier's own id; re-sending it is idempotent")
    schema_version: Literal[1]  # SCHEMA_VERSION (a Literal takes no name)
    notifier: Notifier
    person: Person
    death: Death
    circumstances: Circumstances
    organisations_involved: list[ShortText] = Field(default_factory=list, max_length=50)
    next_of_kin: NextOfKin | None = None

    @model_validator(mode="after")
    def _storable(self) -> "PartnerNotification":
        # A NUL in any text (a notifier's organisation, a name) is refused naming the field, before
        # the intake stores anything (events/text.py). After the fields, not before: a validator
        # before them would have the strict fields judge Python values, not JSON (a date as text).
        refuse_unstorable(self.model_dump(), type(self).__name__)
        return self

    def date_errors(self, today: date) -> list[FieldError]:
        """Rules across fields, each error naming the field it is about."""
        errors = []
        if self.death.date_of_death > today:
            errors.append(
                FieldError("death.date_of_death", "the date of death is in the future", "date_in_future")
            )
        if self.person.date_of_birth > today:
            errors.append(
                FieldError("person.date_of_birth", "the date of birth is in the future", "date_in_future")
            )
        if self.death.date_of_death < self.person.date_of_birth:
            errors.append(
                FieldError(
                    "death.date_of_death", "the date of death is before the date of birth", "date_order"
                )
            )
        if self.person.date_of_birth.year < 1880:
            errors.append(
                FieldError("person.date_of_birth", "the date of birth is before 1880", "date_too_old")
            )
        return errors


class InvalidNotification(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def parse_notification(raw: bytes | str | dict[str, Any], today: date | None = None) -> PartnerNotification:
    """Validate a partner notification from either door; every error names its field."""
    raw = _upcast(raw)
    try:
        # Always as JSON, so that a dict (tests, tools) is judged exactly as the wire is.
        notification = PartnerNotification.model_validate_json(
            json.dumps(raw) if isinstance(raw, dict) else raw
        )
    except ValidationError as exc:
        raise InvalidNotification(
            [
                FieldError(".".join(str(p) for p in err["loc"]) or "(body)", err["msg"], err["type"])
                for err in exc.errors(include_url=False, include_input=False)
            ]
        ) from exc
    errors = notification.date_errors(today or datetime.now(UTC).date())
    if errors:
        raise InvalidNotification(errors)
    return notification


def _upcast(raw: bytes | str | dict[str, Any]) -> bytes | str | dict[str, Any]:
    """A notification of an older version, lifted to SCHEMA_VERSION; anything else as it came (a
    current one, or one validation will refuse naming the field: not JSON, an unknown version)."""
    try:
        parsed = raw if isinstance(raw, dict) else json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    version = parsed.get("schema_version") if isinstance(parsed, dict) else None
    if type(version) is not int or not 1 <= version < SCHEMA_VERSION:
        return raw
    if not can_upcast(PARTNER_NOTIFICATION, version, SCHEMA_VERSION):
        return raw
    return {**upcast(PARTNER_NOTIFICATION, version, SCHEMA_VERSION, parsed), "schema_version": SCHEMA_VERSION}


PUBLISHED_SCHEMAS: dict[str, type[BaseModel]] = {
    f"partner-notification.v{SCHEMA_VERSION}.json": PartnerNotification
}
