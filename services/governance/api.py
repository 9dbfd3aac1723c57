"""The governance service's HTTP API: QA panels and decisions, case reopening, actions, reports."""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from events import Envelope
from events.calendar import add_months
from events.governance import ActionAgreed, ActionCompleted, ActionOverdue, ActionProgressUpdated
from infra.aggregates import StreamNotFound
from infra.auth import Caller, require_roles
from infra.deps import CommandContext, Store, Today
from infra.eventstore import Context, EventStore
from infra.http import ResponseModel
from infra.params import MAX_REPORT_YEARS, Day, Month, Quarter
from infra.problems import Problem
from services.governance import case_details, domain, handlers, report_service
from services.governance.rendering import to_csv, to_fragment, to_html

router = APIRouter(tags=["governance"])
LAC = Annotated[Caller, Depends(require_roles("lac"))]
PANEL = Annotated[Caller, Depends(require_roles("qa_panel"))]
GOVERNANCE = Annotated[Caller, Depends(require_roles("governance"))]
READER = Annotated[Caller, Depends(require_roles("lac", "governance", "qa_panel"))]
LAC_OR_PANEL = Annotated[Caller, Depends(require_roles("lac", "qa_panel"))]
ACTION_READER = Annotated[Caller, Depends(require_roles("governance", "lac"))]
T = TypeVar("T")
Text = Annotated[str, Field(min_length=1, max_length=2000)]
# The words of the QA panel's quality ratings 1..5: the ICB's to configure (LEDER_QA_QUALITY_RATINGS,
# five labels, 1 first, comma-separated); read once, so a scale that is not five labels stops the start.
QUALITY_RATINGS = domain.quality_rating_labels(os.environ.get("LEDER_QA_QUALITY_RATINGS"))


async def _checked(
    call: Awaitable[T], store: EventStore | None = None, case_id: UUID | None = None, no_qa_yet: str = ""
) -> T:
    """What a command does not find, as a problem (a rule broken answers at the edge, infra.problems,
    from the DomainError itself). A case whose review has never been submitted has no QA record
    here: if the service has heard of the case (any event of it observed), that is a state, 409 with
    the code `no_qa_yet`; 404 only for a case (or panel, or action) that does not exist."""
    try:
        return await call
    except StreamNotFound as missing:
        if (
            store is not None
            and case_id is not None
            and missing.stream_id == str(case_id)
            and await handlers.case_known(store, case_id)
        ):
            raise Problem(
                409, no_qa_yet, f"the review of case {case_id} has not been submitted for QA"
            ) from missing
        raise Problem(404, "not_found", f"no {missing.stream_id}") from missing


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PanelScheduled(ResponseModel):
    panel_id: str
    held_on: date


class PanelSummary(ResponseModel):
    panel_id: str
    held_on: date
    upcoming: bool = Field(description="held today or later")
    agenda_size: int
    decided: int = Field(description="agenda items with a decision")


class Panels(ResponseModel):
    panels: list[PanelSummary]


class QualityRating(ResponseModel):
    code: int = Field(description="1 the lowest quality")
    label: str


class QualityRatings(ResponseModel):
    description: str
    values: list[QualityRating]


class QaVocabulary(ResponseModel):
    quality_ratings: QualityRatings


class DescribedCase(ResponseModel):
    case_id: str
    reference: str | None
    review_type: str | None
    reviewer: str | None = Field(description="the allocated reviewer's sub")
    reviewer_name: str | None
    senior_reviewer: str | None = Field(description="the supporting senior reviewer's sub")
    senior_reviewer_name: str | None


class AgendaEntry(DescribedCase):
    submitted_on: date | None
    added_at: datetime
    decision: dict[str, Any] | None = Field(
        description="null until decided; then `outcome` (approved or returned), `decided_at` and "
        "`decided_by`, with `quality_rating` and `themes` for an approval, `comments` for a return"
    )


