"""Pages of the Governance Group: the actions it agreed (by status and organisation, flagged overdue or
due soon by the governance service), agreeing one, its history, progress and completion with evidence.
The reports live in governance_reports (imported here so app.py includes one router)."""

import asyncio
import re
from collections import defaultdict
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from services.web.backend import Api, ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles
from services.web.pages import governance_reports

router = APIRouter()
router.include_router(governance_reports.router)
GovernancePage = Annotated[Page, Depends(for_roles("governance"))]
STATUSES = [("open", "Open"), ("overdue", "Overdue"), ("completed", "Completed"), ("", "All")]
# Words for a field the service refused as empty or missing: the rule is the service's, the words ours.
ENTER = {
    "what": "Enter what the action is",
    "organisation": "Enter the organisation that will act",
    "lead": "Enter who leads the action",
    "due_on": "Enter the date the action is due",
    "update": "Enter the progress made",
    "evidence": "Enter the evidence that the action is complete",
}
ACTION_FIELDS = {"what": "what", "organisation": "organisation", "lead": "lead", "due_on": "due_on"}
ACTION_FIELDS |= {"case_references": "case_references", "case_ids": "case_references", "themes": "themes"}


@router.get("/governance", response_class=HTMLResponse)
async def actions(
    page: GovernancePage,
    status: Annotated[Literal["open", "overdue", "completed", ""], Query()] = "open",
    organisation: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    everything, chosen = await asyncio.gather(
        page.api.get("governance", "/actions"),
        page.api.get("governance", "/actions", status=status or None, organisation=organisation or None),
    )
    counts = {code: sum(1 for a in everything["actions"] if _in_status(a, code)) for code, _ in STATUSES}
    organisations = sorted({a["organisation"] for a in everything["actions"]}, key=str.casefold)
    return page.render(
        "governance/actions.html",
        actions=chosen["actions"],
        status=status,
        organisation=organisation,
        statuses=STATUSES,
        counts=counts,
        organisations=organisations,
    )


def _in_status(action: dict[str, Any], status: str) -> bool:
    """As GET /actions?status= chooses: `open` includes the overdue (the service says they are open)."""
    return not status or action["status"] == status or (status == "open" and action["status"] == "overdue")


@router.get("/governance/actions/new", response_class=HTMLResponse)
async def new_action(page: GovernancePage) -> HTMLResponse:
    return await _new_action_page(page, None)


@router.post("/governance/actions/new", response_class=HTMLResponse)
async def agree_action(page: GovernancePage) -> Response:
    form = await page.form()
    due_on = form.date("due_on", "the date the action is due")
    # References as people type them: separated by commas, semicolons, spaces or new lines. The
    # governance service says which it does not know, on this field.
    references = [r for r in re.split(r"[\s,;]+", form.get("case_references")) if r]
    body: dict[str, Any] = {
        "what": form.get("what").strip(),
        "organisation": form.get("organisation").strip(),
        "lead": form.get("lead").strip(),
        "themes": form.getlist("themes"),
    }
    if references:
        body["case_references"] = references
    # Without a real due date the body goes without one: the service refuses it (due_on is required)
    # and names every other field it refuses too, so the person sees all their errors at once.
    if due_on is not None:
        body["due_on"] = due_on.isoformat()
    try:
        made = await page.api.post("governance", "/actions", body)
    except ApiError as refused:
        if refused.status not in (409, 422):
            raise
        absorb(form, refused, ACTION_FIELDS, default="what")
        in_page_order(form, ["what", "organisation", "lead", "due_on", "case_references", "themes"])
        return await _new_action_page(page, form)
    return page.redirect(f"/governance/actions/{made['action_id']}", flash="Action agreed")


async def _new_action_page(page: Page, form: Form | None) -> HTMLResponse:
    themes = await theme_labels(page.api)
    return page.render(
        "governance/new_action.html", form=form, themes=list(themes.items()), status_code=422 if form else 200
    )


@router.get("/governance/actions/{action_id}", response_class=HTMLResponse)
async def action(action_id: UUID, page: GovernancePage) -> HTMLResponse:
    return await _action_page(page, action_id, None)


@router.post("/governance/actions/{action_id}/progress", response_class=HTMLResponse)
async def progress(action_id: UUID, page: GovernancePage) -> Response:
    return await _change(page, action_id, "progress", "update", "Progress recorded")


@router.post("/governance/actions/{action_id}/completion", response_class=HTMLResponse)
async def completion(action_id: UUID, page: GovernancePage) -> Response:
    return await _change(page, action_id, "completion", "evidence", "Action completed")


async def _change(page: Page, action_id: UUID, path: str, field: str, done: str) -> Response:
    form = await page.form()
    form.values["posted"] = field
    try:
        await page.api.post("governance", f"/actions/{action_id}/{path}", {field: form.get(field).strip()})
    except ApiError as refused:
        if refused.status not in (409, 422):
            raise
        absorb(form, refused, {field: field, "completed_on": field}, default=field)
        return await _action_page(page, action_id, form, status_code=422)
    return page.redirect(f"/governance/actions/{action_id}", flash=done)


async def _action_page(
    page: Page, action_id: UUID, form: Form | None, status_code: int = 200
) -> HTMLResponse:
    found, themes, people = await asyncio.gather(
        page.api.get("governance", f"/actions/{action_id}"),
        theme_labels(page.api),
        page.api.get("allocation", "/people"),
    )
    names = {p["sub"]: p["name"] for p in people.get("people", [])} | {page.person.sub: page.person.name}
    return page.render(
        "governance/action.html",
        status_code=status_code,
        action=found,
        form=form,
        themes=themes,
        names=names,
    )


async def theme_labels(api: Api) -> dict[str, str]:
    """The learning themes in the review service's words (GET /vocabulary), in its order."""
    vocabulary = await api.get("review", "/vocabulary")
    return {v["code"]: v["label"] for v in vocabulary["learning_themes"]["values"]}


def in_page_order(form: Form, keys: list[str]) -> None:
    """The error summary lists errors in the order the fields appear."""
    order = {key: n for n, key in enumerate(keys)}
    form.errors = dict(sorted(form.errors.items(), key=lambda e: order.get(e[0], len(keys))))


def absorb(form: Form, refused: ApiError, fields: dict[str, str], default: str) -> None:
    """The service's refusal on the fields; a field it refused as empty or missing reads "Enter ...";
    one it does not know of (a newer body than the service takes) says so; a field refused more than
    once (two unknown case references) shows every refusal."""
    said: defaultdict[str, list[str]] = defaultdict(list)
    for item in refused.field_errors:
        key = fields.get(str(item.get("field", "")).split(".")[0])
        if key in ENTER and item.get("type") in ("string_too_short", "missing"):
            form.error(key, ENTER[key])
        elif key and item.get("type") == "extra_forbidden":
            form.error(key, "The governance service does not take this yet")
        elif key and item.get("message"):
            said[key].append(str(item["message"]))
    for key, messages in said.items():
        if len(messages) > 1:
            joined = "; ".join(dict.fromkeys(m.strip() for m in messages))
            form.error(key, joined[:1].upper() + joined[1:])
    form.absorb(refused, fields=fields, default=default)
