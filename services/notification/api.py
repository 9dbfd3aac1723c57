"""The notification service's HTTP API: parse, authorise, decide through the handlers, answer."""

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from events.notification import CaseFacts, FocusedReason
from events.partner import EthnicCategory, InvalidNotification, NotifierRole, PlaceOfDeath, parse_notification
from infra.auth import Caller, require_roles
from infra.deps import CommandContext, CorrelationId, Store
from infra.eventstore import Context, EventStore
from infra.params import MAX_INT, Day
from infra.problems import Problem, documented_refusal
from infra.sealing import KeyDestroyed
from services.notification import domain, handlers
from services.notification.personal import PersonalDetails

router = APIRouter(tags=["notification"])
LAC = Depends(require_roles("lac"))
REFERENCE_PATTERN = r"^LDR-\d{4}-\d{5}$"
# Who sees only the cases allocated to them: to them a case that does not exist answers as one not
# theirs does (403 `not_allocated_to_caller`), so that no answer tells them which cases exist.
ALLOCATED_ONLY = frozenset({"reviewer", "senior_reviewer"})


class Notifier(BaseModel):
    organisation: str
    role: NotifierRole
    notification_id: UUID


class CaseView(BaseModel):
    """A case as the LAC's pages (and the allocated reviewers) see it: facts only, never who."""

    case_id: UUID
    reference: str | None = Field(
        description="LDR-<year notified>-<five digits>; none while eligibility is to be confirmed"
    )
    status: Literal["open", "eligibility_to_confirm", "not_eligible", "closed"] = Field(
        description="`closed`: the QA panel approved its review and closed it; reopened, it is `open` again"
    )
    outcome: Literal["case_opened", "eligibility_to_confirm", "not_eligible"]
    review_type: Literal["initial", "focused"] | None
    focused_reasons: list[FocusedReason]
    flags: list[str]
    unknown_diagnoses: list[str] = Field(description="what the LAC is to confirm")
    notified_at: datetime
    notified_on: date = Field(description="the date the death was notified (UTC)")
    date_of_death: date
    age_at_death: int
    place_of_death: PlaceOfDeath
    facts: CaseFacts
    notifiers: list[Notifier] = Field(description="who notified it, first the one that opened it")
    reviewer_user_id: str | None
    senior_reviewer_user_id: str | None
    personal_destroyed: bool


class CaseList(BaseModel):
    cases: list[CaseView]
    limit: int
    offset: int


class CaseChange(BaseModel):
    events: list[str] = Field(description="the event types recorded")
    case: CaseView


def _not_found(missing: handlers.CaseNotFound) -> Problem:
    """A case that does not exist (a rule broken answers at the edge, infra.problems, from the
    DomainError itself)."""
    return Problem(404, "case_not_found", f"no case {missing}")


def _not_allocated(caller: Caller, case_id: UUID) -> domain.DomainError:
    """What a reviewer asking for a case that does not exist is told: the very answer (status, code,
    words) of one that exists but is not allocated to them (domain.decide_read, decide_view)."""
    return domain.NotAllowedToSeePersonalDetails(f"{caller.sub} is not allocated to case {case_id}")


class NotificationOutcome(BaseModel):
    notification_id: UUID
    outcome: Literal[
        "case_opened", "duplicate_linked", "referred_to_cdop", "not_eligible", "eligibility_to_confirm"
    ]
    case_id: UUID | None
    review_type: Literal["initial", "focused"] | None
    focused_reasons: list[str]
    flags: list[str]
    reference: str | None = Field(
        description="the reference of the case it opened or was linked to, once that case is open"
    )


@router.post(
    "/notifications",
    status_code=201,
    response_model=NotificationOutcome,
    summary="Notify a death (partner notification v1: events/schemas/partner-notification.v1.json)",
    responses={
        200: {
            "model": NotificationOutcome,
            "description": "a re-send of a notification, the same in every field: its first outcome,"
            " nothing written",
        },
        409: documented_refusal(
            "`notification_id_conflict`: the notification_id was taken by a notification"
            " with other content (or another organisation's): nothing written; send it with a new id"
        ),
        422: documented_refusal(
            "`validation_failed`: each field error named, `notifier.organisation` too when"
            " it is not the organisation your token names"
        ),
    },
)
async def notify(
    request: Request,
    response: Response,
    caller: Annotated[Caller, Depends(require_roles("partner_system", "lac"))],
    store: Store,
    context: CommandContext,
) -> NotificationOutcome:
    try:
        notification = parse_notification(await request.body())
    except InvalidNotification as invalid:
        raise Problem(
            422,
            "validation_failed",
            f"{len(invalid.errors)} field error(s)",
            errors=[e.as_dict() for e in invalid.errors],
        ) from invalid
    try:
        domain.check_notifier(notification, caller.role, caller.organisation)
    except domain.NotYourOrganisation as theirs:
        raise Problem(
            422,
            "validation_failed",
            "1 field error(s)",
            errors=[{"field": "notifier.organisation", "type": theirs.code, "message": theirs.detail}],
        ) from theirs
    # The store's transaction, not a bare connection: should its COMMIT go unanswered, the store finds
    # out whether it happened rather than tell the partner to send again what is recorded.
    async with store.transaction() as conn:
        result = await handlers.take_notification(store, conn, notification, context)
    if not result.created:
        response.status_code = 200
    return NotificationOutcome.model_validate(result, from_attributes=True)


