"""The information governance officer's pages: find a case, its timeline from every service, the case
as it stood at a moment, its export with proofs, the access log and the log's verification. Everything
comes from the audit service's API (which records each of these reads in the log itself)."""

import re
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, download, for_roles
from services.web.templating import LONDON, dates_in_words

router = APIRouter()
IgPage = Annotated[Page, Depends(for_roles("ig_officer"))]

SERVICES = {
    "notification": "Notification",
    "allocation": "Allocation",
    "review": "Review",
    "governance": "Governance",
    "audit": "Audit",
}
ACCESS_PAGE = 100


@router.get("/ig", response_class=HTMLResponse, response_model=None)
async def find_case(page: IgPage) -> Response:
    query = page.request.query_params
    form = Form(values={"case": query.get("case", "")})
    if "case" in query:
        wanted = form.text("case", "Enter a case reference or a case id")
        if wanted:
            found = await _find(page, form, "case", wanted)
            if found:
                return RedirectResponse(f"/ig/cases/{found}", status_code=303)
    return page.render("ig/find.html", form=form if form.errors else None, values=form.values)


async def _find(page: Page, form: Form, key: str, wanted: str) -> str | None:
    """The case id the audit log knows by this reference or id; an error on `key` if none."""
    try:
        found = await page.api.get("audit", "/audit/cases", q=wanted)
    except ApiError as refused:
        if refused.status == 404:
            named = "reference" if wanted.upper().startswith("LDR-") else "id"
            form.error(key, f"No case with {named} {wanted}")
        elif refused.status == 422:
            form.error(key, "Enter a case reference like LDR-2026-00042, or a case id")
        else:
            raise
        return None
    return str(found["case_id"])


@router.get("/ig/cases/{case_id}", response_class=HTMLResponse)
async def timeline(case_id: UUID, page: IgPage) -> HTMLResponse:
    history = await page.api.get("audit", f"/audit/cases/{case_id}/history")
    query = page.request.query_params
    service = query.get("service") if query.get("service") in SERVICES else ""
    newest_first = query.get("order") == "newest"
    entries = [e for e in history["entries"] if not service or e["source"] == service]
    if newest_first:
        entries.reverse()
    return page.render(
        "ig/timeline.html",
        case_id=str(case_id),
        reference=history.get("reference"),
        entries=entries,
        total=len(history["entries"]),
        values={"service": service, "order": "newest" if newest_first else "oldest"},
        services=SERVICES,
        event_words=event_words,
        who=who,
        sentence=sentence,
    )


@router.get("/ig/cases/{case_id}/as-of", response_class=HTMLResponse)
async def as_of(case_id: UUID, page: IgPage) -> HTMLResponse:
    query = page.request.query_params
    form = Form(values=dict(query))
    moment: datetime | None = None
    if any(k.startswith("as_of") for k in query):
        day = form.date("as_of", "the date")
        clock = _time(form, "as_of_time")
        if day and clock:
            moment = datetime.combine(day, clock, LONDON)
    else:
        now = datetime.now(LONDON)  # a starting point to change: now, to the minute
        form.values |= {
            "as_of-day": str(now.day),
            "as_of-month": str(now.month),
            "as_of-year": str(now.year),
            "as_of_time-hour": f"{now.hour:02}",
            "as_of_time-minute": f"{now.minute:02}",
        }
    state = people = None
    if moment is not None:
        state = await page.api.get("audit", f"/audit/cases/{case_id}/state", as_of=moment.isoformat())
        people = await _people(page)
    reference = state.get("reference") if state else await _reference(page, case_id)
    return page.render(
        "ig/as_of.html",
        case_id=str(case_id),
        reference=reference,
        form=form if form.errors else None,
        values=form.values,
        moment=moment,
        state=state,
        name=lambda sub: (people or {}).get(sub, sub) if sub else "",
    )


def _time(form: Form, key: str) -> time | None:
    """The hour and minute typed, if they are a real time of day (24-hour clock)."""
    hour, minute = form.get(f"{key}-hour").strip(), form.get(f"{key}-minute").strip()
    if not hour and not minute:
        form.error(key, "Enter the time")
        return None
    if not re.fullmatch(r"\d{1,2}", hour) or not re.fullmatch(r"\d{1,2}", minute):
        form.error(key, "The time must include an hour and a minute, in numbers")
        return None
    if int(hour) > 23 or int(minute) > 59:
        form.error(key, "The time must be a real time, for example 14 30")
        return None
    return time(int(hour), int(minute))


