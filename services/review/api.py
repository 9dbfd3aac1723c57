"""The review service's HTTP API. Only the allocated reviewer writes; their senior reviewer and the
LAC read, and the QA panel once the review has been submitted; nobody else. Every record is its own
event. GET /vocabulary gives every list a form offers, with labels, so the web app copies none."""

import os
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

from asyncpg import Record
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from events import EventPayload
from events.review import (
    ContactParty,
    ContactStatus,
    Contribution,
    PauseReason,
)
from events.sealing import Sealed
from infra.auth import ROLES, Caller, require_roles
from infra.deps import CommandContext, ServiceRuntime, Store, Today
from infra.eventstore import Context, EventStore
from infra.http import ResponseModel
from infra.params import Day
from infra.problems import Problem
from infra.sealing import KeyDestroyed, seal
from infra.service import Runtime
from services.review import domain, handlers, texts, views
from services.review.vocabulary import (
    GRADE_LABELS,
    THEME_LABELS,
    THEMES,
    THEMES_VERSION,
    care_scale,
    choices,
    humanise,
    label,
)

router = APIRouter(tags=["review"])
REVIEWER = Annotated[Caller, Depends(require_roles("reviewer", "senior_reviewer"))]
READER = Annotated[Caller, Depends(require_roles("reviewer", "senior_reviewer", "lac"))]
LAC = Annotated[Caller, Depends(require_roles("lac"))]
# The QA panel reads a review once it has been submitted (never a first draft).
REVIEW_READER = Annotated[Caller, Depends(require_roles("reviewer", "senior_reviewer", "lac", "qa_panel"))]
ANYONE = Annotated[Caller, Depends(require_roles(*sorted(ROLES)))]
T = TypeVar("T")
Short = Annotated[str, Field(min_length=1, max_length=300)]
Long = Annotated[str, Field(min_length=1, max_length=20_000)]
# Who sees only the reviews allocated to them: to them a review that does not exist (or has not
# started) answers as one not theirs does (403 `not_allocated_reviewer`), so no answer tells them which
# cases exist.
ALLOCATED_ONLY = frozenset({"reviewer", "senior_reviewer"})


async def _checked(call: Awaitable[T]) -> T:
    """A review not found, as a problem (a rule broken answers at the edge, infra.problems, from the
    DomainError itself)."""
    try:
        return await call
    except handlers.ReviewNotFound as missing:
        raise Problem(404, "review_not_found", f"no review of case {missing}") from missing


def _not_allocated(caller: Caller, case_id: UUID) -> domain.DomainError:
    """The answer (status, code, words) of domain._not_allocated for a review that is not theirs."""
    return domain.NotTheAllocatedReviewer(f"case {case_id} is not allocated to {caller.sub}")


@dataclass(frozen=True)
class Writer:
    """What a command on a review takes from its request: the service (its store, and its keys that
    seal the command's text), who the events are by, and the service's today."""

    runtime: Runtime
    context: Context
    today: date

    @property
    def store(self) -> EventStore:
        return self.runtime.store


async def _writer(runtime: ServiceRuntime, context: CommandContext, today: Today) -> Writer:
    return Writer(runtime, context, today)


WRITE = Annotated[Writer, Depends(_writer)]


async def _sealer(runtime: Runtime, case_id: UUID) -> texts.Sealer:
    """Seals the request's free text under the case's key before anything is decided: the text never
    reaches an event, the database or the broker in clear. 410 once the case's key is destroyed."""
    async with runtime.store.pool.acquire() as conn:
        if not await runtime.store.stream_version(str(case_id), conn=conn):
            # No review (the write will answer 404 or 409): no key is made for a case it may never have;
            # the text is sealed under a key kept nowhere, and is never recorded.
            throwaway = os.urandom(32)
            return lambda text: seal(throwaway, texts.key_id(case_id), text.encode())
        try:
            return await texts.sealer(runtime.keys, conn, case_id)
        except KeyDestroyed:
            # The review records its key's destruction with it: the write is refused there, 403 to one
            # it is not allocated to and 410 to its reviewer, and this text is never recorded. (A 410
            # here would tell anyone that the case exists.)
            throwaway = os.urandom(32)
            return lambda text: seal(throwaway, texts.key_id(case_id), text.encode())


