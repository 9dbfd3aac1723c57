"""Partner staff's page: a death notification as a form, field by field, following the partner
notification v1 contract (events/schemas/partner-notification.v1.json). The notification service
judges every field (POST /notifications); this page turns its answer into the form's errors."""

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from events.partner import ETHNIC_CATEGORY_NAMES
from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles

router = APIRouter()
PartnerPage = Annotated[Page, Depends(for_roles("partner_system"))]

Kind = Literal["text", "date", "choice", "flag", "maybe", "lines"]


@dataclass(frozen=True)
class Field:
    """One field of the contract: its dotted path there, how the form asks for it, and what the error
    says when it is missing (the service says that it is; these are the words a person reads)."""

    path: str
    kind: Kind
    label: str  # short, for the service's other messages: "Postcode: ..."
    missing: str

    @property
    def key(self) -> str:
        return self.path.replace(".", "-")


# In the order of the form, which is the order of the error summary.
FIELDS = [
    Field("person.nhs_number", "text", "NHS number", "Enter the NHS number"),
    Field("person.given_name", "text", "Given name", "Enter the person's given name"),
    Field("person.family_name", "text", "Family name", "Enter the person's family name"),
    Field("person.date_of_birth", "date", "Date of birth", "Enter the person's date of birth"),
    Field("person.sex", "choice", "Sex", "Select the person's sex"),
    Field("person.ethnicity", "choice", "Ethnicity", "Select the person's ethnic group"),
    Field("person.postcode", "text", "Postcode", "Enter the postcode of the person's home"),
    Field("person.gp_practice_code", "text", "GP practice code", "Enter the GP practice code"),
    Field("person.accommodation_type", "choice", "Where they lived", "Select where the person lived"),
    Field("death.date_of_death", "date", "Date of death", "Enter the date of death"),
    Field("death.place_of_death", "choice", "Place of death", "Select where the person died"),
    Field(
        "death.place_of_death_organisation",
        "text",
        "Organisation where they died",
        "Enter the organisation where the person died",
    ),
    Field("death.cause_of_death", "text", "Cause of death", "Enter the cause of death"),
    Field(
        "person.learning_disability",
        "maybe",
        "Learning disability",
        "Select if the person had a learning disability",
    ),
    Field(
        "person.learning_disability_level",
        "choice",
        "Level of learning disability",
        "Select the level of learning disability",
    ),
    Field("person.autism", "maybe", "Autism", "Select if the person was autistic"),
    Field(
        "circumstances.detained_mental_health_act_within_5_years",
        "flag",
        "Detained under the Mental Health Act",
        "Select if the person was detained under the Mental Health Act in the last 5 years",
    ),
    Field(
        "circumstances.detained_criminal_justice_within_5_years",
        "flag",
        "Detained in the criminal justice system",
        "Select if the person was detained in the criminal justice system in the last 5 years",
    ),
    Field(
        "circumstances.family_requested_focused_review",
        "flag",
        "Family asked for a focused review",
        "Select if the family asked for a focused review",
    ),
    Field(
        "circumstances.concerns_about_care",
        "flag",
        "Concerns about care",
        "Select if there are concerns about the care the person received",
    ),
    Field("circumstances.concerns_details", "text", "The concerns", "Describe the concerns"),
    Field(
        "circumstances.likely_learning",
        "flag",
        "Likely learning",
        "Select if the death is likely to bring learning",
    ),
    Field(
        "person.opted_out_of_secondary_use",
        "maybe",
        "Opted out of secondary use",
        "Select if the person opted out of their data being used for planning and research",
    ),
    Field(
        "organisations_involved",
        "lines",
        "Organisations involved",
        "Enter the organisations involved in the person's care",
    ),
    Field("next_of_kin.name", "text", "Next of kin's name", "Enter the next of kin's name"),
    Field(
        "next_of_kin.relationship",
        "text",
        "Relationship",
        "Enter the next of kin's relationship to the person",
    ),
    Field("next_of_kin.phone", "text", "Next of kin's phone number", "Enter the next of kin's phone number"),
    Field("next_of_kin.email", "text", "Next of kin's email", "Enter the next of kin's email address"),
    Field(
        "next_of_kin.involve_family",
        "flag",
        "Involve the family",
        "Select if the family can be involved in the review",
    ),
    Field("notifier.name", "text", "Your name", "Enter your name"),
    Field("notifier.role", "choice", "Your role", "Select the kind of organisation you notify for"),
    Field("notifier.organisation", "text", "Your organisation", "Enter your organisation"),
    Field("notifier.email", "text", "Your email address", "Enter your email address"),
    Field("notifier.phone", "text", "Your phone number", "Enter your phone number"),
]
BY_PATH = {f.path: f for f in FIELDS}
SECTIONS = ("notifier", "person", "death", "circumstances")
# A rule across a group's fields names the group: the error goes on the field it is about.
GROUP_FIELDS = {"notifier": "notifier.email", "next_of_kin": "next_of_kin.name"}