async def _people(page: Page) -> dict[str, str]:
    """Reviewers' names by their user id, from the allocation service's directory."""
    try:
        directory = await page.api.get("allocation", "/people")
    except ApiError as refused:
        if refused.status in (401, 403, 404):
            return {}  # the ids then stand for the people
        raise
    return {p["sub"]: p["name"] for p in directory.get("people", [])}


async def _reference(page: Page, case_id: UUID) -> str | None:
    found = await page.api.get("audit", "/audit/cases", q=str(case_id))
    reference: str | None = found.get("reference")
    return reference


@router.get("/ig/cases/{case_id}/export")
async def export(case_id: UUID, page: IgPage) -> Response:
    answer = await page.api.send("GET", "audit", f"/audit/cases/{case_id}/export")
    disposition = answer.headers.get("content-disposition", "")
    named = re.search(r'filename="([^"]+)"', disposition)
    filename = named.group(1) if named else f"{case_id}-audit-export.zip"
    return download(answer.content, filename, answer.headers.get("content-type", "application/zip"))


@router.get("/ig/access", response_class=HTMLResponse)
async def access(page: IgPage) -> HTMLResponse:
    query = page.request.query_params
    form = Form(values=dict(query))
    params: dict[str, Any] = {"limit": ACCESS_PAGE, "after": form.get("after") or None}
    wanted = form.get("case").strip()
    if wanted:
        params["case_id"] = await _find(page, form, "case", wanted)
    params["user"] = form.get("person").strip() or None
    start = form.date("from", "the first date", required=False)
    end = form.date("to", "the last date", required=False)
    params["from"] = _midnight(start)
    params["to"] = _midnight(end + timedelta(days=1)) if end else None
    entries: list[dict[str, Any]] = []
    next_after = None
    if form.ok:
        found = await page.api.get("audit", "/audit/access", **params)
        entries, next_after = found["access"], found.get("next_after")
    filters = {k: v for k, v in query.items() if k != "after" and v}
    return page.render(
        "ig/access.html",
        form=form if form.errors else None,
        values=form.values,
        entries=entries,
        next_after=next_after,
        filters=filters,
        filtered=bool(filters),
        paged=bool(form.get("after")),
        services=SERVICES,
        who=who,
        sentence=sentence,
    )


def _midnight(day: date | None) -> str | None:
    return datetime.combine(day, time.min, LONDON).isoformat() if day else None


@router.get("/ig/verification", response_class=HTMLResponse)
async def verification(page: IgPage) -> HTMLResponse:
    result = await page.api.get("audit", "/audit/verification")
    try:
        checkpoint = await page.api.get("audit", "/audit/checkpoints/latest")
    except ApiError as missing:
        if missing.status != 404:
            raise
        checkpoint = None
    return page.render("ig/verification.html", result=result, checkpoint=checkpoint)


@router.post("/ig/verification/checkpoint", response_model=None)
async def sign_checkpoint(page: IgPage) -> Response:
    await page.form()
    signed = await page.api.post("audit", "/audit/checkpoints")
    return page.redirect("/ig/verification", flash=f"Checkpoint signed over {signed['tree_size']} entries")


def event_words(event_type: str) -> str:
    """`notification.CaseOpened` -> `Case opened`."""
    name = event_type.split(".", 1)[-1]
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    words = spaced.split()
    # Initialisms (QA) stay in capitals; other words after the first go lower case.
    return " ".join([words[0]] + [w if w.isupper() else w.lower() for w in words[1:]]) if words else name


def sentence(text: Any) -> str:
    """The service's words, capitalised, with its dates as people write them (references untouched)."""
    words = dates_in_words(text)
    return words[:1].upper() + words[1:]


def who(entry: dict[str, Any]) -> str:
    """A person's name where the log knows it, else their user id; a service by its name."""
    if entry.get("actor_kind") == "system":
        return f"{SERVICES.get(str(entry.get('who')), str(entry.get('who')))} service"
    return str(entry.get("who_name") or entry.get("who") or "")
