"""One case for the LAC: its facts, who reviews it, its timeline, and what can be done with it now
(confirm eligibility, record ethnicity, see personal details with a reason)."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.pages import lac_words
from services.web.pages.lac_common import LacPage, case_path, focused_reason_labels, gather, names
from services.web.roles import ROLE_NAMES
from services.web.templating import dates_in_words

router = APIRouter()
# Reading the history is itself logged in the audit log; the timeline shows what happened to the case.
HIDDEN_FROM_TIMELINE = {"audit.AuditLogRead"}


@router.get("/lac/cases/{case_id}", response_class=HTMLResponse)
async def case_page(case_id: UUID, page: LacPage) -> HTMLResponse:
    case, people, history, reasons = await gather(
        page.api.get("notification", f"/cases/{case_id}"),
        names(page.api),
        page.api.get("audit", f"/audit/cases/{case_id}/history"),
        focused_reason_labels(page.api),
    )
    timeline = [
        {
            "when": e["when"],
            "who": _who(e, people, page.person.sub, page.person.name),
            "what": _sentence(e["summary"]),
        }
        for e in history["entries"]
        if e["event_type"] not in HIDDEN_FROM_TIMELINE
    ]
    return page.render(
        "lac/case.html",
        case=case,
        reasons=reasons,
        reviewer=_named(case["reviewer_user_id"], people),
        senior=_named(case["senior_reviewer_user_id"], people),
        timeline=timeline,
        ethnicity=lac_words.ethnicity,
        place=lac_words.place,
    )


async def case_of(page: LacPage, case_id: UUID) -> dict[str, Any]:
    case: dict[str, Any] = await page.api.get("notification", f"/cases/{case_id}")
    return case


def _named(sub: str | None, people: dict[str, str]) -> str | None:
    return None if sub is None else people.get(sub, sub)


def _who(entry: dict[str, Any], people: dict[str, str], me: str, my_name: str) -> str:
    if entry.get("who_name"):
        return str(entry["who_name"])
    if entry["who"] == me:
        return my_name
    if entry["who"] in people:
        return people[entry["who"]]
    if entry.get("actor_kind") != "user":
        return "The system"
    return ROLE_NAMES.get(str(entry.get("role")), str(entry["who"]))


def _sentence(text: str) -> str:
    text = dates_in_words(text)
    return text[:1].upper() + text[1:]


# --- Personal details: shown once, on the page that answers the reason, never stored. ---


@router.get("/lac/cases/{case_id}/personal-details", response_class=HTMLResponse)
async def personal_reason(case_id: UUID, page: LacPage) -> HTMLResponse:
    case = await case_of(page, case_id)
    return page.render("lac/personal_reason.html", case=case, form=None, values={})


@router.post("/lac/cases/{case_id}/personal-details", response_class=HTMLResponse)
async def personal_details(case_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    case = await case_of(page, case_id)
    reason = form.text("reason", "Enter why you need to see the personal details", max_length=500)
    if form.ok:
        try:
            found = await page.api.get("notification", f"/cases/{case_id}/person", reason=reason)
        except ApiError as refused:
            if refused.status not in (410, 422):
                raise
            if refused.status == 410:
                form.error("reason", "The personal details were destroyed at the end of the retention period")
            else:
                form.absorb(refused, default="reason")
        else:
            return page.render("lac/personal_details.html", case=case, details=found["person"], reason=reason)
    return page.render("lac/personal_reason.html", case=case, form=form, values=form.values, status_code=400)


# --- Eligibility: confirm (with the diagnoses) or reject (with a reason). ---

DIAGNOSES = ("learning_disability", "autism")


@router.get("/lac/cases/{case_id}/eligibility", response_class=HTMLResponse)
async def eligibility_form(case_id: UUID, page: LacPage) -> HTMLResponse:
    case = await case_of(page, case_id)
    return page.render("lac/eligibility.html", case=case, form=None, values={})


@router.post("/lac/cases/{case_id}/eligibility", response_class=HTMLResponse)
async def decide_eligibility(case_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    decision = form.choice("decision", ["confirm", "reject"], "Select whether LeDeR reviews this death")
    body: dict[str, Any] = {"decision": decision}
    if decision == "confirm":
        chosen = form.getlist("diagnoses")
        body |= {d: d in chosen for d in DIAGNOSES}
    elif decision == "reject":
        body["reason"] = form.text("reason", "Enter why LeDeR does not review this death", max_length=1000)
    if form.ok:
        try:
            changed = await page.api.post("notification", f"/cases/{case_id}/eligibility", body)
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            fields = {"reason": "reason", "learning_disability": "diagnoses", "autism": "diagnoses"}
            default = {"reason_required": "reason", "no_diagnosis_confirmed": "diagnoses"}.get(
                refused.code, "decision"
            )
            form.absorb(refused, fields=fields, default=default)
        else:
            after = changed["case"]
            if decision == "confirm":
                flash = f"Eligibility confirmed: the case is {after['reference']} and waits for allocation"
            else:
                flash = "Eligibility rejected: LeDeR does not review this death"
            return page.redirect(case_path(case_id), flash=flash)
    case = await case_of(page, case_id)
    return page.render("lac/eligibility.html", case=case, form=form, values=form.values, status_code=400)


# --- Ethnicity: the NHS ethnic category, when the notifier did not state it or it was wrong. ---


@router.get("/lac/cases/{case_id}/ethnicity", response_class=HTMLResponse)
async def ethnicity_form(case_id: UUID, page: LacPage) -> HTMLResponse:
    case = await case_of(page, case_id)
    values = {"ethnicity": case["facts"]["ethnicity"]}
    return page.render(
        "lac/ethnicity.html", case=case, form=None, values=values, categories=lac_words.ETHNIC_CATEGORIES
    )


@router.post("/lac/cases/{case_id}/ethnicity", response_class=HTMLResponse)
async def record_ethnicity(case_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    chosen = form.get("ethnicity")
    if not chosen:
        form.error("ethnicity", "Select the person's ethnic category")
    if form.ok:
        try:
            changed = await page.api.post(
                "notification", f"/cases/{case_id}/ethnicity", {"ethnicity": chosen}
            )
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            form.absorb(refused, default="ethnicity")
        else:
            flash = f"Ethnicity recorded: {lac_words.ethnicity(chosen)}"
            if "notification.CaseEscalatedToFocused" in changed.get("events", []):
                flash += ". The case now needs a focused review"
            return page.redirect(case_path(case_id), flash=flash)
    case = await case_of(page, case_id)
    return page.render(
        "lac/ethnicity.html",
        case=case,
        form=form,
        values=form.values,
        categories=lac_words.ETHNIC_CATEGORIES,
        status_code=400,
    )
