"""The allocation service's HTTP API: the LAC's reviewers, queue and allocations; a reviewer's
declaration of a conflict of interest."""

from collections.abc import Awaitable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from infra.auth import Caller, require_roles
from infra.eventstore import Context, EventStore
from infra.problems import Problem
from infra.service import Runtime
from services.allocation import domain, handlers

router = APIRouter(tags=["allocation"])
LAC = Annotated[Caller, Depends(require_roles("lac"))]
T = TypeVar("T")


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
    except handlers.NotFound as missing:
        raise Problem(404, "not_found", f"no {missing.what}") from missing
    except domain.AllocationRefused as refused:
        raise Problem(
            refused.status,
            refused.code,
            refused.detail,
            violations=[{"code": v.code, "detail": v.detail} for v in refused.violations],
        ) from refused
    except domain.DomainError as broken:
        raise Problem(broken.status, broken.code, broken.detail) from broken


Text = Annotated[str, Field(min_length=1, max_length=200)]


class NewReviewer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Text = Field(description="the `sub` the reviewer signs in with")
    name: Text
    organisations: list[Text] = Field(min_length=1, max_length=10)
    senior: bool
    capacity: int = Field(ge=1, le=100)


@router.post("/reviewers", status_code=201)
async def register_reviewer(body: NewReviewer, request: Request, caller: LAC) -> dict[str, Any]:
    exists = Problem(409, "reviewer_exists", f"a reviewer signs in as {body.user_id} already")
    if await _store(request).pool.fetchval("SELECT 1 FROM reviewers WHERE user_id = $1", body.user_id):
        raise exists
    try:
        reviewer_id = await handlers.register_reviewer(
            _store(request),
            _context(request, caller),
            body.user_id,
            body.name,
            body.organisations,
            body.senior,
            body.capacity,
        )
    except asyncpg.UniqueViolationError as clash:
        # Registered at the same moment by another request, after the check above: the read model,
        # written in the same transaction, admits one reviewer per sub, and this one wrote nothing.
        if clash.constraint_name != "reviewers_user_id_key":
            raise
        raise exists from clash
    return await _reviewer_view(request, reviewer_id)


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed_on: date


class StandingConflict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["organisation", "person"]
    name: Text


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=1000)]


@router.post("/reviewers/{reviewer_id}/training")
async def record_training(reviewer_id: UUID, body: Training, request: Request, caller: LAC) -> dict[str, Any]:
    if body.completed_on > _runtime(request).today():
        raise Problem(422, "training_in_future", "training cannot be completed in the future")
    await _checked(
        handlers.change_reviewer(
            _store(request), reviewer_id, handlers.training(body.completed_on), _context(request, caller)
        )
    )
    return await _reviewer_view(request, reviewer_id)


@router.post("/reviewers/{reviewer_id}/conflicts")
async def record_conflict(
    reviewer_id: UUID, body: StandingConflict, request: Request, caller: LAC
) -> dict[str, Any]:
    await _checked(
        handlers.change_reviewer(
            _store(request), reviewer_id, handlers.conflict(body.kind, body.name), _context(request, caller)
        )
    )
    return await _reviewer_view(request, reviewer_id)


@router.post("/reviewers/{reviewer_id}/deactivation")
async def deactivate(reviewer_id: UUID, body: Reason, request: Request, caller: LAC) -> dict[str, Any]:
    await _checked(
        handlers.change_reviewer(
            _store(request), reviewer_id, handlers.deactivation(body.reason), _context(request, caller)
        )
    )
    return await _reviewer_view(request, reviewer_id)


@router.post("/reviewers/{reviewer_id}/reactivation")
async def reactivate(reviewer_id: UUID, request: Request, caller: LAC) -> dict[str, Any]:
    await _checked(
        handlers.change_reviewer(
            _store(request), reviewer_id, handlers.reactivation(), _context(request, caller)
        )
    )
    return await _reviewer_view(request, reviewer_id)


@router.get("/reviewers")
async def list_reviewers(request: Request, _: LAC) -> dict[str, Any]:
    ids = await _store(request).pool.fetch("SELECT reviewer_id FROM reviewers ORDER BY name")
    return {"reviewers": [await _reviewer_view(request, r["reviewer_id"]) for r in ids]}


