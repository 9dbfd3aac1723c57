"""The LAC's reviewers: the list (filtered and sorted with plain GET links), registering one, and one
reviewer's page with what the LAC records about them (training, standing conflicts, deactivation and
reactivation). Every fact and refusal is the allocation service's; these pages only show it."""

from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles

router = APIRouter()
LacPage = Annotated[Page, Depends(for_roles("lac"))]

# Column -> how its rows sort; a reviewer with no training sorts first (the one to chase).
SORTS: dict[str, Any] = {
    "name": lambda r: r["name"].casefold(),
    "caseload": lambda r: (r["caseload"] / max(r["capacity"], 1), r["caseload"]),
    "training": lambda r: r.get("training_expires_on") or "",
}
COLUMNS = [("name", "Name"), ("caseload", "Caseload"), ("training", "Training valid until")]
STATUSES = {"active": "Active", "deactivated": "Deactivated"}
SENIORITY = {"yes": "Senior reviewers", "no": "Reviewers who are not senior"}
KINDS = {"organisation": "An organisation", "person": "A person"}
# The registration form's fields in the order the error summary lists them, with the API's names.
REGISTER_FIELDS = {
    "user_id": "Sign-in ID",
    "name": "Full name",
    "organisations": "Employing organisations",
    "senior": "Senior reviewer",
    "capacity": "Capacity",
}


def reviewer_path(reviewer_id: UUID | str) -> str:
    return f"/lac/reviewers/{reviewer_id}"


@router.get("/lac/reviewers", response_class=HTMLResponse)
async def reviewers(page: LacPage) -> HTMLResponse:
    query = page.request.query_params
    status = _one_of(query.get("status", ""), STATUSES, "")
    senior = _one_of(query.get("senior", ""), SENIORITY, "")
    sort = _one_of(query.get("sort", ""), SORTS, "name")
    descending = query.get("order") == "descending"
    order = "descending" if descending else ""
    everyone = (await page.api.get("allocation", "/reviewers"))["reviewers"]
    shown = [
        r
        for r in everyone
        if (not status or r["active"] == (status == "active"))
        and (not senior or r["senior"] == (senior == "yes"))
    ]
    shown.sort(key=SORTS[sort], reverse=descending)
    return page.render(
        "lac_reviewers/list.html",
        reviewers=shown,
        total=len(everyone),
        status=status,
        senior=senior,
        sort=sort,
        descending=descending,
        columns=COLUMNS,
        statuses=STATUSES,
        seniority=SENIORITY,
        filters={k: v for k, v in (("status", status), ("senior", senior)) if v},
        filter_links=[
            ("Status", _filter_links("status", STATUSES, status, senior=senior, sort=sort, order=order)),
            ("Seniority", _filter_links("senior", SENIORITY, senior, status=status, sort=sort, order=order)),
        ],
    )


def _one_of(value: str, allowed: dict[str, Any], default: str) -> str:
    return value if value in allowed else default


def _filter_links(
    key: str, options: dict[str, str], current: str, **kept: str
) -> list[tuple[str, str, bool]]:
    """(words, href, shown now) for "All" and each option; the other filter and the sort are kept."""
    links = []
    for code, words in [("", "All"), *options.items()]:
        query = urlencode({k: v for k, v in (kept | {key: code}).items() if v})
        links.append((words, f"/lac/reviewers?{query}" if query else "/lac/reviewers", code == current))
    return links


@router.get("/lac/reviewers/new", response_class=HTMLResponse)
async def new_reviewer(page: LacPage) -> HTMLResponse:
    return page.render("lac_reviewers/new.html", form=None, values={})


@router.post("/lac/reviewers/new", response_model=None)
async def register(page: LacPage) -> Response:
    form = await page.form()
    user_id = form.text("user_id", "Enter the ID they sign in with", max_length=200)
    name = form.text("name", "Enter their full name", max_length=200)
    organisations = [line.strip() for line in form.get("organisations").splitlines() if line.strip()]
    if not organisations:
        form.error("organisations", "Enter the organisations that employ them, one on each line")
    senior = form.choice("senior", ["yes", "no"], "Select yes if they are a senior reviewer")
    capacity = _whole_number(form, "capacity")
    if form.ok:
        body = {
            "user_id": user_id,
            "name": name,
            "organisations": organisations,
            "senior": senior == "yes",
            "capacity": capacity,
        }
        try:
            made = await page.api.post("allocation", "/reviewers", body)
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            _absorb(form, refused, REGISTER_FIELDS, default="user_id")
        else:
            return page.redirect(reviewer_path(made["reviewer_id"]), flash=f"{made['name']} is registered")
    return page.render("lac_reviewers/new.html", status_code=422, form=_ordered(form), values=form.values)


@router.get("/lac/reviewers/{reviewer_id}", response_class=HTMLResponse)
async def reviewer(reviewer_id: UUID, page: LacPage) -> HTMLResponse:
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render("lac_reviewers/reviewer.html", r=found, kinds=KINDS)