class Recorded(ResponseModel):
    case_id: str
    events: list[str] = Field(description="the event types recorded")


async def _write(write: Writer, caller: Caller, case_id: UUID, decide: handlers.Decision) -> Recorded:
    """A command on the case's review: 404 if the service has never heard of the case; 409
    `review_not_started` if the case is known (opened) but no review has started (not yet allocated).
    To a reviewer or senior reviewer, either is a review not allocated to them (403)."""
    store = write.store
    try:
        events = await _checked(handlers.change_review(store, case_id, decide, write.context))
    except Problem as problem:
        if problem.code == "review_not_found" and caller.role in ALLOCATED_ONLY:
            raise _not_allocated(caller, case_id) from problem
        if problem.code == "review_not_found" and await handlers.case_known(store.pool, case_id):
            raise Problem(
                409,
                "review_not_started",
                f"case {case_id} has no review yet: it is waiting to be allocated to a reviewer",
            ) from problem
        raise
    return Recorded(case_id=str(case_id), events=[e.event_type for e in events])


async def _record(
    write: Writer,
    caller: Caller,
    case_id: UUID,
    *payloads: EventPayload,
    escalation_detail: Sealed | None = None,
) -> Recorded:
    """Each record's date is checked against the service's today and the review's other dates."""
    today = write.today

    def decide(review: domain.Review) -> list[EventPayload]:
        events: list[EventPayload] = []
        for payload in payloads:
            decided = domain.decide_record(review, caller.sub, payload, today, escalation_detail)
            for event in decided:
                review = domain.evolve(review, event) or review
            events += decided
        return events

    return await _write(write, caller, case_id, decide)


class Choice(ResponseModel):
    code: str
    label: str


class ControlledList(ResponseModel):
    free_text: bool = Field(description="true: the values are suggestions; other text is accepted too")
    values: list[Choice]


class VersionedList(ResponseModel):
    version: str
    values: list[Choice]


class CareGrade(ResponseModel):
    code: int = Field(description="1 the best care")
    name: str
    label: str


class CareGrades(ResponseModel):
    version: str
    best_first: bool
    values: list[CareGrade]


class YesNo(ResponseModel):
    code: bool
    label: str


class AgeRange(ResponseModel):
    min: int
    max: int


class CauseOfDeathVocabulary(ResponseModel):
    preventable_or_treatable: list[YesNo]
    age_at_death: AgeRange
    avoidable_rule: str


class Vocabulary(ResponseModel):
    learning_themes: VersionedList
    care_grades: CareGrades
    cause_of_death: CauseOfDeathVocabulary
    phases_of_care: ControlledList
    record_sources: ControlledList
    contact_parties: ControlledList
    contact_statuses: ControlledList
    pause_reasons: ControlledList
    family_involvement_steps: ControlledList
    lapse_contributions: ControlledList
    focused_reasons: ControlledList
    review_types: ControlledList
    review_statuses: ControlledList
    roles_in_case: ControlledList
    checklist_statuses: ControlledList
    qa_outcomes: ControlledList


class MyReview(ResponseModel):
    case_id: str
    reference: str | None
    status: str
    status_label: str
    review_type: str
    focused_reasons: list[str]
    role_in_case: Literal["reviewer", "senior_reviewer"]
    reviewer_user_id: str
    reviewer_name: str | None
    senior_reviewer_user_id: str
    senior_reviewer_name: str | None
    notified_on: date
    deadline: date
    deadline_excluding_pauses: date
    days_left: int
    days_left_excluding_pauses: int
    overdue: bool
    paused: bool
    pause_reason: str | None
    pause_reason_label: str | None
    returned_by_qa: bool
    qa_comments: str | None
    reopened: bool
    reopened_reason: str | None
    submitted_on: date | None
    completed_on: date | None
    can_open: bool = Field(
        description="false: a completed review whose allocation has ended, listed for the record only:"
        " GET /reviews/{case_id} answers 403"
    )


class MyReviews(ResponseModel):
    reviews: list[MyReview]


class DueReview(ResponseModel):
    case_id: str
    reference: str | None
    status: str
    review_type: str
    reviewer_user_id: str
    reviewer_name: str | None
    notified_on: date
    deadline: date
    paused_days: int = Field(description="days paused so far, an open pause counted up to today")
    deadline_excluding_pauses: date
    days_left: int
    days_left_excluding_pauses: int
    overdue: bool
    overdue_excluding_pauses: bool


