"""The Governance Group's reports: KPIs (a month), activity (a period), governance (a quarter) and the
annual report (a year), chosen with plain GET forms and shown in the page as the governance service's
own HTML fragment, with a CSV download the web app passes through."""

from datetime import date
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, download, for_roles

router = APIRouter()
ReportsPage = Annotated[Page, Depends(for_roles("governance"))]
Kind = Literal["kpis", "activity", "governance", "annual"]
KINDS: dict[str, str] = {
    "kpis": "Key performance indicators",
    "activity": "Activity",
    "governance": "Governance",
    "annual": "Annual report",
}
# The service's query names per report, and the page's field for each (where a refusal is shown).
FIELDS: dict[str, dict[str, str]] = {
    "kpis": {"month": "kpis-month"},
    "activity": {"from": "activity-from", "to": "activity-to"},
    "governance": {"quarter": "governance-quarter"},
    "annual": {"year": "annual-year"},
}
DEFAULT_FIELD = {"kpis": "kpis-month", "activity": "activity-to", "governance": "governance-quarter"}
QUARTERS = [("Q1", "January to March"), ("Q2", "April to June"), ("Q3", "July to September")]
QUARTERS += [("Q4", "October to December")]


@router.get("/governance/reports", response_class=HTMLResponse)
async def reports(request: Request, page: ReportsPage, report: Annotated[str, Query()] = "") -> HTMLResponse:
    chosen = {k: v for k, v in request.query_params.items() if k != "report"}
    form = Form(values=_defaults(date.today()).values | chosen)
    fragment = title = csv_url = None
    if report in KINDS:
        params = _params(report, form)
        if form.ok and params is not None:
            try:
                answer = await page.api.send(
                    "GET", "governance", f"/reports/{report}", params={**params, "format": "fragment"}
                )
            except ApiError as refused:
                if refused.status != 422:
                    raise
                form.absorb(refused, fields=FIELDS[report], default=DEFAULT_FIELD.get(report, "annual-year"))
            else:
                fragment, title = answer.text, KINDS[report]
                csv_url = f"/governance/reports/{report}.csv?{urlencode(params)}"
    return page.render(
        "governance/reports.html",
        status_code=422 if form.errors else 200,
        form=form,
        report=report,
        kinds=KINDS,
        quarters=QUARTERS,
        fragment=fragment,
        title=title,
        csv_url=csv_url,
    )


@router.get("/governance/reports/{kind}.csv")
async def report_csv(kind: Kind, request: Request, page: ReportsPage) -> Response:
    params = {k: v for k, v in request.query_params.items() if k in FIELDS[kind]}
    answer = await page.api.send("GET", "governance", f"/reports/{kind}", params={**params, "format": "csv"})
    named = "-".join([kind, *params.values()])
    return download(answer.content, f"leder-{named}.csv", "text/csv; charset=utf-8")


def _params(kind: str, form: Form) -> dict[str, Any] | None:
    """The service's query for the report chosen, once the fields read as a month, dates or a year."""
    if kind == "kpis":
        month, year = _number(form, "kpis-month", "month", 1, 12), _year(form, "kpis-year")
        return {"month": f"{year:04d}-{month:02d}"} if month and year else None
    if kind == "activity":
        start = form.date("activity-from", "the start of the period")
        end = form.date("activity-to", "the end of the period")
        return {"from": start.isoformat(), "to": end.isoformat()} if start and end else None
    if kind == "governance":
        quarter = form.choice("governance-quarter", [q for q, _ in QUARTERS], "Select a quarter")
        year = _year(form, "governance-year")
        return {"quarter": f"{year}-{quarter}"} if quarter and year else None
    year = _year(form, "annual-year")
    return {"year": year} if year else None


def _number(form: Form, key: str, what: str, low: int, high: int) -> int | None:
    text = form.get(key).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        form.error(key, f"Enter the {what} as a number from {low} to {high}")
        return None
    return int(text)


def _year(form: Form, key: str) -> int | None:
    return _number(form, key, "year", 1900, 2200)


def _defaults(today: date) -> Form:
    """This month, this quarter and this year, so the commonest report is one press away."""
    start = today.replace(day=1)
    return Form(
        values={
            "kpis-month": str(today.month),
            "kpis-year": str(today.year),
            "activity-from-day": str(start.day),
            "activity-from-month": str(start.month),
            "activity-from-year": str(start.year),
            "activity-to-day": str(today.day),
            "activity-to-month": str(today.month),
            "activity-to-year": str(today.year),
            "governance-quarter": f"Q{(today.month - 1) // 3 + 1}",
            "governance-year": str(today.year),
            "annual-year": str(today.year),
        }
    )