class PanelPage(ResponseModel):
    panel_id: str
    held_on: date
    upcoming: bool
    decisions_open: bool = Field(description="whether the panel may record decisions today")
    agenda: list[AgendaEntry]
    quality_ratings: list[QualityRating]


class AwaitingReview(DescribedCase):
    submitted_on: date | None
    times_returned: int


class Awaiting(ResponseModel):
    reviews: list[AwaitingReview]


class AddedToAgenda(ResponseModel):
    panel_id: str
    case_id: str


class Recorded(ResponseModel):
    case_id: str
    events: list[str] = Field(description="the event types recorded")


class ActionCase(ResponseModel):
    case_id: str
    reference: str | None


class ActionUpdate(ResponseModel):
    at: str = Field(description="when it was recorded (ISO 8601)")
    update: str


class ActionView(ResponseModel):
    action_id: UUID
    what: str
    organisation: str
    lead: str
    due_on: date
    case_ids: list[UUID]
    themes: list[str]
    status: Literal["open", "overdue", "completed"]
    flagged_overdue: bool
    updates: list[ActionUpdate]
    evidence: str | None
    completed_on: date | None
    agreed_on: date
    due_flag: Literal["overdue", "due_soon"] | None
    cases: list[ActionCase]


class Actions(ResponseModel):
    actions: list[ActionView]


class ActionPage(ActionView):
    history: list[dict[str, Any]] = Field(
        description="each event of the action in order: `event` (agreed, progress, overdue, completed), "
        "`at`, `by` (id, role, kind), and `due_on`, `update`, or `evidence` and `completed_on` by event"
    )


Count = Annotated[int | str, Field(description='a count; counts from 1 to 4 are published as "<5"')]
Figure = Annotated[
    float | str | None, Field(description='null without cases; "<5" when taken over fewer than 5')
]


class Period(ResponseModel):
    from_: str = Field(alias="from")
    to: str


class Figures(ResponseModel):
    period: Period
    notified: Count
    eligible: Count
    allocated: Count
    in_progress: Count
    completed: Count
    not_yet_allocated: Count
    completed_within_six_months: Count
    completed_within_six_months_excluding_paused_time: Count
    per_cent_completed_within_six_months: Figure
    per_cent_completed_within_six_months_excluding_paused_time: Figure
    median_days_notification_to_allocation: Figure
    median_days_notification_to_completion: Figure
    monthly: list[dict[str, Any]] = Field(description="the figures month by month")


class KpiReport(Figures):
    backlog_by_age: dict[str, int | str] = Field(description="open cases by months since notification")


class ActivityReport(KpiReport):
    themes: dict[str, Any]


class ActionFigures(ResponseModel):
    opened: int
    overdue_at_end: int
    completed: int


class GovernanceReport(ActivityReport):
    actions: ActionFigures
    themes_over_time: list[dict[str, Any]] = Field(description="the themes of the last four quarters")


class AnnualReport(Figures):
    themes: dict[str, Any]
    completed_reviews_by_group: dict[str, dict[str, int | str]]
    median_age_at_death: dict[str, Any]


def _report_responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    text = {"schema": {"type": "string"}}
    return {
        200: {
            "model": model,
            "description": "the report: JSON, or as `format` asks, CSV, an HTML page or an HTML fragment",
            "content": {"text/csv": text, "text/html": text},
        }
    }


class Panel(_Body):
    held_on: Day


@router.post("/qa-panels", status_code=201)
async def schedule_panel(body: Panel, _: LAC, store: Store, context: CommandContext) -> PanelScheduled:
    panel_id = await handlers.schedule_panel(store, body.held_on, context)
    return PanelScheduled(panel_id=str(panel_id), held_on=body.held_on)