class DueReviews(ResponseModel):
    reviews: list[DueReview]


class ChecklistEntry(ResponseModel):
    key: str
    label: str
    status: str
    status_label: str
    required: bool
    hint: str


class QaEntry(ResponseModel):
    outcome: Literal["submitted", "returned_for_rework", "approved", "reopened"]
    on: str = Field(description="the date (ISO 8601)")
    comments: str | None = Field(description="the panel's comments on a return; the reason for a reopening")
    outcome_label: str


class HistoryEntry(ResponseModel):
    event_type: str
    at: datetime
    by: str = Field(description="the actor's id")
    data: dict[str, Any]


class ReviewPage(ResponseModel):
    case_id: str
    reference: str | None
    status: str
    status_label: str
    review_type: str
    focused_reasons: list[str]
    reviewer_user_id: str
    reviewer_name: str | None
    senior_reviewer_user_id: str
    senior_reviewer_name: str | None
    notified_on: date
    deadline: date
    deadline_excluding_pauses: date
    days_left: int
    paused: bool
    pause_reason: str | None
    returned_by_qa: bool
    qa_comments: str | None
    reopened: bool
    reopened_reason: str | None
    personal_data_destroyed: bool = Field(
        description="the case's retention period ended: every free text of the review reads null"
    )
    missing_for_submission: list[str] = Field(description="the checklist keys still needed to submit")
    checklist: list[ChecklistEntry]
    records: dict[str, Any] = Field(
        description="everything recorded, by kind (contacts, records, pen_portrait, family_involvement, "
        "care_judgements, lapses_in_care, good_practice, learning, recommendations, cause_of_death, "
        "safeguarding_referrals, escalations, pauses, notes), each entry with its own fields and "
        "`recorded_at` and `recorded_by`"
    )
    qa: list[QaEntry]
    history: list[HistoryEntry]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Contact(_Body):
    party: ContactParty
    status: ContactStatus
    on: Day
    role: Short | None = None
    organisation: Short | None = None


@router.post("/reviews/{case_id}/contacts", status_code=201)
async def record_contact(case_id: UUID, body: Contact, caller: REVIEWER, write: WRITE) -> Recorded:
    """A contact on a date (`on`) not after today (422 `date_in_future`)."""
    contact = domain.contact_recorded(case_id, domain.RecordContact(**body.model_dump()))
    return await _record(write, caller, case_id, contact)


class Records(_Body):
    source: Short
    requested_on: Day | None = None
    received_on: Day | None = None


@router.post("/reviews/{case_id}/records", status_code=201)
async def record_records(case_id: UUID, body: Records, caller: REVIEWER, write: WRITE) -> Recorded:
    """Records asked for (`requested_on`), received (`received_on`), or both. Neither date may be after
    today (422 `date_in_future`), nor may records be received before they were requested from the same
    source, in this request or an earlier one (422 `received_before_requested`)."""
    payloads = domain.records_recorded(case_id, domain.RecordRecords(**body.model_dump()))
    return await _record(write, caller, case_id, *payloads)


class PenPortrait(_Body):
    text: Long


@router.post("/reviews/{case_id}/pen-portrait", status_code=201)
async def write_pen_portrait(case_id: UUID, body: PenPortrait, caller: REVIEWER, write: WRITE) -> Recorded:
    sealed = await _sealer(write.runtime, case_id)
    return await _record(write, caller, case_id, domain.pen_portrait_written(case_id, body.text, sealed))


class FamilyInvolvement(_Body):
    step: Literal["invited_to_comment", "comments_received", "final_copy_offered"]
    on: Day
    comments: Long | None = None


@router.post("/reviews/{case_id}/family-involvement", status_code=201)
async def record_family_involvement(
    case_id: UUID, body: FamilyInvolvement, caller: REVIEWER, write: WRITE
) -> Recorded:
    sealed = await _sealer(write.runtime, case_id)
    command = domain.RecordFamilyInvolvement(**body.model_dump())
    involvement = domain.family_involvement_recorded(case_id, command, sealed)
    return await _record(write, caller, case_id, involvement)


