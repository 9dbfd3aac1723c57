"""The reviewer's and the senior reviewer's pages: my cases, a review as a task list, one form per kind
of record, submission for QA and a declared conflict of interest.

Every rule stays in the review and allocation services: the forms send what was typed (a date only
checked for being a date), and a refusal comes back onto the fields it names. The choices each form
offers come from the review service's GET /vocabulary."""

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from services.web.backend import Api, ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles

router = APIRouter()
Reviewer = Annotated[Page, Depends(for_roles("reviewer", "senior_reviewer"))]
Kind = Literal["text", "textarea", "date", "radios", "checkboxes", "suggest", "number", "yes_no"]


@dataclass(frozen=True)
class Field:
    """One field of a form: `name` is both the API body's field and the form's field id."""

    name: str
    label: str
    kind: Kind = "text"
    # The GET /vocabulary list its choices come from (a dotted path for a nested one).
    vocabulary: str = ""
    hint: str = ""
    # Said when the service refuses the field left empty (its own words otherwise).
    empty: str = ""


@dataclass(frozen=True)
class RecordForm:
    """A kind of record: its page at /reviews/{case_id}/{slug}, sent to the review service's
    POST /reviews/{case_id}/{slug}; a refusal naming no field goes on `refused_on` (the first field
    unless said)."""

    slug: str
    title: str
    fields: tuple[Field, ...]
    done: str
    intro: str = ""
    button: str = "Save"
    # Fields shown filled in from what is known: field -> a dotted path into the review ("review.")
    # or the case's facts ("case."), e.g. the pen portrait written so far.
    prefill: tuple[tuple[str, str], ...] = ()
    refused_on: str = ""


def _date(name: str, label: str, hint: str = "For example, 15 3 2026") -> Field:
    return Field(name, label, "date", hint=hint, empty=f"Enter the {label.lower()}")