@router.get("/qa-panels")
async def panels(_: READER, store: Store, today: Today) -> Panels:
    """Every panel with its date and agenda size: upcoming ones first (soonest first), then past ones
    (latest first)."""
    rows = await store.pool.fetch(
        "SELECT p.panel_id, p.held_on, count(a.case_id) AS agenda_size, count(a.decision) AS decided"
        " FROM qa_panels p LEFT JOIN qa_agenda a USING (panel_id) GROUP BY p.panel_id, p.held_on"
        " ORDER BY p.held_on < $1, CASE WHEN p.held_on >= $1 THEN p.held_on END,"
        " p.held_on DESC, p.panel_id",
        today,
    )
    return Panels.model_validate(
        {
            "panels": [
                {
                    "panel_id": str(p["panel_id"]),
                    "held_on": p["held_on"],
                    "upcoming": p["held_on"] >= today,
                    "agenda_size": p["agenda_size"],
                    "decided": p["decided"],
                }
                for p in rows
            ]
        }
    )


def _quality_ratings() -> list[dict[str, Any]]:
    return [{"code": n, "label": label} for n, label in enumerate(QUALITY_RATINGS, start=1)]


@router.get("/qa/vocabulary")
async def qa_vocabulary(_: READER) -> QaVocabulary:
    """What the QA panel's quality ratings mean: each rating (`code`, 1 the lowest quality) with the
    words a form shows beside it."""
    return QaVocabulary.model_validate(
        {
            "quality_ratings": {
                "description": "The ICB's configurable scale for the quality of a review, 1 the lowest and"
                f" {domain.HIGHEST_QUALITY_RATING} the highest: the national programme publishes none.",
                "values": _quality_ratings(),
            }
        }
    )


@router.get("/qa-panels/{panel_id}")
async def panel(panel_id: UUID, _: LAC_OR_PANEL, store: Store, today: Today) -> PanelPage:
    """The panel's date and its agenda, each item with the case's details and the decision if made;
    `quality_ratings`: the words of each rating a decision can give (as GET /qa/vocabulary)."""
    pool = store.pool
    found = await pool.fetchrow("SELECT * FROM qa_panels WHERE panel_id = $1", panel_id)
    if found is None:
        raise Problem(404, "not_found", f"no QA panel {panel_id}")
    items = await pool.fetch(
        "SELECT * FROM qa_agenda WHERE panel_id = $1 ORDER BY added_at, case_id",
        panel_id,
    )
    described = await case_details.described(pool, [i["case_id"] for i in items])
    return PanelPage.model_validate(
        {
            "panel_id": str(panel_id),
            "held_on": found["held_on"],
            "upcoming": found["held_on"] >= today,
            "decisions_open": domain.panel_may_decide(found["held_on"], today),
            "agenda": [
                {
                    **described[i["case_id"]],
                    "submitted_on": i["submitted_on"],
                    "added_at": i["added_at"],
                    "decision": _decision(i),
                }
                for i in items
            ],
            "quality_ratings": _quality_ratings(),
        }
    )


def _decision(item: Any) -> dict[str, Any] | None:
    if item["decision"] is None:
        return None
    made = {"outcome": item["decision"], "decided_at": item["decided_at"], "decided_by": item["decided_by"]}
    if item["decision"] == "approved":
        return {**made, "quality_rating": item["quality_rating"], "themes": list(item["themes"])}
    return {**made, "comments": item["comments"]}


@router.get("/qa/awaiting")
async def awaiting(_: READER, store: Store) -> Awaiting:
    """Reviews submitted and waiting for a panel, longest waiting first."""
    pool = store.pool
    rows = await pool.fetch(
        "SELECT case_id, submitted_on, times_returned FROM qa_cases WHERE status = 'awaiting_qa'"
        " ORDER BY submitted_on, case_id"
    )
    described = await case_details.described(pool, [r["case_id"] for r in rows])
    return Awaiting.model_validate(
        {
            "reviews": [
                {
                    **described[r["case_id"]],
                    "submitted_on": r["submitted_on"],
                    "times_returned": r["times_returned"],
                }
                for r in rows
            ]
        }
    )


class AgendaItem(_Body):
    case_id: UUID