class Judgement(_Body):
    phase: Short
    grade: int
    rationale: Long

    @field_validator("grade")
    @classmethod
    def _on_scale(cls, grade: int) -> int:
        _, names = care_scale()
        if not 1 <= grade <= len(names):
            raise ValueError(f"a grade from 1 ({names[0]}) to {len(names)} ({names[-1]})")
        return grade


@router.post("/reviews/{case_id}/care-judgements", status_code=201)
async def judge_care(case_id: UUID, body: Judgement, caller: REVIEWER, write: WRITE) -> Recorded:
    version, _ = care_scale()
    sealed = await _sealer(write.runtime, case_id)
    command = domain.JudgeCare(body.phase, body.grade, body.rationale, scale_version=version)
    judged = domain.care_judged(case_id, command, sealed)
    return await _record(write, caller, case_id, judged)


class Lapse(_Body):
    what: Long
    where: Short
    organisation: Short
    contribution: Contribution


@router.post("/reviews/{case_id}/lapses-in-care", status_code=201)
async def record_lapse(case_id: UUID, body: Lapse, caller: REVIEWER, write: WRITE) -> Recorded:
    sealed = await _sealer(write.runtime, case_id)
    # Should the lapse escalate an initial review, the escalation says why in the same sealed words.
    lapse, detail = domain.lapse_recorded(case_id, domain.RecordLapse(**body.model_dump()), sealed)
    return await _record(write, caller, case_id, lapse, escalation_detail=detail)


class Themed(_Body):
    text: Long
    themes: list[str] = Field(min_length=1, max_length=10)

    @field_validator("themes")
    @classmethod
    def _known(cls, themes: list[str]) -> list[str]:
        unknown = sorted(set(themes) - THEMES)
        if unknown:
            raise ValueError(f"not in themes {THEMES_VERSION}: {', '.join(unknown)}")
        return themes


@router.post("/reviews/{case_id}/good-practice", status_code=201)
async def record_good_practice(case_id: UUID, body: Themed, caller: REVIEWER, write: WRITE) -> Recorded:
    return await _record(
        write,
        caller,
        case_id,
        domain.good_practice_recorded(
            case_id,
            domain.RecordThemed(body.text, body.themes, THEMES_VERSION),
            await _sealer(write.runtime, case_id),
        ),
    )


@router.post("/reviews/{case_id}/learning", status_code=201)
async def record_learning(case_id: UUID, body: Themed, caller: REVIEWER, write: WRITE) -> Recorded:
    return await _record(
        write,
        caller,
        case_id,
        domain.learning_recorded(
            case_id,
            domain.RecordThemed(body.text, body.themes, THEMES_VERSION),
            await _sealer(write.runtime, case_id),
        ),
    )


class Recommendation(_Body):
    what: Long
    organisation: Short


@router.post("/reviews/{case_id}/recommendations", status_code=201)
async def record_recommendation(
    case_id: UUID, body: Recommendation, caller: REVIEWER, write: WRITE
) -> Recorded:
    sealed = await _sealer(write.runtime, case_id)
    recommendation = domain.recommendation_recorded(case_id, body.what, body.organisation, sealed)
    return await _record(write, caller, case_id, recommendation)


class CauseOfDeath(_Body):
    cause: Long
    preventable_or_treatable: bool
    age_at_death: int = Field(ge=0, le=130)


@router.post("/reviews/{case_id}/cause-of-death", status_code=201)
async def record_cause_of_death(
    case_id: UUID, body: CauseOfDeath, caller: REVIEWER, write: WRITE
) -> Recorded:
    command = domain.RecordCauseOfDeath(**body.model_dump())
    recorded = domain.cause_of_death_recorded(case_id, command, await _sealer(write.runtime, case_id))
    return await _record(write, caller, case_id, recorded)


class Referral(_Body):
    to: Short
    on: Day
    why: Long


@router.post("/reviews/{case_id}/safeguarding-referrals", status_code=201)
async def refer(case_id: UUID, body: Referral, caller: REVIEWER, write: WRITE) -> Recorded:
    sealed = await _sealer(write.runtime, case_id)
    referral = domain.referral_made(case_id, domain.Refer(**body.model_dump()), sealed)
    return await _record(write, caller, case_id, referral)


class Escalation(_Body):
    detail: Long