FORMS: dict[str, RecordForm] = {
    f.slug: f
    for f in (
        RecordForm(
            "contacts",
            "Record a contact",
            (
                Field(
                    "party",
                    "Who was contacted",
                    "radios",
                    "contact_parties",
                    empty="Select who was contacted",
                ),
                Field("status", "What happened", "radios", "contact_statuses", empty="Select what happened"),
                _date("on", "Date of the contact"),
                Field("role", "Their role", hint="For another professional, for example ward manager"),
                Field("organisation", "Their organisation", hint="For another professional"),
            ),
            "Contact recorded",
            refused_on="role",
        ),
        RecordForm(
            "records",
            "Record requested or received",
            (
                Field(
                    "source",
                    "Where the records are from",
                    "suggest",
                    "record_sources",
                    empty="Select or enter where the records are from",
                ),
                _date("requested_on", "Date requested"),
                _date("received_on", "Date received", hint="Leave empty if they have not arrived yet"),
            ),
            "Records recorded",
            refused_on="requested_on",
        ),
        RecordForm(
            "pen-portrait",
            "Pen portrait",
            (
                Field(
                    "text",
                    "Describe the person",
                    "textarea",
                    hint="Who they were, what mattered to them, how they liked to be supported",
                    empty="Describe the person",
                ),
            ),
            "Pen portrait saved",
            prefill=(("text", "review.records.pen_portrait.text"),),
        ),
        RecordForm(
            "family-involvement",
            "Family involvement in the report",
            (
                Field(
                    "step",
                    "What happened",
                    "radios",
                    "family_involvement_steps",
                    empty="Select what happened",
                ),
                _date("on", "Date"),
                Field("comments", "The family's comments (optional)", "textarea"),
            ),
            "Family involvement recorded",
        ),
        RecordForm(
            "care-judgements",
            "Quality of care judgement",
            (
                Field(
                    "phase",
                    "Phase of care",
                    "suggest",
                    "phases_of_care",
                    empty="Select or enter the phase of care",
                ),
                Field(
                    "grade", "Quality of care", "radios", "care_grades", empty="Select the quality of care"
                ),
                Field(
                    "rationale", "Why you graded it so", "textarea", empty="Say why you graded the care so"
                ),
            ),
            "Care judgement recorded",
        ),
        RecordForm(
            "lapses-in-care",
            "Lapse in care",
            (
                Field("what", "What the lapse was", "textarea", empty="Describe the lapse in care"),
                Field("where", "Where it happened", empty="Enter where it happened"),
                Field("organisation", "Organisation responsible", empty="Enter the organisation"),
                Field(
                    "contribution",
                    "Did it contribute to the death?",
                    "radios",
                    "lapse_contributions",
                    empty="Select whether it contributed to the death",
                ),
            ),
            "Lapse in care recorded",
        ),
        RecordForm(
            "good-practice",
            "Good practice",
            (
                Field("text", "What went well", "textarea", empty="Describe the good practice"),
                Field(
                    "themes",
                    "Themes",
                    "checkboxes",
                    "learning_themes",
                    hint="Select all that apply",
                    empty="Select at least one theme",
                ),
            ),
            "Good practice recorded",
        ),
        RecordForm(
            "learning",
            "Learning",
            (
                Field("text", "What others can learn", "textarea", empty="Describe the learning"),
                Field(
                    "themes",
                    "Themes",
                    "checkboxes",
                    "learning_themes",
                    hint="Select all that apply",
                    empty="Select at least one theme",
                ),
            ),
            "Learning recorded",
        ),
        RecordForm(
            "recommendations",
            "Recommendation",
            (
                Field("what", "What should change", "textarea", empty="Describe the recommendation"),
                Field("organisation", "Organisation", empty="Enter the organisation"),
            ),
            "Recommendation recorded",
        ),
        RecordForm(
            "cause-of-death",
            "Cause of death",
            (
                Field("cause", "Cause of death", "textarea", empty="Enter the cause of death"),
                Field(
                    "preventable_or_treatable",
                    "Was the cause preventable or treatable?",
                    "yes_no",
                    "cause_of_death.preventable_or_treatable",
                    empty="Select yes or no",
                ),
                Field(
                    "age_at_death", "Age at death", "number", hint="In years", empty="Enter the age at death"
                ),
            ),
            "Cause of death recorded",
            prefill=(("age_at_death", "case.age_at_death"),),
        ),
        RecordForm(
            "safeguarding-referrals",
            "Safeguarding referral",
            (
                Field(
                    "to",
                    "Referred to",
                    hint="For example, the local authority's safeguarding team",
                    empty="Enter who you referred to",
                ),
                _date("on", "Date of the referral"),
                Field("why", "Why you referred", "textarea", empty="Say why you referred"),
            ),
            "Safeguarding referral recorded",
        ),
        RecordForm(
            "escalation",
            "Escalate to a focused review",
            (
                Field(
                    "detail",
                    "Why this case needs a focused review",
                    "textarea",
                    empty="Say why this case needs a focused review",
                ),
            ),
            "The review is now a focused review",
            intro="A focused review looks more widely at the care the person received.",
            button="Escalate to a focused review",
        ),
        RecordForm(
            "pause",
            "Pause the review",
            (
                Field(
                    "reason", "Why the review is paused", "radios", "pause_reasons", empty="Select a reason"
                ),
            ),
            "Review paused",
            intro="Resume it from the review's page when you can carry on.",
            button="Pause the review",
        ),
        RecordForm(
            "notes",
            "Add a note",
            (Field("text", "Note", "textarea", empty="Enter the note"),),
            "Note added",
            button="Add note",
        ),
    )
}

# Which form records each item of the review's task list (keys of the checklist).
TASKS: dict[str, tuple[str, str]] = {
    "family_or_carer_contact": ("contacts", "family"),
    "gp_contact_or_gp_records": ("contacts", "gp"),
    "other_professional_contact": ("contacts", "professional"),
    "multi_agency_contacts": ("contacts", "professional"),
    "pen_portrait": ("pen-portrait", ""),
    "quality_of_care_judgement": ("care-judgements", ""),
    "records_from_two_sources": ("records", ""),
    "learning": ("learning", ""),
    "good_practice": ("good-practice", ""),
    "lapses_in_care": ("lapses-in-care", ""),
    "recommendations": ("recommendations", ""),
    "cause_of_death": ("cause-of-death", ""),
    "safeguarding_referrals": ("safeguarding-referrals", ""),
    "family_involvement": ("family-involvement", ""),
}


def task_href(case_id: str, key: str) -> str:
    if key not in TASKS:
        return ""
    slug, party = TASKS[key]
    return f"/reviews/{case_id}/{slug}" + (f"?party={party}" if party else "")