@router.get("/lac/reviewers/{reviewer_id}/training", response_class=HTMLResponse)
async def training_page(reviewer_id: UUID, page: LacPage) -> HTMLResponse:
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render("lac_reviewers/training.html", r=found, form=None, values={})


@router.post("/lac/reviewers/{reviewer_id}/training", response_model=None)
async def record_training(reviewer_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    completed_on = form.date("completed_on", "the date they completed the training")
    if completed_on is not None:
        try:
            done = await page.api.post(
                "allocation", f"/reviewers/{reviewer_id}/training", {"completed_on": completed_on.isoformat()}
            )
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            _absorb(form, refused, {"completed_on": "The date"}, default="completed_on")
        else:
            return page.redirect(reviewer_path(reviewer_id), flash=f"Training recorded for {done['name']}")
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render("lac_reviewers/training.html", status_code=422, r=found, form=form, values=form.values)


@router.get("/lac/reviewers/{reviewer_id}/conflicts", response_class=HTMLResponse)
async def conflict_page(reviewer_id: UUID, page: LacPage) -> HTMLResponse:
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render("lac_reviewers/conflict.html", r=found, kinds=KINDS, form=None, values={})


@router.post("/lac/reviewers/{reviewer_id}/conflicts", response_model=None)
async def record_conflict(reviewer_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    kind = form.choice("kind", list(KINDS), "Select whether the conflict is with an organisation or a person")
    name = form.text("name", "Enter the name of the organisation or person", max_length=200)
    if form.ok:
        try:
            done = await page.api.post(
                "allocation", f"/reviewers/{reviewer_id}/conflicts", {"kind": kind, "name": name}
            )
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            _absorb(form, refused, {"kind": "Kind", "name": "Name"}, default="name")
        else:
            return page.redirect(
                reviewer_path(reviewer_id), flash=f"Standing conflict with {name} recorded for {done['name']}"
            )
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render(
        "lac_reviewers/conflict.html", status_code=422, r=found, kinds=KINDS, form=form, values=form.values
    )


@router.get("/lac/reviewers/{reviewer_id}/deactivation", response_class=HTMLResponse)
async def deactivation_page(reviewer_id: UUID, page: LacPage) -> HTMLResponse:
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render("lac_reviewers/deactivate.html", r=found, form=None, values={})


@router.post("/lac/reviewers/{reviewer_id}/deactivation", response_model=None)
async def deactivate(reviewer_id: UUID, page: LacPage) -> Response:
    form = await page.form()
    reason = form.text("reason", "Enter why you are deactivating them", max_length=1000)
    if reason is not None:
        try:
            done = await page.api.post(
                "allocation", f"/reviewers/{reviewer_id}/deactivation", {"reason": reason}
            )
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            _absorb(form, refused, {"reason": "The reason"}, default="reason")
        else:
            return page.redirect(reviewer_path(reviewer_id), flash=f"{done['name']} is deactivated")
    found = await page.api.get("allocation", f"/reviewers/{reviewer_id}")
    return page.render(
        "lac_reviewers/deactivate.html", status_code=422, r=found, form=form, values=form.values
    )


@router.post("/lac/reviewers/{reviewer_id}/reactivation", response_model=None)
async def reactivate(reviewer_id: UUID, page: LacPage) -> Response:
    await page.form()
    done = await page.api.post("allocation", f"/reviewers/{reviewer_id}/reactivation")
    return page.redirect(reviewer_path(reviewer_id), flash=f"{done['name']} is active again")


def _whole_number(form: Form, key: str) -> int | None:
    """Only "is this a number": how many cases is enough is the allocation service's to say."""
    value = form.get(key).strip()
    if not value:
        form.error(key, "Enter how many cases they can review at once")
        return None
    if not value.isdigit():
        form.error(key, "Capacity must be a whole number, like 4")
        return None
    return int(value)


def _absorb(form: Form, refused: ApiError, labels: dict[str, str], default: str) -> None:
    """The service's refusal on the fields it names, each message led by the field's label (the
    service's own words say what is wrong, not which question)."""
    before = set(form.errors)
    form.absorb(refused, fields={k: k for k in labels}, default=default)
    if refused.code == "reviewer_exists":
        form.errors["user_id"] = f"A reviewer already signs in as {form.get('user_id').strip()}"
        return
    for key in set(form.errors) - before:
        label = labels.get(key)
        message = form.errors[key]
        if label and refused.field_errors:
            form.errors[key] = f"{label}: {message[:1].lower()}{message[1:]}"


def _ordered(form: Form) -> Form:
    """Errors in the order the fields appear, whichever check found them."""
    order = list(REGISTER_FIELDS)
    form.errors = dict(
        sorted(form.errors.items(), key=lambda e: order.index(e[0]) if e[0] in order else len(order))
    )
    return form