@router.post("/reviews/{case_id}/escalation", status_code=201)
async def escalate_for_learning(case_id: UUID, body: Escalation, caller: READER, write: WRITE) -> Recorded:
    detail = (await _sealer(write.runtime, case_id))(body.detail)
    return await _write(
        write,
        caller,
        case_id,
        lambda r: domain.decide_escalation_for_learning(r, caller.sub, caller.role, detail),
    )


class Pause(_Body):
    reason: PauseReason


@router.post("/reviews/{case_id}/pause", status_code=201)
async def pause(case_id: UUID, body: Pause, caller: REVIEWER, write: WRITE) -> Recorded:
    return await _write(
        write, caller, case_id, lambda r: domain.decide_pause(r, caller.sub, body.reason, write.today)
    )


@router.post("/reviews/{case_id}/resumption", status_code=201)
async def resume(case_id: UUID, caller: REVIEWER, write: WRITE) -> Recorded:
    return await _write(write, caller, case_id, lambda r: domain.decide_resume(r, caller.sub, write.today))


class Note(_Body):
    text: Long


@router.post("/reviews/{case_id}/notes", status_code=201)
async def add_note(case_id: UUID, body: Note, caller: REVIEWER, write: WRITE) -> Recorded:
    """A note by the allocated reviewer: the only write a paused review takes, and a submitted review
    takes notes only (what happened while it waits for the QA panel); a completed review takes nothing,
    notes included (409 `review_completed`), unless its case is reopened."""
    sealed = await _sealer(write.runtime, case_id)
    return await _record(write, caller, case_id, domain.note_added(case_id, body.text, sealed))


@router.post("/reviews/{case_id}/submission", status_code=201)
async def submit(case_id: UUID, caller: REVIEWER, write: WRITE) -> Recorded:
    return await _write(
        write, caller, case_id, lambda r: domain.decide_submission(r, caller.sub, write.today)
    )


@router.get("/vocabulary")
async def vocabulary(_: ANYONE) -> Vocabulary:
    """Every controlled list the write endpoints accept (and the reads return), in order, each value
    with the label people read. `free_text: true`: suggestions; other text is accepted too."""
    version, names = care_scale()
    lists: dict[str, Any] = {
        "learning_themes": {
            "version": THEMES_VERSION,
            "values": [{"code": c, "label": t} for c, t in sorted(THEME_LABELS.items(), key=lambda i: i[1])],
        },
        "care_grades": {
            "version": version,
            "best_first": True,
            "values": [
                {"code": n, "name": name, "label": GRADE_LABELS.get(name, humanise(name))}
                for n, name in enumerate(names, start=1)
            ],
        },
        "cause_of_death": {
            "preventable_or_treatable": [
                {"code": True, "label": "Yes, the cause was preventable or treatable"},
                {"code": False, "label": "No"},
            ],
            "age_at_death": {"min": 0, "max": 130},
            "avoidable_rule": "Avoidable: under 75 and from a preventable or treatable cause",
        },
    }
    for name in (
        "phases_of_care",
        "record_sources",
        "contact_parties",
        "contact_statuses",
        "pause_reasons",
        "family_involvement_steps",
        "lapse_contributions",
        "focused_reasons",
        "review_types",
        "review_statuses",
        "roles_in_case",
        "checklist_statuses",
        "qa_outcomes",
    ):
        lists[name] = {"free_text": name in ("phases_of_care", "record_sources"), "values": choices(name)}
    return Vocabulary.model_validate(lists)


_ROWS = (
    "SELECT r.*, c.reference, n.name AS reviewer_name, s.name AS senior_reviewer_name FROM reviews r"
    " LEFT JOIN case_references c USING (case_id)"
    " LEFT JOIN reviewer_names n ON n.user_id = r.reviewer_user_id"
    " LEFT JOIN reviewer_names s ON s.user_id = r.senior_reviewer_user_id"
)


def _clock(row: Record, today: date) -> dict[str, Any]:
    """A review's deadline counting paused time and not counting it (an open pause up to today)."""
    paused = row["paused_days"] + ((today - row["paused_since"]).days if row["paused_since"] else 0)
    excluding: date = row["deadline"] + timedelta(days=paused)
    return {
        "deadline": row["deadline"],
        "paused_days": paused,
        "deadline_excluding_pauses": excluding,
        "days_left": (row["deadline"] - today).days,
        "days_left_excluding_pauses": (excluding - today).days,
        "overdue": today > row["deadline"],
        "overdue_excluding_pauses": today > excluding,
    }


