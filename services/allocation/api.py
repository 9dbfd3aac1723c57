"""The allocation service's HTTP API: the LAC's reviewers, queue and allocations; a reviewer's
declaration of a conflict of interest."""

from collections.abc import Awaitable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from infra.auth import Caller, require_roles
from infra.deps import CommandContext, Store, Today
from infra.eventstore import EventStore
from infra.http import ResponseModel
from infra.params import Day
from infra.problems import Problem, RuleViolation
from infra.sealing import KeyDestroyed
from services.allocation import domain, handlers, texts

router = APIRouter(tags=["allocation"])
LAC = Annotated[Caller, Depends(require_roles("lac"))]
T = TypeVar("T")


async def _checked(call: Awaitable[T]) -> T:
    """What is not found, or destroyed, as problems; a rule broken answers at the edge
    (infra.problems, from the DomainError itself)."""
    try:
        return await call
    except handlers.NotFound as missing:
        raise Problem(404, "not_found", f"no {missing.what}") from missing
    except KeyDestroyed as destroyed:
        raise Problem(
            410,
            "personal_data_destroyed",
            "the case's personal data was destroyed at the end of its retention",
        ) from destroyed


Text = Annotated[str, Field(min_length=1, max_length=200)]


class Conflict(ResponseModel):
    kind: Literal["organisation", "person"]
    name: str


class ReviewerCase(ResponseModel):
    case_id: str
    reference: str | None
    role: Literal["reviewer", "senior_reviewer"]
    allocated_on: date
    notified_on: date
    deadline: date
    days_to_deadline: int
    review_type: str | None
    focused_reasons: list[str]
    place_of_death: str | None


class ReviewerView(ResponseModel):
    reviewer_id: str
    sub: str
    user_id: str = Field(description="the same as sub")
    name: str
    employers: list[str]
    organisations: list[str] = Field(description="the same as employers")
    senior: bool
    active: bool
    capacity: int
    caseload: int
    active_caseload: int = Field(description="the same as caseload")
    supporting: int = Field(description="cases the reviewer supports as senior reviewer")
    trained_on: date | None
    training_expires_on: date | None
    standing_conflicts: list[Conflict]
    conflicts: list[Conflict] = Field(description="the same as standing_conflicts")
    last_allocated_on: date | None
    last_supported_on: date | None
    can_take_case: bool
    can_take_a_case_today: bool = Field(description="the same as can_take_case")
    cannot_take_case_because: list[RuleViolation]


class ReviewerPage(ReviewerView):
    cases: list[ReviewerCase] = Field(description="the cases they have now, soonest deadline first")
    # The rule as the domain reads it now, so a page that says how long training lasts says what
    # allocation enforces; the web app holds no rule of its own.
    training_valid_months: int = Field(description="how many months recorded training stays valid")


class Reviewers(ResponseModel):
    reviewers: list[ReviewerView]


class Person(ResponseModel):
    sub: str
    name: str
    senior: bool


class People(ResponseModel):
    people: list[Person]


class QueuedCase(ResponseModel):
    case_id: str
    reference: str | None
    notified_on: date
    deadline: date
    review_type: str | None
    focused_reasons: list[str]
    place_of_death: str | None
    days_waiting: int
    days_to_deadline: int
    returned_to_queue: bool
    returned_because: str | None = Field(
        description="why it came back (a declared conflict, a reopened case its reviewers cannot take);"
        " sealed under the case's key, so null once the case's personal data was destroyed"
    )


class Queue(ResponseModel):
    cases: list[QueuedCase]


class Allocated(ResponseModel):
    case_id: str
    events: list[str] = Field(description="the event types recorded")


class ConflictDeclared(ResponseModel):
    case_id: str
    returned_to_queue: bool


class Suggestion(ResponseModel):
    reviewer_id: str
    sub: str
    name: str
    senior: bool
    eligible: bool
    active_caseload: int
    caseload: int
    capacity: int
    last_allocated_on: date | None
    excluded_because: list[RuleViolation]


class PairMember(ResponseModel):
    reviewer_id: str
    sub: str
    name: str
    caseload: int
    capacity: int


class PairSenior(PairMember):
    supporting: int


class SeniorSuggestion(PairSenior):
    support_capacity: int
    last_supported_on: date | None
    eligible: bool
    excluded_because: list[RuleViolation]


class Pair(ResponseModel):
    reviewer: PairMember
    senior_reviewer: PairSenior