def choices(vocabulary: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(value, label) pairs of a vocabulary list; booleans as the form posts them."""
    node: Any = vocabulary
    for part in path.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    values = node.get("values", []) if isinstance(node, dict) else node
    return [(_form_value(v["code"]), str(v["label"])) for v in values]


def _form_value(code: Any) -> str:
    return ("true" if code else "false") if isinstance(code, bool) else str(code)


def body_of(spec: RecordForm, form: Form) -> dict[str, Any]:
    """The API body from what was typed. Only "is this a date / a number" is checked here; a date or
    number that is not one is still sent (as is), so the service refuses the whole body, names every
    other field it refuses too, and writes nothing."""
    body: dict[str, Any] = {}
    for f in spec.fields:
        value: Any
        if f.kind == "date":
            parsed = form.date(f.name, f.label.lower(), required=False)
            typed = any(form.get(f"{f.name}-{p}").strip() for p in ("day", "month", "year"))
            value = parsed.isoformat() if parsed else ("not a date" if typed else None)
        elif f.kind == "checkboxes":
            value = form.getlist(f.name) or None
        elif f.kind == "suggest":
            value = form.get(f"{f.name}-other").strip() or form.get(f.name) or None
        elif f.kind == "number":
            value = form.get(f.name).strip() or None
            if value is not None and not value.isdigit():
                form.error(f.name, f"{f.label} must be a whole number")
        elif f.kind == "yes_no":
            value = {"true": True, "false": False}.get(form.get(f.name))
        else:
            value = form.get(f.name).strip() or None
        if value is not None:
            body[f.name] = int(value) if f.kind == "number" and value.isdigit() else value
    return body


def absorb(
    spec: RecordForm, form: Form, error: ApiError, body: dict[str, Any], review: dict[str, Any]
) -> None:
    """The service's refusal on the fields it names, in the form's order; an empty field refused
    reads as the field's own words; a refusal naming no field goes on the first field."""
    names = [f.name for f in spec.fields]
    found: dict[str, str] = {}
    for item in error.field_errors:
        name = str(item.get("field", "")).split(".")[0]
        if name not in names:
            name = spec.refused_on or names[0]
        f = spec.fields[names.index(name)]
        message = f.empty if name not in body and f.empty else str(item.get("message", "is not valid"))
        found.setdefault(name, message)
    if not found:
        found[spec.refused_on or names[0]] = readable(error, review["case_id"], review.get("reference") or "")
    for name, message in found.items():
        form.error(name, sentence(message))
    order = {name: i for i, name in enumerate(names)}
    form.errors = dict(sorted(form.errors.items(), key=lambda kv: order.get(kv[0], len(order))))


def readable(error: ApiError, case_id: str, reference: str) -> str:
    """A refusal's words, naming the case by its reference rather than its id."""
    detail = error.detail or "The service refused this"
    return detail.replace(case_id, reference) if reference else detail


def sentence(message: str) -> str:
    message = message.strip()
    return message[:1].upper() + message[1:]


async def _review(api: Api, case_id: str) -> dict[str, Any]:
    review: dict[str, Any] = await api.get("review", f"/reviews/{case_id}")
    return review


def _role_in_case(page: Page, review: dict[str, Any]) -> str:
    return "reviewer" if review.get("reviewer_user_id") == page.person.sub else "senior_reviewer"


# -- my cases ------------------------------------------------------------------------------------


@router.get("/reviews")
async def my_cases(page: Reviewer, status: str = "", sort: str = "deadline") -> Response:
    mine, vocabulary = await asyncio.gather(
        page.api.get("review", "/reviews/mine"), page.api.get("review", "/vocabulary")
    )
    reviews = [r for r in mine["reviews"] if not status or r["status"] == status]
    if sort == "reference":
        reviews.sort(key=lambda r: r.get("reference") or "")
    else:
        sort = "deadline"
    return page.render(
        "reviewer/my_cases.html",
        reviews=reviews,
        total=len(mine["reviews"]),
        status=status,
        sort=sort,
        statuses=choices(vocabulary, "review_statuses"),
        roles=dict(choices(vocabulary, "roles_in_case")),
    )


# -- the review as a task list --------------------------------------------------------------------


async def task_list(page: Page, case_id: str, form: Form | None = None, status_code: int = 200) -> Response:
    review = await _review(page.api, case_id)  # first: a case not theirs stops here (403)
    case, vocabulary = await asyncio.gather(
        page.api.get("notification", f"/cases/{case_id}"), page.api.get("review", "/vocabulary")
    )
    records = review["records"]
    pause = next((p for p in reversed(records["pauses"]) if not p["resumed_on"]), None)
    return page.render(
        "reviewer/task_list.html",
        status_code=status_code,
        form=form,
        review=review,
        case=case,
        records=records,
        pause=pause,
        role_in_case=_role_in_case(page, review),
        tasks=[{**item, "href": task_href(case_id, item["key"])} for item in review["checklist"]],
        focused_reasons=dict(choices(vocabulary, "focused_reasons")),
        note=FORMS["notes"],
        note_form=Form(),
    )


@router.get("/reviews/{case_id}")
async def review_page(case_id: str, page: Reviewer) -> Response:
    return await task_list(page, case_id)


@router.post("/reviews/{case_id}/submission")
async def submit(case_id: str, page: Reviewer) -> Response:
    await page.form()
    try:
        await page.api.post("review", f"/reviews/{case_id}/submission")
    except ApiError as error:
        if error.status != 422:
            raise
        form = Form()
        review = await _review(page.api, case_id)
        labels = {i["key"]: i for i in review["checklist"]}
        for key in error.problem.get("missing") or []:
            item = labels.get(key, {"label": str(key), "hint": ""})
            form.error(f"task-{key}", f"{item['label']}: {item['hint'][:1].lower()}{item['hint'][1:]}")
        if not form.errors:
            form.error("submit", sentence(readable(error, case_id, review.get("reference") or "")))
        return await task_list(page, case_id, form, status_code=422)
    return page.redirect(f"/reviews/{case_id}", flash="Review submitted for quality assurance")


@router.post("/reviews/{case_id}/resumption")
async def resume(case_id: str, page: Reviewer) -> Response:
    await page.form()
    await page.api.post("review", f"/reviews/{case_id}/resumption")
    return page.redirect(f"/reviews/{case_id}", flash="Review resumed")


# -- conflict of interest -------------------------------------------------------------------------


@router.get("/reviews/{case_id}/conflict")
async def conflict_page(case_id: str, page: Reviewer) -> Response:
    review = await _review(page.api, case_id)
    return page.render("reviewer/conflict.html", review=review, form=Form())


@router.post("/reviews/{case_id}/conflict")
async def declare_conflict(case_id: str, page: Reviewer) -> Response:
    form = await page.form()
    review = await _review(page.api, case_id)
    reference = review.get("reference") or ""
    try:
        await page.api.post(
            "allocation", f"/cases/{case_id}/conflict-declaration", {"reason": form.get("reason").strip()}
        )
    except ApiError as error:
        if error.status not in (409, 422):
            raise
        message = next((e.get("message") for e in error.field_errors), None)
        form.error("reason", sentence(message or readable(error, case_id, reference)))
        if not form.get("reason").strip():
            form.errors["reason"] = "Say what the conflict of interest is"
        return page.render("reviewer/conflict.html", status_code=error.status, review=review, form=form)
    return page.redirect(
        "/reviews",
        flash=f"You declared a conflict of interest in {reference}. The case has gone back to the "
        "Local Area Contact to allocate again.",
    )


# -- one form per kind of record ------------------------------------------------------------------


def _spec(kind: str) -> RecordForm:
    if kind not in FORMS:
        raise HTTPException(404)
    return FORMS[kind]


async def _render_form(
    page: Page,
    case_id: str,
    spec: RecordForm,
    form: Form,
    review: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    review = review or await _review(page.api, case_id)
    vocabulary = await page.api.get("review", "/vocabulary")
    return page.render(
        "reviewer/record_form.html",
        status_code=status_code,
        spec=spec,
        form=form,
        review=review,
        choices={f.name: choices(vocabulary, f.vocabulary) for f in spec.fields if f.vocabulary},
    )


def _lookup(node: Any, path: str) -> Any:
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@router.get("/reviews/{case_id}/{kind}")
async def record_form(case_id: str, kind: str, page: Reviewer, party: str = "") -> Response:
    spec = _spec(kind)
    review = await _review(page.api, case_id)
    known: dict[str, Any] = {"review": review}
    if any(path.startswith("case.") for _, path in spec.prefill):
        known["case"] = await page.api.get("notification", f"/cases/{case_id}")
    values = {name: _lookup(known, path) for name, path in spec.prefill}
    if party and any(f.name == "party" for f in spec.fields):
        values["party"] = party
    form = Form(values={k: str(v) for k, v in values.items() if v is not None})
    return await _render_form(page, case_id, spec, form, review)


@router.post("/reviews/{case_id}/{kind}")
async def record(case_id: str, kind: str, page: Reviewer) -> Response:
    spec = _spec(kind)
    form = await page.form()
    body = body_of(spec, form)
    try:
        await page.api.post("review", f"/reviews/{case_id}/{spec.slug}", body)
    except ApiError as error:
        if error.status not in (403, 409, 422):
            raise
        # The review is read first: someone the case is not allocated to gets the forbidden page,
        # never the form with the case's reference on it.
        review = await _review(page.api, case_id)
        absorb(spec, form, error, body, review)
        return await _render_form(page, case_id, spec, form, review, status_code=error.status)
    return page.redirect(f"/reviews/{case_id}", flash=spec.done)