async def _opened_comments(runtime: Runtime, rows: Sequence[Record]) -> dict[tuple[UUID, str], str | None]:
    """The panel's comments and the reason for a reopening, kept sealed in the read model, opened for
    the reviews the caller may open: (case, column) -> text (None once the case's key is destroyed)."""
    out: dict[tuple[UUID, str], str | None] = {}
    wanted = [r for r in rows if r["qa_comments"] or r["reopened_reason"]]
    if not wanted:
        return out
    async with runtime.store.pool.acquire() as conn:
        for row in wanted:
            open_ = await texts.opener(runtime.keys, conn, row["case_id"])
            for column in ("qa_comments", "reopened_reason"):
                out[(row["case_id"], column)] = open_(texts.sealed_in(row[column]))
    return out


@router.get("/reviews/mine")
async def my_reviews(
    caller: REVIEWER,
    runtime: ServiceRuntime,
    context: CommandContext,
    today: Today,
    completed_within_days: Annotated[
        int, Query(ge=0, le=366, description="completed reviews shown for this many days")
    ] = 30,
) -> MyReviews:
    """The caller's open reviews and those completed lately, as the allocated reviewer or as the
    supporting senior reviewer (matched on their sign-in, whatever their role), soonest deadline first.
    A review whose allocation has ended is not listed (a conflict declared, the case back in the
    queue), except a completed one, listed without its content and `can_open` false."""
    store = runtime.store
    rows = await store.pool.fetch(
        _ROWS + " WHERE (r.reviewer_user_id = $1 OR r.senior_reviewer_user_id = $1)"
        " AND (r.status <> 'completed' OR r.completed_on >= $2)"
        " AND (r.access_ended IS NULL OR r.status = 'completed') ORDER BY r.deadline, r.case_id",
        caller.sub,
        today - timedelta(days=completed_within_days),
    )
    opened = await _opened_comments(runtime, [r for r in rows if r["access_ended"] is None])
    # The panel's comments or why a case was reopened are the review's content: their reading is
    # recorded, case by case, as a read of the review is.
    for case_id in sorted({case for (case, _), text in opened.items() if text is not None}):
        await handlers.record_reads(store, case_id, domain.read_by(case_id, caller.sub, caller.role), context)
    out = []
    for row in rows:
        role = "reviewer" if row["reviewer_user_id"] == caller.sub else "senior_reviewer"
        clock = _clock(row, today)
        can_open = row["access_ended"] is None
        out.append(
            {
                "case_id": str(row["case_id"]),
                "reference": row["reference"],
                "status": row["status"],
                "status_label": label("review_statuses", row["status"]),
                "review_type": row["review_type"],
                "focused_reasons": list(row["focused_reasons"]),
                "role_in_case": role,
                "reviewer_user_id": row["reviewer_user_id"],
                "reviewer_name": row["reviewer_name"],
                "senior_reviewer_user_id": row["senior_reviewer_user_id"],
                "senior_reviewer_name": row["senior_reviewer_name"],
                "notified_on": row["notified_on"],
                "deadline": clock["deadline"],
                "deadline_excluding_pauses": clock["deadline_excluding_pauses"],
                "days_left": clock["days_left"],
                "days_left_excluding_pauses": clock["days_left_excluding_pauses"],
                "overdue": clock["overdue"],
                "paused": row["status"] == "paused",
                "pause_reason": row["pause_reason"],
                "pause_reason_label": label("pause_reasons", row["pause_reason"])
                if row["pause_reason"]
                else None,
                "returned_by_qa": row["returned_by_qa"],
                "qa_comments": opened.get((row["case_id"], "qa_comments")),
                "reopened": row["reopened_reason"] is not None,
                "reopened_reason": opened.get((row["case_id"], "reopened_reason")),
                "submitted_on": row["submitted_on"],
                "completed_on": row["completed_on"],
                "can_open": can_open,
            }
        )
    return MyReviews.model_validate({"reviews": out})