class Suggestions(ResponseModel):
    case_id: str
    reference: str | None
    suggestions: list[Suggestion]
    senior_reviewers: list[SeniorSuggestion]
    pairs: list[Pair] = Field(description="up to five ready pairs of reviewer and senior reviewer")


class NewReviewer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Text = Field(description="the `sub` the reviewer signs in with")
    name: Text
    organisations: list[Text] = Field(min_length=1, max_length=10)
    senior: bool
    capacity: int = Field(ge=1, le=100)


@router.post("/reviewers", status_code=201)
async def register_reviewer(
    body: NewReviewer, _: LAC, store: Store, context: CommandContext, today: Today
) -> ReviewerView:
    exists = Problem(409, "reviewer_exists", f"a reviewer signs in as {body.user_id} already")
    if await store.pool.fetchval("SELECT 1 FROM reviewers WHERE user_id = $1", body.user_id):
        raise exists
    try:
        reviewer_id = await handlers.register_reviewer(
            store,
            context,
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
    return await _reviewer_view(store, today, reviewer_id)


class Training(BaseModel):
    model_config = ConfigDict(extra="forbid")
    completed_on: Day


class StandingConflict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["organisation", "person"]
    name: Text


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=3, max_length=1000)]


@router.post("/reviewers/{reviewer_id}/training")
async def record_training(
    reviewer_id: UUID, body: Training, _: LAC, store: Store, context: CommandContext, today: Today
) -> ReviewerView:
    command = domain.RecordTraining(body.completed_on)
    domain.check_training(command, today)
    await _checked(handlers.command_reviewer(store, reviewer_id, command, context))
    return await _reviewer_view(store, today, reviewer_id)


@router.post("/reviewers/{reviewer_id}/conflicts")
async def record_conflict(
    reviewer_id: UUID, body: StandingConflict, _: LAC, store: Store, context: CommandContext, today: Today
) -> ReviewerView:
    command = domain.RecordConflict(body.kind, body.name)
    await _checked(handlers.command_reviewer(store, reviewer_id, command, context))
    return await _reviewer_view(store, today, reviewer_id)


@router.post("/reviewers/{reviewer_id}/deactivation")
async def deactivate(
    reviewer_id: UUID, body: Reason, _: LAC, store: Store, context: CommandContext, today: Today
) -> ReviewerView:
    """Every case the reviewer holds, as reviewer or as senior reviewer, goes back to the front of the
    queue with them (allocation.CaseReturnedToQueue, saying they were deactivated)."""
    await _checked(handlers.deactivate(store, reviewer_id, body.reason, context))
    return await _reviewer_view(store, today, reviewer_id)


@router.post("/reviewers/{reviewer_id}/reactivation")
async def reactivate(
    reviewer_id: UUID, _: LAC, store: Store, context: CommandContext, today: Today
) -> ReviewerView:
    await _checked(handlers.command_reviewer(store, reviewer_id, domain.Reactivate(), context))
    return await _reviewer_view(store, today, reviewer_id)


@router.get("/reviewers")
async def list_reviewers(_: LAC, store: Store, today: Today) -> Reviewers:
    ids = await store.pool.fetch("SELECT reviewer_id FROM reviewers ORDER BY name")
    return Reviewers(reviewers=[await _reviewer_view(store, today, r["reviewer_id"]) for r in ids])


@router.get("/reviewers/{reviewer_id}")
async def reviewer_page(reviewer_id: UUID, _: LAC, store: Store, today: Today) -> ReviewerPage:
    """One reviewer as GET /reviewers shows them, with the cases they have now (as reviewer or as
    senior reviewer), soonest deadline first."""
    view = await _reviewer_view(store, today, reviewer_id)
    rows = await store.pool.fetch(
        "SELECT c.case_id, o.reference, o.place_of_death, c.reviewer_id, c.allocated_on, c.notified_on,"
        " c.deadline, c.review_type, c.focused_reasons FROM allocation_cases c"
        " LEFT JOIN opened_cases o USING (case_id)"
        " WHERE c.status = 'allocated' AND (c.reviewer_id = $1 OR c.senior_reviewer_id = $1)"
        " ORDER BY c.deadline, c.notified_on, c.case_id",
        reviewer_id,
    )
    cases = [
        {
            "case_id": str(r["case_id"]),
            "reference": r["reference"],
            "role": "reviewer" if r["reviewer_id"] == reviewer_id else "senior_reviewer",
            "allocated_on": r["allocated_on"],
            "notified_on": r["notified_on"],
            "deadline": r["deadline"],
            "days_to_deadline": (r["deadline"] - today).days,
            "review_type": r["review_type"],
            "focused_reasons": r["focused_reasons"],
            "place_of_death": r["place_of_death"],
        }
        for r in rows
    ]
    return ReviewerPage.model_validate(
        view.model_dump() | {"cases": cases, "training_valid_months": domain.TRAINING_VALID_MONTHS}
    )