@router.post("/qa-panels/{panel_id}/agenda", status_code=201)
async def add_to_agenda(
    panel_id: UUID, body: AgendaItem, _: LAC, store: Store, context: CommandContext
) -> AddedToAgenda:
    """A review awaiting QA onto the panel's agenda. 404 for a panel or case that does not exist; 409
    `review_not_submitted` for a review not submitted (or back with its reviewer), 409
    `review_not_awaiting_qa` for one already on an agenda or approved."""
    await _checked(
        handlers.add_to_agenda(store, body.case_id, panel_id, context),
        store,
        body.case_id,
        "review_not_submitted",
    )
    return AddedToAgenda(panel_id=str(panel_id), case_id=str(body.case_id))


class Decision(_Body):
    case_id: UUID
    decision: Literal["approved", "returned"]
    quality_rating: int | None = Field(
        default=None,
        ge=1,
        le=domain.HIGHEST_QUALITY_RATING,
        description="1 the lowest; see GET /qa/vocabulary",
    )
    themes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)
    comments: Text | None = None


@router.post("/qa-panels/{panel_id}/decisions", status_code=201)
async def decide(
    panel_id: UUID, body: Decision, _: PANEL, store: Store, context: CommandContext, today: Today
) -> Recorded:
    """The panel's decision on a review on its agenda, made today: not before the panel's date (422
    `decided_before_panel`). 404 for a panel or case that does not exist; 409 `review_not_submitted`
    for a review never submitted, `review_not_on_panel_agenda` for one not on this panel's agenda."""
    decision = domain.QADecision(
        panel_id, body.decision == "approved", body.quality_rating, tuple(body.themes), body.comments
    )
    domain.check_qa_decision(decision)
    events = await _checked(
        handlers.decide_qa(
            store, body.case_id, panel_id, lambda c: domain.decide_qa_decision(c, decision, today), context
        ),
        store,
        body.case_id,
        "review_not_submitted",
    )
    return Recorded(case_id=str(body.case_id), events=[e.event_type for e in events])


class Reason(_Body):
    reason: Text


@router.post("/cases/{case_id}/reopening", status_code=201)
async def reopen(case_id: UUID, body: Reason, _: LAC, store: Store, context: CommandContext) -> Recorded:
    """Reopen a closed case (`governance.CaseReopened`): the review service returns its review to the
    reviewer. 409 `case_not_closed` for a case that is not closed; 404 for one that does not exist."""
    events = await _checked(
        handlers.cases(store).change(
            str(case_id), lambda c: domain.decide_reopen(c, body.reason), context, case_id=case_id
        ),
        store,
        case_id,
        "case_not_closed",
    )
    return Recorded(case_id=str(case_id), events=[e.event_type for e in events])


class NewAction(_Body):
    what: Text
    organisation: Annotated[str, Field(min_length=1, max_length=200)]
    lead: Annotated[str, Field(min_length=1, max_length=200)]
    due_on: Day
    case_ids: list[UUID] = Field(default_factory=list, max_length=200)
    case_references: list[Annotated[str, Field(max_length=40)]] = Field(
        default_factory=list,
        max_length=200,
        description="cases linked by the references people name them by (LDR-2026-00042), with case_ids",
    )
    themes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)


@router.post("/actions", status_code=201)
async def agree_action(
    body: NewAction, _: GOVERNANCE, store: Store, context: CommandContext, today: Today
) -> ActionView:
    """Agreed today, linked to the cases in `case_ids` and those named in `case_references`. 422 (every
    refused field at once, nothing written): `date_in_past` for a due date before today,
    `unknown_case_reference` for a reference this service has not seen a case opened with."""
    action_id = await _checked(handlers.agree_action(store, context, today=today, **body.model_dump()))
    return await _action(store, today, action_id)


class Progress(_Body):
    update: Text


class Completion(_Body):
    evidence: Text
    completed_on: Day | None = Field(
        default=None,
        description="the day it was completed (today if not given): not after today, nor before agreed",
    )


async def _change_action(
    store: EventStore,
    context: Context,
    today: date,
    action_id: UUID,
    decide: Callable[[domain.Action], list[Any]],
) -> ActionView:
    await _checked(handlers.actions(store).change(handlers.action_stream(action_id), decide, context))
    return await _action(store, today, action_id)


