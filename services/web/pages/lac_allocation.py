"""Allocating a case to a reviewer and a supporting senior reviewer, from the pairs the allocation
service suggests, and reallocating with a reason. The service decides who may take a case; a refusal
(409 with its violations) is shown on the choice."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.pages.lac_common import LacPage, case_path, gather, names

router = APIRouter()
CHOOSE = "Select a reviewer and senior reviewer"


@router.get("/lac/cases/{case_id}/allocation", response_class=HTMLResponse)
async def allocation_form(case_id: UUID, page: LacPage) -> HTMLResponse:
    return await _form(page, case_id, reallocating=False, form=None)


@router.post("/lac/cases/{case_id}/allocation", response_class=HTMLResponse)
async def allocate(case_id: UUID, page: LacPage) -> Response:
    return await _submit(page, case_id, reallocating=False)


@router.get("/lac/cases/{case_id}/reallocation", response_class=HTMLResponse)
async def reallocation_form(case_id: UUID, page: LacPage) -> HTMLResponse:
    return await _form(page, case_id, reallocating=True, form=None)


@router.post("/lac/cases/{case_id}/reallocation", response_class=HTMLResponse)
async def reallocate(case_id: UUID, page: LacPage) -> Response:
    return await _submit(page, case_id, reallocating=True)


async def _submit(page: LacPage, case_id: UUID, reallocating: bool) -> Response:
    form = await page.form()
    pair = _pair(form.get("pair"))
    if pair is None:
        form.error("pair", CHOOSE)
    body: dict[str, Any] = {}
    if pair:
        body = {"reviewer_id": pair[0], "senior_reviewer_id": pair[1]}
    if reallocating:
        body["reason"] = form.text("reason", "Enter why the case moves to another reviewer", max_length=1000)
    if form.ok:
        path = f"/cases/{case_id}/{'reallocation' if reallocating else 'allocation'}"
        try:
            await page.api.post("allocation", path, body)
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            _refusal(form, refused, str(case_id))
        else:
            reviewer, senior = await gather(
                page.api.get("allocation", f"/reviewers/{body['reviewer_id']}"),
                page.api.get("allocation", f"/reviewers/{body['senior_reviewer_id']}"),
            )
            verb = "reallocated" if reallocating else "allocated"
            return page.redirect(
                case_path(case_id),
                flash=f"Case {verb} to {reviewer['name']}, with {senior['name']} as senior reviewer",
            )
    return await _form(page, case_id, reallocating=reallocating, form=form)


async def _form(page: LacPage, case_id: UUID, reallocating: bool, form: Form | None) -> HTMLResponse:
    offered = await page.api.get("allocation", f"/cases/{case_id}/suggested-reviewers")
    now: dict[str, str | None] = {}
    if reallocating:
        case, people = await gather(page.api.get("notification", f"/cases/{case_id}"), names(page.api))
        now = {
            "reviewer": people.get(case["reviewer_user_id"] or "", case["reviewer_user_id"]),
            "senior": people.get(case["senior_reviewer_user_id"] or "", case["senior_reviewer_user_id"]),
        }
    excluded = [
        {"name": s["name"], "as": "Reviewer", "why": s["excluded_because"]}
        for s in offered["suggestions"]
        if not s["eligible"]
    ]
    seniors_excluded = [
        {"name": s["name"], "as": "Senior reviewer (to support)", "why": s["excluded_because"]}
        for s in offered["senior_reviewers"]
        if not s["eligible"]
    ]
    return page.render(
        "lac/allocation.html",
        status_code=400 if form and form.errors else 200,
        case_id=str(case_id),
        reference=offered.get("reference"),
        pairs=offered["pairs"],
        excluded=excluded + seniors_excluded,
        reallocating=reallocating,
        now=now,
        form=form,
        values=form.values if form else {},
    )


def _pair(value: str) -> tuple[str, str] | None:
    """The chosen radio: `<reviewer id> <senior reviewer id>`; the service checks they may."""
    parts = value.split()
    if len(parts) != 2:
        return None
    try:
        return str(UUID(parts[0])), str(UUID(parts[1]))
    except ValueError:
        return None


def _refusal(form: Form, refused: ApiError, case_id: str) -> None:
    """Each rule the service says the choice breaks, on the choice (a case id reads as 'this case')."""
    violations = refused.problem.get("violations")
    if isinstance(violations, list) and violations:
        said = [str(v.get("detail") or v.get("rule") or "") for v in violations if isinstance(v, dict)]
        message = ". ".join(s.replace(f"case {case_id}", "this case") for s in said if s)
        form.error("pair", message[:1].upper() + message[1:])
        return
    form.absorb(refused, fields={"reviewer_id": "pair", "senior_reviewer_id": "pair"}, default="pair")