@router.get("/people")
async def people(
    _: Annotated[
        Caller,
        Depends(require_roles("lac", "qa_panel", "governance", "ig_officer", "reviewer", "senior_reviewer")),
    ],
    store: Store,
) -> People:
    """Every registered reviewer's name, for pages that would otherwise show a `sub`: names only."""
    rows = await store.pool.fetch("SELECT user_id, name, senior FROM reviewers ORDER BY name, user_id")
    return People(people=[Person(sub=r["user_id"], name=r["name"], senior=r["senior"]) for r in rows])


def _violation(v: domain.Violation) -> dict[str, str]:
    return {"code": v.code, "rule": domain.rule_name(v.code), "detail": v.detail}


async def _reviewer_view(store: EventStore, today: date, reviewer_id: UUID) -> ReviewerView:
    row = await store.pool.fetchrow(
        "SELECT r.active_caseload, r.last_allocated_on, r.last_supported_on,"
        " (SELECT count(*) FROM allocation_cases c WHERE c.status = 'allocated'"
        "  AND c.senior_reviewer_id = r.reviewer_id) AS supporting"
        " FROM reviewers r WHERE r.reviewer_id = $1",
        reviewer_id,
    )
    if row is None:
        raise Problem(404, "not_found", f"no reviewer {reviewer_id}")
    async with store.pool.acquire() as conn:
        reviewer, _ = await handlers.load_reviewer(store, conn, reviewer_id)
    expires = reviewer.training_expires_on()
    load = row["active_caseload"]
    cannot = domain.availability(reviewer, load, today)
    conflicts = [{"kind": k, "name": n} for k, n in reviewer.conflicts]
    return ReviewerView.model_validate(
        {
            "reviewer_id": str(reviewer_id),
            "sub": reviewer.user_id,
            "user_id": reviewer.user_id,
            "name": reviewer.name,
            "employers": list(reviewer.organisations),
            "organisations": list(reviewer.organisations),
            "senior": reviewer.senior,
            "active": reviewer.active,
            "capacity": reviewer.capacity,
            "caseload": load,
            "active_caseload": load,
            "supporting": row["supporting"],
            "trained_on": reviewer.trained_on,
            "training_expires_on": expires,
            "standing_conflicts": conflicts,
            "conflicts": conflicts,
            "last_allocated_on": row["last_allocated_on"],
            "last_supported_on": row["last_supported_on"],
            "can_take_case": not cannot,
            "can_take_a_case_today": not cannot,
            "cannot_take_case_because": [_violation(v) for v in cannot],
        }
    )


@router.get("/allocation-queue")
async def queue(_: LAC, store: Store, today: Today) -> Queue:
    async with store.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.case_id, o.reference, o.place_of_death, c.notified_on, c.deadline, c.review_type,"
            " c.focused_reasons, c.returned_at, c.returned_reason, c.waiting_since"
            " FROM allocation_cases c LEFT JOIN opened_cases o USING (case_id) WHERE c.status = 'waiting'"
            " ORDER BY c.returned_at DESC NULLS LAST, c.notified_on, c.waiting_since"
        )
        # Only the LAC reads the queue: each returned case's reason opened under its own key.
        because = {
            r["case_id"]: (await texts.opener(conn, r["case_id"]))(texts.from_store(r["returned_reason"]))
            for r in rows
            if r["returned_reason"] is not None
        }
    return Queue.model_validate(
        {
            "cases": [
                {
                    "case_id": str(r["case_id"]),
                    "reference": r["reference"],
                    "notified_on": r["notified_on"],
                    "deadline": r["deadline"],
                    "review_type": r["review_type"],
                    "focused_reasons": r["focused_reasons"],
                    "place_of_death": r["place_of_death"],
                    "days_waiting": (today - r["notified_on"]).days,
                    "days_to_deadline": (r["deadline"] - today).days,
                    "returned_to_queue": r["returned_at"] is not None,
                    # Why it came back (a declared conflict, a reopened case its reviewers cannot take).
                    "returned_because": because.get(r["case_id"]),
                }
                for r in rows
            ]
        }
    )


class AllocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer_id: UUID
    senior_reviewer_id: UUID