# Display-only labels for the contract's codes (its enums); no service serves them in words.
SEXES = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Not known"}
ETHNICITIES = ETHNIC_CATEGORY_NAMES
ACCOMMODATION = {
    "own_home_alone": "Their own home, alone",
    "own_home_with_family": "Their own home, with family",
    "supported_living": "Supported living",
    "residential_care": "A residential care home",
    "nursing_home": "A nursing home",
    "hospital": "A hospital",
    "secure_setting": "A secure setting",
    "homeless": "No fixed home",
    "other": "Somewhere else",
    "unknown": "Not known",
}
PLACES = {
    "hospital": "Hospital",
    "home": "Home",
    "care_home": "Care home",
    "hospice": "Hospice",
    "other": "Somewhere else",
}
LEVELS = {
    "mild": "Mild",
    "moderate": "Moderate",
    "severe": "Severe",
    "profound": "Profound",
    "unknown": "Not known",
}
NOTIFIER_ROLES = {
    "gp": "GP practice",
    "hospital": "Hospital",
    "care_provider": "Care provider",
    "family": "Family member",
    "other": "Other",
}
YES_NO = {"yes": "Yes", "no": "No"}
YES_NO_NOT_KNOWN = {"yes": "Yes", "no": "No", "not_known": "Not known"}
OUTCOMES = {
    "case_opened": "Case opened",
    "eligibility_to_confirm": "Eligibility to be confirmed",
    "referred_to_cdop": "Referred to the Child Death Overview Panel",
    "not_eligible": "Not eligible for a LeDeR review",
    "duplicate_linked": "Linked to a case already open",
}


@router.get("/notify", response_class=HTMLResponse)
async def notify_form(page: PartnerPage) -> HTMLResponse:
    values = {"notification_id": str(uuid4()), "notifier-organisation": page.person.organisation or ""}
    return _render(page, Form(values=values))


@router.post("/notify", response_model=None)
async def notify(page: PartnerPage) -> Response:
    form = await page.form()
    notification_id = _notification_id(form.get("notification_id"))
    form.values["notification_id"] = notification_id
    body = _body(form, notification_id)
    try:
        # Sent even when a date is not real: the service judges every other field at the same time,
        # and a date the page found not real reaches it in a form it can only refuse.
        await page.api.post("notification", "/notifications", body)
    except ApiError as refused:
        if refused.status != 422:
            raise
        _absorb(form, refused)
    if form.errors:
        form.errors = _in_form_order(form.errors)
        return _render(page, form, status_code=422)
    return page.redirect(f"/notify/{notification_id}")


@router.get("/notify/{notification_id}", response_class=HTMLResponse)
async def outcome(notification_id: UUID, page: PartnerPage) -> HTMLResponse:
    try:
        result = await page.api.get("notification", f"/notifications/{notification_id}")
    except ApiError as missing:
        if missing.status != 404:
            raise
        result = None  # notified on the partner topic and not taken yet, or never sent
    return page.render(
        "partner/outcome.html",
        result=result,
        outcome_words=OUTCOMES,
        notification_id=str(notification_id),
    )


def _render(page: Page, form: Form, status_code: int = 200) -> HTMLResponse:
    return page.render(
        "partner/notify.html",
        status_code=status_code,
        form=form if form.errors else None,
        values=form.values,
        sexes=SEXES,
        ethnicities=ETHNICITIES,
        accommodation=ACCOMMODATION,
        places=PLACES,
        levels=LEVELS,
        notifier_roles=NOTIFIER_ROLES,
        yes_no=YES_NO,
        yes_no_not_known=YES_NO_NOT_KNOWN,
    )


def _notification_id(posted: str) -> str:
    """The id the form was given when it was first shown: a resubmission is the same notification."""
    try:
        return str(UUID(posted))
    except ValueError:
        return str(uuid4())


def _body(form: Form, notification_id: str) -> dict[str, Any]:
    """The contract's JSON from the form: what was left empty is left out, for the service to name."""
    # Each section of the contract is sent, empty or not, so that the service names every field
    # missing in it at once, not the section as a whole (which would bring the errors in waves).
    body: dict[str, Any] = {"notification_id": notification_id, "schema_version": 1}
    body |= {section: {} for section in SECTIONS}
    for f in FIELDS:
        present, value = _value(form, f)
        if present:
            _set(body, f.path, value)
    kin = body.get("next_of_kin")
    if kin is not None and not any(v not in (None, "") for v in kin.values()):
        del body["next_of_kin"]
    return body


def _value(form: Form, f: Field) -> tuple[bool, Any]:
    raw = form.get(f.key).strip()
    if f.kind == "date":
        day, month, year = (form.get(f"{f.key}-{p}").strip() for p in ("day", "month", "year"))
        if not (day or month or year):
            return False, None
        real = form.date(f.key, f.label.lower())
        return True, real.isoformat() if real else f"{day}/{month}/{year}"
    if f.kind == "lines":
        lines = [line.strip() for line in raw.splitlines() if line.strip()]
        return bool(lines), lines
    if not raw:
        return False, None
    if f.kind in ("flag", "maybe"):
        return True, {"yes": True, "no": False}.get(raw)  # "not known" is null
    return True, raw


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _absorb(form: Form, refused: ApiError) -> None:
    """Each of the service's field errors on its field: `person.date_of_birth` -> `person-date_of_birth`."""
    for item in refused.field_errors:
        path = str(item.get("field", ""))
        f = _field_for(path)
        form.error(f.key, _message(f, str(item.get("type", "")), str(item.get("message", ""))))
    if not refused.field_errors:
        form.error(FIELDS[0].key, _sentence(refused.detail or "The notification service refused this"))


def _field_for(path: str) -> Field:
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        found = BY_PATH.get(GROUP_FIELDS.get(prefix, prefix))
        if found:
            return found
    # A path that names no field of the form (a section as a whole): its section's first field.
    return next((f for f in FIELDS if f.path.startswith(parts[0] + ".")), FIELDS[0])


def _message(f: Field, kind: str, message: str) -> str:
    if kind == "missing":
        return f.missing
    message = message.removeprefix("Value error, ")
    if message[:1].islower():  # the contract's own words: a sentence already
        return _sentence(message)
    return f"{f.label}: {message[:1].lower()}{message[1:]}"


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def _in_form_order(errors: dict[str, str]) -> dict[str, str]:
    order = {f.key: i for i, f in enumerate(FIELDS)}
    return dict(sorted(errors.items(), key=lambda item: order.get(item[0], len(order))))
