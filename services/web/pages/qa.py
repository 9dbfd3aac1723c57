"""Pages of the QA panel: the panels and their agendas, a submitted review as a readable and printable
report, and the panel's decision on it (approve with a quality rating and the learning themes it
confirms, or return for rework with comments). The governance service decides whether a decision may
be made; its refusals are shown on the form's fields."""

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles

router = APIRouter()
# The LAC's panel pages ride on this router, so app.py (another area's file) needs no change.
PanelPage = Annotated[Page, Depends(for_roles("qa_panel"))]
PanelId = Annotated[UUID | None, Query(alias="panel")]
# The agendas shown in full on /qa: the next few panels (each is one call).
AGENDAS_SHOWN = 3
RATINGS = [(str(n), str(n)) for n in range(1, 6)]


@router.get("/qa", response_class=HTMLResponse)
async def home(page: PanelPage) -> HTMLResponse:
    listed = (await page.api.get("governance", "/qa-panels"))["panels"]
    upcoming = [p for p in listed if p["upcoming"]][:AGENDAS_SHOWN]
    agendas = await asyncio.gather(
        *(page.api.get("governance", f"/qa-panels/{p['panel_id']}") for p in upcoming)
    )
    return page.render("qa/home.html", panels=listed, agendas=agendas)


@router.get("/qa/panels/{panel_id}", response_class=HTMLResponse)
async def panel(panel_id: UUID, page: PanelPage) -> HTMLResponse:
    found = await page.api.get("governance", f"/qa-panels/{panel_id}")
    return page.render("qa/panel.html", panel=found)


@router.get("/qa/reviews/{case_id}", response_class=HTMLResponse)
async def review(case_id: UUID, page: PanelPage, panel_id: PanelId = None) -> HTMLResponse:
    return await _review_page(page, case_id, panel_id, form=None)


@router.get("/qa/reviews/{case_id}/print", response_class=HTMLResponse)
async def printable(case_id: UUID, page: PanelPage, panel_id: PanelId = None) -> HTMLResponse:
    """The report alone, for printing without script (the report page's print link comes here)."""
    return await _review_page(page, case_id, panel_id, form=None, printing=True)


@router.post("/qa/reviews/{case_id}", response_class=HTMLResponse)
async def decide(case_id: UUID, page: PanelPage, panel_id: PanelId = None) -> Response:
    form = await page.form()
    if panel_id is None:
        form.error("decision", "Open this review from a panel's agenda to decide on it")
        return await _review_page(page, case_id, None, form, status_code=422)
    decision = form.get("decision")
    body: dict[str, Any] = {"case_id": str(case_id), "decision": decision}
    field = "quality_rating" if decision == "approved" else "comments"
    if decision == "approved":
        rating = form.get("quality_rating")
        body |= {
            "quality_rating": int(rating) if rating.isdigit() else None,
            "themes": form.getlist("themes"),
        }
    elif decision == "returned":
        body["comments"] = form.get("comments").strip() or None
    else:
        form.error("decision", "Choose to approve the review or return it for rework")
    if form.ok:
        try:
            await page.api.post("governance", f"/qa-panels/{panel_id}/decisions", body)
        except ApiError as refused:
            if refused.status not in (409, 422):
                raise
            # A refusal naming the panel or the case (not on this agenda, before the panel meets) goes on
            # the form the person used: the page chose those, the person did not type them.
            named = {"quality_rating": "quality_rating", "comments": "comments"}
            form.absorb(refused, fields=named | {"panel_id": field, "case_id": field}, default=field)
        else:
            reference = form.get("reference") or "The review"
            done = (
                "approved and the case closed"
                if decision == "approved"
                else "returned to the reviewer for rework"
            )
            return page.redirect(f"/qa/panels/{panel_id}", flash=f"{reference} {done}")
    return await _review_page(page, case_id, panel_id, form, status_code=422)


async def _review_page(
    page: Page,
    case_id: UUID,
    panel_id: UUID | None,
    form: Form | None,
    printing: bool = False,
    status_code: int = 200,
) -> HTMLResponse:
    calls = [page.api.get("review", f"/reviews/{case_id}"), page.api.get("review", "/vocabulary")]
    if panel_id is not None:
        calls.append(page.api.get("governance", f"/qa-panels/{panel_id}"))
    found, vocabulary, *rest = await asyncio.gather(*calls)
    found_panel = rest[0] if rest else None
    item = (
        next((i for i in found_panel["agenda"] if i["case_id"] == str(case_id)), None)
        if found_panel
        else None
    )
    theme_labels = {v["code"]: v["label"] for v in vocabulary["learning_themes"]["values"]}
    tagged = _tagged_themes(found["records"])
    return page.render(
        "qa/review.html",
        status_code=status_code,
        review=found,
        records=found["records"],
        panel=found_panel,
        item=item,
        form=form,
        printing=printing,
        # The governance service's words for its scale; bare numbers only without a panel to ask.
        ratings=[(str(r["code"]), f"{r['code']}: {r['label']}") for r in found_panel["quality_ratings"]]
        if found_panel and found_panel.get("quality_ratings")
        else RATINGS,
        tagged=[(code, theme_labels.get(code, label)) for code, label in tagged],
        other_themes=[(c, t) for c, t in theme_labels.items() if c not in dict(tagged)],
    )


def _tagged_themes(records: dict[str, Any]) -> list[tuple[str, str]]:
    """The learning themes the reviewer tagged (learning and good practice), first tagged first."""
    seen: dict[str, str] = {}
    for entry in records.get("learning", []) + records.get("good_practice", []):
        for theme in entry.get("themes", []):
            seen.setdefault(theme["code"], theme["label"])
    return list(seen.items())