@router.post("/actions/{action_id}/progress")
async def progress(
    action_id: UUID, body: Progress, _: GOVERNANCE, store: Store, context: CommandContext, today: Today
) -> ActionView:
    return await _change_action(
        store, context, today, action_id, lambda a: domain.decide_progress(a, body.update)
    )


@router.post("/actions/{action_id}/completion")
async def complete(
    action_id: UUID, body: Completion, _: GOVERNANCE, store: Store, context: CommandContext, today: Today
) -> ActionView:
    """Completed with its evidence, on `completed_on` (today if not given): 422 `date_in_future` after
    today, `completed_before_agreed` before the action was agreed; 409 `action_completed` once done."""
    return await _change_action(
        store,
        context,
        today,
        action_id,
        lambda a: domain.decide_completion(a, body.evidence, today, body.completed_on),
    )


@router.get("/actions")
async def actions(
    _: ACTION_READER,
    store: Store,
    today: Today,
    status: Annotated[Literal["open", "overdue", "completed"] | None, Query()] = None,
    organisation: Annotated[str | None, Query(max_length=200)] = None,
) -> Actions:
    """Actions by due date; `status=open` includes overdue ones (they are still open)."""
    pool = store.pool
    rows = await pool.fetch("SELECT * FROM actions ORDER BY due_on, agreed_on, action_id")
    chosen = []
    for row in rows:
        state = domain.action_status(row["status"] == "completed", row["due_on"], today)
        if status and state != status and not (status == "open" and state == "overdue"):
            continue
        if organisation and row["organisation"].casefold() != organisation.casefold():
            continue
        chosen.append(row)
    references = await _references(pool, [c for row in chosen for c in row["case_ids"]])
    return Actions(actions=[_action_json(row, today, references) for row in chosen])


@router.get("/actions/{action_id}")
async def action(
    action_id: UUID, caller: ACTION_READER, store: Store, context: CommandContext, today: Today
) -> ActionPage:
    """The action and its history: agreed, each progress update, flagged overdue, completed with its
    evidence, each with who and when (from the action's own events). The read is recorded for each
    case the action was agreed for (governance.CaseRead, in the audit's access log)."""
    found = await _action(store, today, action_id)
    reads = domain.decide_action_read(
        action_id, [UUID(c.case_id) for c in found.cases], caller.sub, caller.role
    )
    await handlers.record_reads(store, reads, context)
    stream = await store.read_stream(handlers.action_stream(action_id))
    return ActionPage.model_validate(found.model_dump() | {"history": [_history(e) for e in stream]})


def _history(envelope: Envelope) -> dict[str, Any]:
    event = envelope.payload()
    entry: dict[str, Any] = {
        "at": envelope.occurred_at,
        "by": {"id": envelope.actor.id, "role": envelope.actor.role, "kind": envelope.actor.kind},
    }
    match event:
        case ActionAgreed():
            return {"event": "agreed", **entry, "due_on": event.due_on}
        case ActionProgressUpdated():
            return {"event": "progress", **entry, "update": event.update}
        case ActionCompleted():
            return {
                "event": "completed",
                **entry,
                "evidence": event.evidence,
                "completed_on": event.completed_on,
            }
        case ActionOverdue():
            return {"event": "overdue", **entry, "due_on": event.due_on}
    return {"event": envelope.event_type, **entry}


async def _references(pool: Any, case_ids: list[UUID]) -> dict[UUID, str | None]:
    found = await case_details.details(pool, case_ids)
    return {c: d.reference for c, d in found.items()}


async def _action(store: EventStore, today: date, action_id: UUID) -> ActionView:
    pool = store.pool
    row = await pool.fetchrow("SELECT * FROM actions WHERE action_id = $1", action_id)
    if row is None:
        raise Problem(404, "not_found", f"no action {action_id}")
    return _action_json(row, today, await _references(pool, list(row["case_ids"])))