@router.get("/notifications/{notification_id}", response_model=NotificationOutcome)
async def notification_outcome(
    notification_id: UUID,
    caller: Annotated[Caller, Depends(require_roles("partner_system", "lac"))],
    store: Store,
) -> NotificationOutcome:
    """What became of a notification, whichever door it came through: a partner that published on
    the topic learns its outcome and case here (404 until it has been taken). A partner reads its own
    organisation's notifications only: another's answers 404, as one never taken does."""
    row = await store.pool.fetchrow(
        "SELECT n.notification_id, n.outcome, n.case_id, c.review_type, c.reference, n.organisation,"
        " coalesce(c.focused_reasons, '{}') AS focused_reasons, coalesce(c.flags, '{}') AS flags"
        " FROM notifications n LEFT JOIN cases c ON c.case_id = n.case_id WHERE n.notification_id = $1",
        notification_id,
    )
    if row is not None and not domain.may_read_outcome(caller.role, caller.organisation, row["organisation"]):
        row = None
    if row is None:
        raise Problem(404, "notification_not_found", f"no notification {notification_id} has been taken")
    return NotificationOutcome.model_validate(dict(row))


class EligibilityDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["confirm", "reject"]
    learning_disability: bool | None = None
    autism: bool | None = None
    reason: str | None = Field(default=None, max_length=1000)


@router.post("/cases/{case_id}/eligibility", response_model=CaseChange)
async def decide_eligibility(
    case_id: UUID, body: EligibilityDecision, _: Annotated[Caller, LAC], store: Store, context: CommandContext
) -> CaseChange:
    """Confirming opens the case, which gets its reference (the next of the year it was notified)."""
    if body.decision == "reject" and not body.reason:
        raise Problem(422, "reason_required", "rejecting eligibility needs a reason")

    def decide(case: domain.Case, reference: str, notified_on: date) -> list[Any]:
        return domain.decide_eligibility(
            case,
            body.decision == "confirm",
            body.learning_disability,
            body.autism,
            body.reason,
            reference=reference,
            notified_on=notified_on,
        )

    try:
        events = await handlers.change_opening_case(store, case_id, decide, context)
    except handlers.CaseNotFound as missing:
        raise _not_found(missing) from missing
    return await _changed(store, case_id, events)


class EthnicityRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ethnicity: EthnicCategory


@router.post("/cases/{case_id}/ethnicity", response_model=CaseChange)
async def record_ethnicity(
    case_id: UUID, body: EthnicityRecord, _: Annotated[Caller, LAC], store: Store, context: CommandContext
) -> CaseChange:
    return await _change(store, context, case_id, lambda case: domain.decide_ethnicity(case, body.ethnicity))


async def _change(
    store: EventStore, context: Context, case_id: UUID, decide: handlers.Decision
) -> CaseChange:
    try:
        events = await handlers.change_case(store, case_id, decide, context)
    except handlers.CaseNotFound as missing:
        raise _not_found(missing) from missing
    return await _changed(store, case_id, events)


async def _changed(store: EventStore, case_id: UUID, events: list[Any]) -> CaseChange:
    """The event types a command recorded, and the case as it is now."""
    case = CaseView.model_validate(await get_case_row(store, case_id))
    return CaseChange(events=[e.event_type for e in events], case=case)


