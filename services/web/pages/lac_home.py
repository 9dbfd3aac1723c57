"""The LAC's start page: today's work, each count linking to its list."""

from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.web.pages.lac_common import LacPage, gather
from services.web.templating import LONDON

router = APIRouter()
DEADLINE_WINDOW = timedelta(days=30)


@router.get("/lac", response_class=HTMLResponse)
async def today(page: LacPage) -> HTMLResponse:
    api = page.api
    to_confirm, queue, due, overdue, awaiting, panels, actions = await gather(
        api.get("notification", "/cases", status="eligibility_to_confirm"),
        api.get("allocation", "/allocation-queue"),
        api.get("review", "/reviews", due_before=_today() + DEADLINE_WINDOW),
        api.get("review", "/reviews/overdue"),
        api.get("governance", "/qa/awaiting"),
        api.get("governance", "/qa-panels"),
        api.get("governance", "/actions", status="overdue"),
    )
    waiting: list[dict[str, Any]] = queue["cases"]
    overdue_ids = {r["case_id"] for r in overdue["reviews"]}
    return page.render(
        "lac/home.html",
        to_confirm=to_confirm["cases"],
        waiting=waiting,
        longest_wait=max((c["days_waiting"] for c in waiting), default=None),
        due_soon=[r for r in due["reviews"] if r["case_id"] not in overdue_ids],
        overdue=overdue["reviews"],
        awaiting=awaiting["reviews"],
        panels=[p for p in panels["panels"] if p["upcoming"]][:3],
        actions=actions["actions"],
    )


def _today() -> date:
    # The date as people in England read it.
    return datetime.now(LONDON).date()
