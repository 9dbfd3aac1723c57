"""The governance service's HTTP API: QA panels and decisions, case reopening, actions, reports."""

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from infra.aggregates import StreamNotFound, change
from infra.auth import Caller, require_roles
from infra.eventstore import Context, EventStore
from infra.problems import Problem
from infra.service import Runtime
from services.governance import domain, handlers, report_service
from services.governance.rendering import to_csv, to_html

router = APIRouter(tags=["governance"])
LAC = Annotated[Caller, Depends(require_roles("lac"))]
PANEL = Annotated[Caller, Depends(require_roles("qa_panel"))]
GOVERNANCE = Annotated[Caller, Depends(require_roles("governance"))]
READER = Annotated[Caller, Depends(require_roles("lac", "governance", "qa_panel"))]
T = TypeVar("T")
Text = Annotated[str, Field(min_length=1, max_length=2000)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _store(request: Request) -> EventStore:
    return _runtime(request).store


def _context(request: Request, caller: Caller) -> Context:
    return Context(actor=caller.actor, correlation_id=request.state.correlation_id)


async def _checked(call: Awaitable[T]) -> T:
    try:
        return await call
    except StreamNotFound as missing:
        raise Problem(404, "not_found", f"no {missing.stream_id}") from missing
    except domain.DomainError as broken:
        raise Problem(broken.status, broken.code, broken.detail) from broken


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Panel(_Body):
    held_on: date


@router.post("/qa-panels", status_code=201)
async def schedule_panel(body: Panel, request: Request, caller: LAC) -> dict[str, Any]:
    panel_id = await handlers.schedule_panel(_store(request), body.held_on, _context(request, caller))
    return {"panel_id": str(panel_id), "held_on": body.held_on}


@router.get("/qa-panels")
async def panels(request: Request, _: READER) -> dict[str, Any]:
    pool = _store(request).pool
    rows = await pool.fetch("SELECT * FROM qa_panels ORDER BY held_on")
    agenda = await pool.fetch("SELECT case_id, panel_id, status FROM qa_cases WHERE panel_id IS NOT NULL")
    return {
        "panels": [
            {
                "panel_id": str(p["panel_id"]),
                "held_on": p["held_on"],
                "agenda": [
                    {"case_id": str(a["case_id"]), "status": a["status"]}
                    for a in agenda
                    if a["panel_id"] == p["panel_id"]
                ],
            }
            for p in rows
        ]
    }


@router.get("/qa/awaiting")
async def awaiting(request: Request, _: READER) -> dict[str, Any]:
    rows = await _store(request).pool.fetch(
        "SELECT case_id, submitted_on FROM qa_cases WHERE status = 'awaiting_qa' ORDER BY submitted_on"
    )
    return {"reviews": [{"case_id": str(r["case_id"]), "submitted_on": r["submitted_on"]} for r in rows]}


class AgendaItem(_Body):
    case_id: UUID


@router.post("/qa-panels/{panel_id}/agenda", status_code=201)
async def add_to_agenda(panel_id: UUID, body: AgendaItem, request: Request, caller: LAC) -> dict[str, Any]:
    await _checked(handlers.add_to_agenda(_store(request), body.case_id, panel_id, _context(request, caller)))
    return {"panel_id": str(panel_id), "case_id": str(body.case_id)}


class Decision(_Body):
    case_id: UUID
    decision: Literal["approved", "returned"]
    quality_rating: int | None = Field(default=None, ge=1, le=5)
    themes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)
    comments: Text | None = None


@router.post("/qa-panels/{panel_id}/decisions", status_code=201)
async def decide(panel_id: UUID, body: Decision, request: Request, caller: PANEL) -> dict[str, Any]:
    if body.decision == "approved" and body.quality_rating is None:
        raise Problem(422, "quality_rating_required", "an approval needs a quality rating")
    if body.decision == "returned" and not body.comments:
        raise Problem(422, "comments_required", "a return for rework needs the panel's comments")
    today = _runtime(request).today()
    events = await _checked(
        change(
            _store(request),
            str(body.case_id),
            domain.evolve_case,
            lambda c: domain.decide_qa(
                c,
                panel_id,
                body.decision == "approved",
                body.quality_rating,
                body.themes,
                body.comments,
                today,
            ),
            _context(request, caller),
            case_id=body.case_id,
        )
    )
    return {"case_id": str(body.case_id), "events": [e.event_type for e in events]}


class Reason(_Body):
    reason: Text


@router.post("/cases/{case_id}/reopening", status_code=201)
async def reopen(case_id: UUID, body: Reason, request: Request, caller: LAC) -> dict[str, Any]:
    events = await _checked(
        change(
            _store(request),
            str(case_id),
            domain.evolve_case,
            lambda c: domain.decide_reopen(c, body.reason),
            _context(request, caller),
            case_id=case_id,
        )
    )
    return {"case_id": str(case_id), "events": [e.event_type for e in events]}