@router.get("/cases", response_model=CaseList)
async def list_cases(
    _: Annotated[Caller, LAC],
    store: Store,
    status: Annotated[
        Literal["open", "eligibility_to_confirm", "not_eligible", "closed"] | None,
        Query(
            description="`eligibility_to_confirm`: the cases whose eligibility the LAC is to confirm;"
            " `open` leaves out the cases the QA panel closed (`closed`) until they are reopened"
        ),
    ] = None,
    review_type: Annotated[Literal["initial", "focused"] | None, Query()] = None,
    notified_from: Annotated[Day | None, Query(description="inclusive; 1900-01-01 to 2100-12-31")] = None,
    notified_to: Annotated[Day | None, Query(description="inclusive; 1900-01-01 to 2100-12-31")] = None,
    reference: Annotated[
        str | None, Query(pattern=REFERENCE_PATTERN, description="exactly, e.g. LDR-2026-00042")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> CaseList:
    """The LAC's list, oldest notification first."""
    start = datetime.combine(notified_from, time.min, UTC) if notified_from else None
    end = datetime.combine(notified_to + timedelta(days=1), time.min, UTC) if notified_to else None
    rows = await store.pool.fetch(
        f"SELECT {_CASE_COLUMNS} FROM cases WHERE ($1::text IS NULL OR status = $1)"
        " AND ($2::text IS NULL OR review_type = $2) AND ($3::timestamptz IS NULL OR notified_at >= $3)"
        " AND ($4::timestamptz IS NULL OR notified_at < $4) AND ($7::text IS NULL OR reference = $7)"
        " ORDER BY notified_at, case_id LIMIT $5 OFFSET $6",
        status, review_type, start, end, limit, offset, reference,
    )  # fmt: skip
    cases = [CaseView.model_validate(_case_json(r)) for r in rows]
    return CaseList(cases=cases, limit=limit, offset=offset)


@router.get("/cases/{case_id}", response_model=CaseView)
async def get_case(
    case_id: UUID,
    caller: Annotated[Caller, Depends(require_roles("lac", "reviewer", "senior_reviewer"))],
    store: Store,
    context: CommandContext,
) -> CaseView:
    """Facts only, never personal details. The LAC sees every case; a reviewer or senior reviewer only
    a case allocated to them now (403 `not_allocated_to_caller` otherwise), as for `/person`. Each read
    is recorded (notification.CaseRead: who, in which role) on the case's reads stream. To a reviewer
    or senior reviewer, a case that does not exist is not allocated to them either (the same 403)."""
    try:
        case = await get_case_row(store, case_id)
    except Problem as missing:
        if caller.role in ALLOCATED_ONLY:
            raise _not_allocated(caller, case_id) from missing
        raise
    allocated = frozenset(
        v
        for v in (case["reviewer_user_id"], case["senior_reviewer_user_id"])
        if v is not None and case["allocation_ended"] is None
    )
    read = domain.decide_read(case_id, caller.sub, caller.role, allocated)
    await handlers.record_read(store, case_id, read, context)
    return CaseView.model_validate(case)


_CASE_COLUMNS = (
    "case_id, reference, status, review_type, focused_reasons, flags, unknown_diagnoses, notified_at, facts,"
    " notifiers, reviewer_user_id, senior_reviewer_user_id, personal_destroyed"
)


async def get_case_row(store: EventStore, case_id: UUID) -> dict[str, Any]:
    row = await store.pool.fetchrow(
        f"SELECT {_CASE_COLUMNS}, allocation_ended FROM cases WHERE case_id = $1", case_id
    )
    if row is None:
        raise Problem(404, "case_not_found", f"no case {case_id}")
    return _case_json(row)


def _case_json(row: Any) -> dict[str, Any]:
    case = dict(row)
    facts = json.loads(case["facts"])
    case["facts"] = facts
    case["notifiers"] = json.loads(case["notifiers"])
    case["outcome"] = "case_opened" if case["status"] in ("open", "closed") else case["status"]
    case["notified_on"] = case["notified_at"].astimezone(UTC).date()
    for fact in ("date_of_death", "age_at_death", "place_of_death"):
        case[fact] = facts[fact]
    return case


class PersonView(BaseModel):
    case_id: UUID
    person: PersonalDetails


@router.get("/cases/{case_id}/person")
async def get_person(
    case_id: UUID,
    caller: Annotated[Caller, Depends(require_roles("lac", "reviewer", "senior_reviewer"))],
    store: Store,
    correlation_id: CorrelationId,
    reason: Annotated[str, Query(min_length=3, max_length=500, description="why you need to see it")],
) -> PersonView:
    try:
        details = await handlers.personal_details(
            store, case_id, caller.sub, caller.role, reason, correlation_id
        )
    except handlers.CaseNotFound as missing:
        if caller.role in ALLOCATED_ONLY:
            raise _not_allocated(caller, case_id) from missing
        raise _not_found(missing) from missing
    except KeyDestroyed as lost:
        # A shredded case is refused by the domain before its key is asked for; a key missing here was
        # lost (a database restored from a backup older than the case, its key not recovered).
        raise Problem(
            410,
            "personal_data_unavailable",
            "the case's data key is not in this service's database (lost with a restore and not"
            " recovered): its personal details cannot be opened",
        ) from lost
    return PersonView(case_id=case_id, person=details)