class ReallocationRequest(AllocationRequest):
    reason: Annotated[str, Field(min_length=3, max_length=1000)]


@router.post("/cases/{case_id}/allocation", status_code=201)
async def allocate(
    case_id: UUID, body: AllocationRequest, _: LAC, store: Store, context: CommandContext, today: Today
) -> Allocated:
    events = await _checked(
        handlers.allocate(store, case_id, body.reviewer_id, body.senior_reviewer_id, today, context)
    )
    return Allocated(case_id=str(case_id), events=[e.event_type for e in events])


@router.post("/cases/{case_id}/reallocation")
async def reallocate(
    case_id: UUID, body: ReallocationRequest, _: LAC, store: Store, context: CommandContext, today: Today
) -> Allocated:
    events = await _checked(
        handlers.allocate(
            store,
            case_id,
            body.reviewer_id,
            body.senior_reviewer_id,
            today,
            context,
            reallocation_reason=body.reason,
        )
    )
    return Allocated(case_id=str(case_id), events=[e.event_type for e in events])


@router.post("/cases/{case_id}/conflict-declaration")
async def declare_conflict(
    case_id: UUID,
    body: Reason,
    caller: Annotated[Caller, Depends(require_roles("reviewer"))],
    store: Store,
    context: CommandContext,
) -> ConflictDeclared:
    """A case that does not exist answers as one not allocated to the caller does (403
    `not_allocated_to_caller`, the same words): no answer tells a reviewer which cases exist."""
    try:
        await _checked(handlers.declare_conflict(store, case_id, caller.sub, body.reason, context))
    except Problem as refused:
        if refused.status != 404:
            raise
        name = await store.pool.fetchval("SELECT name FROM reviewers WHERE user_id = $1", caller.sub)
        error = domain.NotAllocatedToCaller(f"case {case_id} is not allocated to {name}")
        raise error from refused
    return ConflictDeclared(case_id=str(case_id), returned_to_queue=True)


@router.get("/cases/{case_id}/suggested-reviewers")
async def suggested_reviewers(case_id: UUID, _: LAC, store: Store, today: Today) -> Suggestions:
    """Every reviewer ranked for the case (the eligible first, reviewers who are not senior before
    senior reviewers), every senior reviewer ranked to support it (supporting counts against its own
    capacity, `support_capacity`), and up to five ready pairs; whoever is excluded comes with each
    rule they break. A case the notification service has not opened is a 409 naming its state."""
    offered = await _checked(handlers.suggestions(store, case_id, today))
    reference = await store.pool.fetchval("SELECT reference FROM opened_cases WHERE case_id = $1", case_id)
    return Suggestions.model_validate(
        {
            "case_id": str(case_id),
            "reference": reference,
            "suggestions": [
                {
                    "reviewer_id": str(s.reviewer.reviewer_id),
                    "sub": s.reviewer.user_id,
                    "name": s.reviewer.name,
                    "senior": s.reviewer.senior,
                    "eligible": not s.excluded_because,
                    "active_caseload": s.load,
                    "caseload": s.load,
                    "capacity": s.reviewer.capacity,
                    "last_allocated_on": s.last_allocated_on,
                    "excluded_because": [_violation(v) for v in s.excluded_because],
                }
                for s in offered.reviewers
            ],
            "senior_reviewers": [
                {
                    **_person(c.reviewer, _load(offered, c.reviewer.reviewer_id)),
                    "supporting": c.supporting,
                    "support_capacity": domain.SUPPORT_CAPACITY,
                    "last_supported_on": c.last_supported_on,
                    "eligible": not c.excluded_because,
                    "excluded_because": [_violation(v) for v in c.excluded_because],
                }
                for c in offered.seniors
            ],
            "pairs": [
                {
                    "reviewer": _person(p.reviewer.reviewer, p.reviewer.load),
                    "senior_reviewer": {
                        **_person(p.senior.reviewer, _load(offered, p.senior.reviewer.reviewer_id)),
                        "supporting": p.senior.supporting,
                    },
                }
                for p in offered.pairs
            ],
        }
    )


def _person(reviewer: domain.Reviewer, caseload: int) -> dict[str, Any]:
    return {
        "reviewer_id": str(reviewer.reviewer_id),
        "sub": reviewer.user_id,
        "name": reviewer.name,
        "caseload": caseload,
        "capacity": reviewer.capacity,
    }


def _load(offered: handlers.Suggested, reviewer_id: UUID) -> int:
    return next(s.load for s in offered.reviewers if s.reviewer.reviewer_id == reviewer_id)