class NewAction(_Body):
    what: Text
    organisation: Annotated[str, Field(min_length=1, max_length=200)]
    lead: Annotated[str, Field(min_length=1, max_length=200)]
    due_on: date
    case_ids: list[UUID] = Field(default_factory=list, max_length=200)
    themes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)


@router.post("/actions", status_code=201)
async def agree_action(body: NewAction, request: Request, caller: GOVERNANCE) -> dict[str, Any]:
    action_id = await handlers.agree_action(_store(request), _context(request, caller), **body.model_dump())
    return await _action(request, action_id)


class Progress(_Body):
    update: Text


class Completion(_Body):
    evidence: Text


async def _change_action(
    request: Request, caller: Caller, action_id: UUID, decide: Callable[[domain.Action], list[Any]]
) -> dict[str, Any]:
    await _checked(
        change(
            _store(request),
            handlers.action_stream(action_id),
            domain.evolve_action,
            decide,
            _context(request, caller),
        )
    )
    return await _action(request, action_id)


@router.post("/actions/{action_id}/progress")
async def progress(action_id: UUID, body: Progress, request: Request, caller: GOVERNANCE) -> dict[str, Any]:
    return await _change_action(request, caller, action_id, lambda a: domain.decide_progress(a, body.update))


@router.post("/actions/{action_id}/completion")
async def complete(action_id: UUID, body: Completion, request: Request, caller: GOVERNANCE) -> dict[str, Any]:
    today = _runtime(request).today()
    return await _change_action(
        request, caller, action_id, lambda a: domain.decide_completion(a, body.evidence, today)
    )


@router.get("/actions")
async def actions(
    request: Request,
    _: Annotated[Caller, Depends(require_roles("governance", "lac"))],
    status: Annotated[Literal["open", "overdue", "completed"] | None, Query()] = None,
    organisation: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    today = _runtime(request).today()
    rows = await _store(request).pool.fetch("SELECT * FROM actions ORDER BY due_on")
    out = []
    for row in rows:
        overdue = row["status"] == "open" and row["due_on"] < today
        state = "completed" if row["status"] == "completed" else "overdue" if overdue else "open"
        if status and state != status and not (status == "open" and state == "overdue"):
            continue
        if organisation and row["organisation"].casefold() != organisation.casefold():
            continue
        out.append(_action_json(row, state))
    return {"actions": out}


async def _action(request: Request, action_id: UUID) -> dict[str, Any]:
    row = await _store(request).pool.fetchrow("SELECT * FROM actions WHERE action_id = $1", action_id)
    if row is None:
        raise Problem(404, "not_found", f"no action {action_id}")
    today = _runtime(request).today()
    state = "completed" if row["status"] == "completed" else "overdue" if row["due_on"] < today else "open"
    return _action_json(row, state)


def _action_json(row: Any, state: str) -> dict[str, Any]:
    import json

    action = dict(row)
    action["updates"] = json.loads(action["updates"])
    action["status"] = state
    return action


Format = Annotated[Literal["json", "csv", "html"], Query()]


def _render(title: str, report: dict[str, Any], fmt: str) -> Response | dict[str, Any]:
    if fmt == "csv":
        return PlainTextResponse(to_csv(report), media_type="text/csv")
    if fmt == "html":
        return HTMLResponse(to_html(title, report))
    return report


@router.get("/reports/kpis", response_model=None)
async def kpis(
    request: Request,
    _: READER,
    month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
    format: Format = "json",
) -> Response | dict[str, Any]:
    start, end = report_service.month_bounds(month)
    return _render(
        f"LeDeR key performance indicators, {month}",
        await report_service.kpi_report(_store(request), start, end),
        format,
    )


@router.get("/reports/activity", response_model=None)
async def activity(
    request: Request,
    _: READER,
    from_: Annotated[date, Query(alias="from")],
    to: date,
    format: Format = "json",
) -> Response | dict[str, Any]:
    if to < from_:
        raise Problem(422, "period_reversed", "`to` is before `from`")
    return _render(
        f"LeDeR activity report, {from_} to {to}",
        await report_service.activity_report(_store(request), from_, to),
        format,
    )


@router.get("/reports/governance", response_model=None)
async def governance(
    request: Request,
    _: READER,
    quarter: Annotated[str, Query(pattern=r"^\d{4}-Q[1-4]$")],
    format: Format = "json",
) -> Response | dict[str, Any]:
    start, end = report_service.quarter_bounds(quarter)
    return _render(
        f"LeDeR governance report, {quarter}",
        await report_service.governance_report(_store(request), start, end),
        format,
    )


@router.get("/reports/annual", response_model=None)
async def annual(
    request: Request, _: READER, year: Annotated[int, Query(ge=2017, le=2100)], format: Format = "json"
) -> Response | dict[str, Any]:
    return _render(
        f"LeDeR annual report, {year}", await report_service.annual_report(_store(request), year), format
    )