def _action_json(row: Any, today: date, references: dict[UUID, str | None]) -> ActionView:
    action = dict(row)
    action["updates"] = json.loads(action["updates"])
    completed = row["status"] == "completed"
    action["status"] = domain.action_status(completed, row["due_on"], today)
    action["due_flag"] = domain.due_flag(completed, row["due_on"], today)
    action["cases"] = [{"case_id": str(c), "reference": references.get(c)} for c in row["case_ids"]]
    return ActionView.model_validate(action)


Format = Annotated[
    Literal["json", "csv", "html", "fragment"],
    Query(
        description="json; csv; html, a page of its own; fragment, the same HTML to embed in another page "
        "(no html, head, body or style element; headings from h2; NHS design system classes)"
    ),
]


async def _render(title: str, report: dict[str, Any], fmt: str, kind: str) -> Response:
    """The report as `fmt` asks (the routes document each, the JSON by its model); a page, CSV or JSON
    written off the event loop, as the report was computed."""
    return await asyncio.to_thread(_rendered, title, report, fmt, kind)


def _rendered(title: str, report: dict[str, Any], fmt: str, kind: str) -> Response:
    if fmt == "csv":
        return PlainTextResponse(to_csv(report), media_type="text/csv")
    if fmt == "html":
        return HTMLResponse(to_html(title, report))
    if fmt == "fragment":
        return HTMLResponse(to_fragment(title, report, id_prefix=f"report-{kind}"))
    # What FastAPI would answer for the dict itself, encoded here instead of on the event loop.
    return JSONResponse(jsonable_encoder(report))


@router.get("/reports/kpis", response_model=None, responses=_report_responses(KpiReport))
async def kpis(
    _: READER,
    store: Store,
    month: Annotated[Month, Query(description="YYYY-MM, a year from 1900 to 2100")],
    format: Format = "json",
) -> Response:
    start, end = report_service.month_bounds(month)
    return await _render(
        f"LeDeR key performance indicators, {month}",
        await report_service.kpi_report(store, start, end),
        format,
        "kpis",
    )


@router.get("/reports/activity", response_model=None, responses=_report_responses(ActivityReport))
async def activity(
    _: READER,
    store: Store,
    from_: Annotated[Day, Query(alias="from", description="the first day (1900-01-01 to 2100-12-31)")],
    to: Annotated[Day, Query(description=f"the last day: at most {MAX_REPORT_YEARS} years after `from`")],
    format: Format = "json",
) -> Response:
    """The activity of a period of at most 10 years (infra.params.MAX_REPORT_YEARS; a longer one is
    422 `period_too_long`), as the system knew it at the period's end."""
    if to < from_:
        raise Problem(422, "period_reversed", "`to` is before `from`")
    if to >= add_months(from_, 12 * MAX_REPORT_YEARS):
        detail = f"a report covers at most {MAX_REPORT_YEARS} years"
        error = {"field": "to", "type": "period_too_long", "message": detail}
        raise Problem(422, "period_too_long", detail, errors=[error])
    return await _render(
        f"LeDeR activity report, {from_} to {to}",
        await report_service.activity_report(store, from_, to),
        format,
        "activity",
    )


@router.get("/reports/governance", response_model=None, responses=_report_responses(GovernanceReport))
async def governance(
    _: READER,
    store: Store,
    quarter: Annotated[Quarter, Query(description="YYYY-Qn, a year from 1900 to 2100")],
    format: Format = "json",
) -> Response:
    start, end = report_service.quarter_bounds(quarter)
    return await _render(
        f"LeDeR governance report, {quarter}",
        await report_service.governance_report(store, start, end),
        format,
        "governance",
    )


@router.get("/reports/annual", response_model=None, responses=_report_responses(AnnualReport))
async def annual(
    _: READER, store: Store, year: Annotated[int, Query(ge=2017, le=2100)], format: Format = "json"
) -> Response:
    return await _render(
        f"LeDeR annual report, {year}",
        await report_service.annual_report(store, year),
        format,
        "annual",
    )