async def _reviewer_view(request: Request, reviewer_id: UUID) -> dict[str, Any]:
    store, today = _store(request), _runtime(request).today()
    row = await store.pool.fetchrow("SELECT * FROM reviewers WHERE reviewer_id = $1", reviewer_id)
    if row is None:
        raise Problem(404, "not_found", f"no reviewer {reviewer_id}")
    async with store.pool.acquire() as conn:
        reviewer, _ = await handlers.load_reviewer(conn, reviewer_id)
    expires = reviewer.training_expires_on()
    return {
        "reviewer_id": str(reviewer_id),
        "user_id": reviewer.user_id,
        "name": reviewer.name,
        "organisations": list(reviewer.organisations),
        "senior": reviewer.senior,
        "active": reviewer.active,
        "capacity": reviewer.capacity,
        "active_caseload": row["active_caseload"],
        "trained_on": reviewer.trained_on,
        "training_expires_on": expires,
        "conflicts": [{"kind": k, "name": n} for k, n in reviewer.conflicts],
        "last_allocated_on": row["last_allocated_on"],
        "can_take_a_case_today": reviewer.active
        and reviewer.trained_on_day(today)
        and row["active_caseload"] < reviewer.capacity,
    }


@router.get("/allocation-queue")
async def queue(request: Request, _: LAC) -> dict[str, Any]:
    today = _runtime(request).today()
    rows = await _store(request).pool.fetch(
        "SELECT case_id, notified_on, deadline, review_type, focused_reasons, returned_at, waiting_since"
        " FROM allocation_cases WHERE status = 'waiting'"
        " ORDER BY returned_at DESC NULLS LAST, notified_on, waiting_since"
    )
    return {
        "cases": [
            {
                "case_id": str(r["case_id"]),
                "notified_on": r["notified_on"],
                "deadline": r["deadline"],
                "review_type": r["review_type"],
                "focused_reasons": r["focused_reasons"],
                "days_waiting": (today - r["notified_on"]).days,
                "days_to_deadline": (r["deadline"] - today).days,
                "returned_to_queue": r["returned_at"] is not None,
            }
            for r in rows
        ]
    }


class AllocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer_id: UUID
    senior_reviewer_id: UUID


class ReallocationRequest(AllocationRequest):
    reason: Annotated[str, Field(min_length=3, max_length=1000)]


@router.post("/cases/{case_id}/allocation", status_code=201)
async def allocate(case_id: UUID, body: AllocationRequest, request: Request, caller: LAC) -> dict[str, Any]:
    events = await _checked(
        handlers.allocate(
            _store(request),
            case_id,
            body.reviewer_id,
            body.senior_reviewer_id,
            _runtime(request).today(),
            _context(request, caller),
        )
    )
    return {"case_id": str(case_id), "events": [e.event_type for e in events]}


@router.post("/cases/{case_id}/reallocation")
async def reallocate(
    case_id: UUID, body: ReallocationRequest, request: Request, caller: LAC
) -> dict[str, Any]:
    events = await _checked(
        handlers.allocate(
            _store(request),
            case_id,
            body.reviewer_id,
            body.senior_reviewer_id,
            _runtime(request).today(),
            _context(request, caller),
            reallocation_reason=body.reason,
        )
    )
    return {"case_id": str(case_id), "events": [e.event_type for e in events]}


@router.post("/cases/{case_id}/conflict-declaration")
async def declare_conflict(
    case_id: UUID,
    body: Reason,
    request: Request,
    caller: Annotated[Caller, Depends(require_roles("reviewer"))],
) -> dict[str, Any]:
    await _checked(
        handlers.declare_conflict(
            _store(request), case_id, caller.sub, body.reason, _context(request, caller)
        )
    )
    return {"case_id": str(case_id), "returned_to_queue": True}


@router.get("/cases/{case_id}/suggested-reviewers")
async def suggested_reviewers(case_id: UUID, request: Request, _: LAC) -> dict[str, Any]:
    ranked = await _checked(handlers.suggestions(_store(request), case_id, _runtime(request).today()))
    return {
        "case_id": str(case_id),
        "suggestions": [
            {
                "reviewer_id": str(s.reviewer.reviewer_id),
                "name": s.reviewer.name,
                "senior": s.reviewer.senior,
                "eligible": not s.excluded_because,
                "active_caseload": s.load,
                "capacity": s.reviewer.capacity,
                "last_allocated_on": s.last_allocated_on,
                "excluded_because": [{"code": v.code, "detail": v.detail} for v in s.excluded_because],
            }
            for s in ranked
        ],
    }
