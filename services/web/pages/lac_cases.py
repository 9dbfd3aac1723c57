"""The LAC's lists: every case (filtered and sorted with plain GET links) and the allocation queue."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.pages import lac_words
from services.web.pages.lac_common import LacPage, focused_reason_labels, gather

router = APIRouter()

# Column -> how its rows sort (the list's own order is the API's: oldest notification first).
SORTS: dict[str, Any] = {
    "reference": lambda c: c.get("reference") or "",
    "status": lambda c: c["status"],
    "review_type": lambda c: c.get("review_type") or "",
    "notified": lambda c: c["notified_at"],
    "age": lambda c: c["age_at_death"],
    "place": lambda c: lac_words.place(c["place_of_death"]),
}
COLUMNS = [
    ("reference", "Reference"),
    ("status", "Status"),
    ("review_type", "Review type"),
    ("notified", "Notified"),
    ("age", "Age at death"),
    ("place", "Place of death"),
]


@router.get("/lac/cases", response_class=HTMLResponse)
async def cases(page: LacPage) -> HTMLResponse:
    query = page.request.query_params
    form = Form(values={k: query.get(k, "") for k in query})
    params: dict[str, Any] = {}
    status = form.get("status")
    if status:
        params["status"] = form.choice(
            "status", list(lac_words.CASE_STATUSES), "Select a status from the list"
        )
    review_type = form.get("review_type")
    if review_type:
        params["review_type"] = form.choice(
            "review_type", list(lac_words.REVIEW_TYPES), "Select a review type from the list"
        )
    params["notified_from"] = form.date("notified_from", "the first date notified", required=False)
    params["notified_to"] = form.date("notified_to", "the last date notified", required=False)
    params["reference"] = form.get("reference").strip().upper() or None
    found: list[dict[str, Any]] = []
    if form.ok:
        try:
            found = (await page.api.get("notification", "/cases", **params))["cases"]
        except ApiError as refused:
            if refused.status != 422:
                raise
            # The service's words for its pattern are a regular expression; these are people's.
            form.absorb(refused, default="reference")
            if "reference" in form.errors:
                form.errors["reference"] = "Enter a case reference like LDR-2026-00042"
    sort = form.get("sort") if form.get("sort") in SORTS else "notified"
    descending = form.get("order") == "descending"
    found.sort(key=SORTS[sort], reverse=descending)
    return page.render(
        "lac/cases.html",
        form=form if form.errors else None,
        values=form.values,
        cases=found,
        sort=sort,
        descending=descending,
        columns=COLUMNS,
        filters={k: v for k, v in query.items() if k not in ("sort", "order")},
        filtered=any(v for k, v in query.items() if k not in ("sort", "order")),
        statuses=lac_words.CASE_STATUSES,
        review_types=lac_words.REVIEW_TYPES,
        place=lac_words.place,
    )


@router.get("/lac/queue", response_class=HTMLResponse)
async def queue(page: LacPage) -> HTMLResponse:
    waiting, reasons = await gather(
        page.api.get("allocation", "/allocation-queue"), focused_reason_labels(page.api)
    )
    return page.render("lac/queue.html", cases=waiting["cases"], reasons=reasons, place=lac_words.place)
