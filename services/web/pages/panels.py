"""The LAC's QA panel pages: the panels (upcoming first), scheduling one, and putting the reviews that
wait for QA on a panel's agenda. The governance service decides what may go on which agenda; its
refusals are shown on the field that chose."""

import asyncio
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response

from services.web.backend import ApiError
from services.web.forms import Form
from services.web.page import Page, for_roles
from services.web.templating import nhs_date

router = APIRouter()
LacPage = Annotated[Page, Depends(for_roles("lac"))]


def panel_field(case_id: str) -> str:
    """The id of the panel choice in a waiting review's row: one per row, so ids stay unique."""
    return f"panel-{case_id}"


@router.get("/lac/panels", response_class=HTMLResponse)
async def panels(page: LacPage) -> HTMLResponse:
    return await _panels_page(page, schedule=None, adding=None)


@router.post("/lac/panels", response_class=HTMLResponse)
async def schedule(page: LacPage) -> Response:
    form = await page.form()
    held_on = form.date("held_on", "the date of the panel")
    if held_on is not None:
        try:
            await page.api.post("governance", "/qa-panels", {"held_on": held_on.isoformat()})
        except ApiError as refused:
            if refused.status != 422:
                raise
            form.absorb(refused, fields={"held_on": "held_on"}, default="held_on")
        else:
            return page.redirect("/lac/panels", flash=f"QA panel scheduled for {nhs_date(held_on)}")
    return await _panels_page(page, schedule=form, adding=None, status_code=422)


@router.post("/lac/panels/agenda", response_class=HTMLResponse)
async def add_to_agenda(page: LacPage) -> Response:
    form = await page.form()
    case_id = form.get("case_id")
    field = panel_field(case_id)
    panel_id = form.get(field)
    if not panel_id:
        form.error(field, "Select the QA panel to add this review to")
    else:
        try:
            await page.api.post("governance", f"/qa-panels/{UUID(panel_id)}/agenda", {"case_id": case_id})
        except ValueError:
            form.error(field, "Select the QA panel to add this review to")
        except ApiError as refused:
            if refused.status not in (404, 409, 422):
                raise
            form.absorb(refused, fields={"case_id": field, "panel_id": field}, default=field)
        else:
            panel = await page.api.get("governance", f"/qa-panels/{panel_id}")
            reference = (
                next((i["reference"] for i in panel["agenda"] if i["case_id"] == case_id), None)
                or "The review"
            )
            return page.redirect(
                "/lac/panels", flash=f"{reference} added to the QA panel on {nhs_date(panel['held_on'])}"
            )
    return await _panels_page(page, schedule=None, adding=form, status_code=422)


@router.get("/lac/panels/{panel_id}", response_class=HTMLResponse)
async def panel(panel_id: UUID, page: LacPage) -> HTMLResponse:
    found = await page.api.get("governance", f"/qa-panels/{panel_id}")
    return page.render("panels/panel.html", panel=found)


async def _panels_page(
    page: Page, schedule: Form | None, adding: Form | None, status_code: int = 200
) -> HTMLResponse:
    listed, awaiting = await asyncio.gather(
        page.api.get("governance", "/qa-panels"), page.api.get("governance", "/qa/awaiting")
    )
    all_panels: list[dict[str, Any]] = listed["panels"]
    # The error summary lists whichever form was posted; only one is at a time.
    form = schedule or adding
    return page.render(
        "panels/panels.html",
        status_code=status_code,
        form=form,
        schedule=schedule,
        adding=adding,
        panels=all_panels,
        upcoming=[p for p in all_panels if p["upcoming"]],
        reviews=awaiting["reviews"],
        panel_field=panel_field,
    )