@router.get("/reviews/overdue")
async def overdue(_: LAC, store: Store, today: Today) -> DueReviews:
    rows = await _deadline_rows(store, today, None)
    return DueReviews.model_validate(
        {"reviews": [r for r in rows if r["overdue"] or r["overdue_excluding_pauses"]]}
    )


@router.get("/reviews")
async def reviews_due(
    _: LAC,
    store: Store,
    today: Today,
    due_before: Annotated[
        Day | None, Query(description="deadline before this date (1900-01-01 to 2100-12-31)")
    ] = None,
) -> DueReviews:
    return DueReviews.model_validate({"reviews": await _deadline_rows(store, today, due_before)})


async def _deadline_rows(store: EventStore, today: date, due_before: date | None) -> list[dict[str, Any]]:
    """Each open review's deadline counting paused time and not counting it."""
    rows = await store.pool.fetch(_ROWS + " WHERE r.status <> 'completed' ORDER BY r.deadline, r.case_id")
    out = []
    for row in rows:
        clock = _clock(row, today)
        if due_before and not (
            row["deadline"] < due_before or clock["deadline_excluding_pauses"] < due_before
        ):
            continue
        out.append(
            {
                "case_id": str(row["case_id"]),
                "reference": row["reference"],
                "status": row["status"],
                "review_type": row["review_type"],
                "reviewer_user_id": row["reviewer_user_id"],
                "reviewer_name": row["reviewer_name"],
                "notified_on": row["notified_on"],
                **clock,
            }
        )
    return out


@router.get("/reviews/{case_id}")
async def get_review(
    case_id: UUID, caller: REVIEW_READER, runtime: ServiceRuntime, context: CommandContext, today: Today
) -> ReviewPage:
    """The review with its task list (`checklist`), its content as a report (`records`), its QA
    decisions (`qa`) and its whole history."""
    store = runtime.store
    # The stream is read on a connection of its own, never while this one is held: a request holding
    # one connection while it waits for another starves the pool under load (all wait, none returns).
    try:
        async with store.pool.acquire() as conn:
            review, _ = await _checked(handlers.load_review(store, conn, case_id))
    except Problem as missing:
        if caller.role in ALLOCATED_ONLY:  # none, or not theirs: the same answer
            raise _not_allocated(caller, case_id) from missing
        raise
    reads = domain.decide_read(review, caller.sub, caller.role)
    # Recorded before anything of the review is answered: no look at a case without its trace.
    await handlers.record_reads(store, case_id, reads, context)
    history = await store.read_stream(str(case_id))
    async with store.pool.acquire() as conn:
        open_ = await texts.opener(runtime.keys, conn, case_id)
        reference = await handlers.reference(conn, case_id)
        names = await handlers.names(
            conn,
            [review.reviewer_user_id, review.senior_reviewer_user_id, *(e.actor.id for e in history)],
        )
    return ReviewPage.model_validate(
        {
            "case_id": str(case_id),
            "reference": reference,
            "status": review.status,
            "status_label": label("review_statuses", review.status),
            "review_type": review.review_type,
            "focused_reasons": list(review.focused_reasons),
            "reviewer_user_id": review.reviewer_user_id,
            "reviewer_name": names.get(review.reviewer_user_id),
            "senior_reviewer_user_id": review.senior_reviewer_user_id,
            "senior_reviewer_name": names.get(review.senior_reviewer_user_id),
            "notified_on": review.notified_on,
            "deadline": review.deadline,
            "deadline_excluding_pauses": review.deadline_excluding_pauses(today),
            "days_left": (review.deadline - today).days,
            "paused": review.status == "paused",
            "pause_reason": review.pause_reason,
            "returned_by_qa": review.returned_by_qa,
            "qa_comments": open_(review.returned_comments),
            "reopened": review.reopened_reason is not None,
            "reopened_reason": open_(review.reopened_reason),
            "personal_data_destroyed": review.personal_data_destroyed,
            "missing_for_submission": domain.missing_for_submission(review),
            "checklist": views.checklist(domain.checklist(review)),
            "records": views.records(history, names, open_),
            "qa": views.qa(history, open_),
            "history": [
                {
                    "event_type": e.event_type,
                    "at": e.occurred_at,
                    "by": e.actor.id,
                    "data": texts.opened_data(e.data, open_),
                }
                for e in history
            ],
        }
    )
