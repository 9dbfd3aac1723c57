"""Read models of the allocation service: reviewers with their caseloads, and the queue."""

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from events import Envelope
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseAwaitingAllocation,
    CaseReallocated,
    CaseReturnedToQueue,
    CaseReviewTypeChanged,
    ReviewerAllocated,
    ReviewerConflictRecorded,
    ReviewerDeactivated,
    ReviewerReactivated,
    ReviewerRegistered,
    ReviewerTrainingRecorded,
)
from infra.db import Connection
from infra.projections import Decoded, Row, copy_rows, reads
from services.allocation import texts


class AllocationProjection:
    name = "allocation"
    tables: Sequence[str] = ("reviewers", "allocation_cases")
    event_types = reads(
        ReviewerRegistered, ReviewerTrainingRecorded, ReviewerConflictRecorded, ReviewerDeactivated,
        ReviewerReactivated, CaseAwaitingAllocation, CaseReviewTypeChanged, ReviewerAllocated,
        CaseReturnedToQueue, AllocationRestored, CaseReallocated, AllocationEnded,
    )  # fmt: skip

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        at = envelope.occurred_at
        match event:
            case ReviewerRegistered():
                await conn.execute(
                    "INSERT INTO reviewers (reviewer_id, user_id, name, organisations, senior, capacity)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    event.reviewer_id,
                    event.user_id,
                    event.name,
                    event.organisations,
                    event.senior,
                    event.capacity,
                )
            case ReviewerTrainingRecorded():
                await conn.execute(
                    "UPDATE reviewers SET trained_on = greatest(trained_on, $2) WHERE reviewer_id = $1",
                    event.reviewer_id,
                    event.completed_on,
                )
            case ReviewerConflictRecorded():
                conflict = json.dumps([{"kind": event.kind, "name": event.name}])
                await conn.execute(
                    "UPDATE reviewers SET conflicts = conflicts || $2::jsonb WHERE reviewer_id = $1",
                    event.reviewer_id,
                    conflict,
                )
            case ReviewerDeactivated() | ReviewerReactivated():
                await conn.execute(
                    "UPDATE reviewers SET active = $2 WHERE reviewer_id = $1",
                    event.reviewer_id,
                    isinstance(event, ReviewerReactivated),
                )
            case CaseAwaitingAllocation():
                await conn.execute(
                    "INSERT INTO allocation_cases (case_id, status, notified_on, deadline, review_type,"
                    " focused_reasons, organisations_involved, waiting_since)"
                    " VALUES ($1, 'waiting', $2, $3, $4, $5, $6, $7)",
                    event.case_id,
                    event.notified_on,
                    event.deadline,
                    event.review_type,
                    event.focused_reasons,
                    event.organisations_involved,
                    at,
                )
            case CaseReviewTypeChanged():
                await conn.execute(
                    "UPDATE allocation_cases SET review_type = $2, focused_reasons = $3 WHERE case_id = $1",
                    event.case_id,
                    event.review_type,
                    event.focused_reasons,
                )
            case ReviewerAllocated():
                await conn.execute(
                    "UPDATE allocation_cases SET status = 'allocated', reviewer_id = $2,"
                    " senior_reviewer_id = $3, returned_at = NULL, returned_reason = NULL, allocated_on = $4"
                    " WHERE case_id = $1",
                    event.case_id,
                    event.reviewer_id,
                    event.senior_reviewer_id,
                    event.allocated_on,
                )
                await conn.execute(
                    "UPDATE reviewers SET active_caseload = active_caseload + 1, last_allocated_on = $2"
                    " WHERE reviewer_id = $1",
                    event.reviewer_id,
                    event.allocated_on,
                )
                await conn.execute(
                    "UPDATE reviewers SET last_supported_on = $2 WHERE reviewer_id = $1",
                    event.senior_reviewer_id,
                    event.allocated_on,
                )
            case CaseReturnedToQueue():
                # A case handed back by its reviewer leaves their caseload; a reopened case whose
                # allocation ended when it closed has left it already.
                was = await conn.fetchval(
                    "SELECT status FROM allocation_cases WHERE case_id = $1 FOR UPDATE", event.case_id
                )
                await conn.execute(
                    "UPDATE allocation_cases SET status = 'waiting', reviewer_id = NULL,"
                    " senior_reviewer_id = NULL, allocated_on = NULL, returned_at = $2, waiting_since = $2,"
                    " returned_reason = $3 WHERE case_id = $1",
                    event.case_id,
                    at,
                    texts.stored(event.reason),  # sealed: the queue opens it for the LAC
                )
                if was == "allocated":
                    await _drop_caseload(conn, event.reviewer_id)
            case AllocationRestored():
                # The same reviewers as before the case closed, on the allocation's first day: it
                # counts in their caseloads again, but is not a new allocation (last_allocated_on).
                await conn.execute(
                    "UPDATE allocation_cases SET status = 'allocated', reviewer_id = $2,"
                    " senior_reviewer_id = $3 WHERE case_id = $1",
                    event.case_id,
                    event.reviewer_id,
                    event.senior_reviewer_id,
                )
                await conn.execute(
                    "UPDATE reviewers SET active_caseload = active_caseload + 1 WHERE reviewer_id = $1",
                    event.reviewer_id,
                )
            case CaseReallocated():
                await _drop_caseload(conn, event.from_reviewer_id)
            case AllocationEnded():
                await conn.execute(
                    "UPDATE allocation_cases SET status = 'ended' WHERE case_id = $1", event.case_id
                )
                if event.reviewer_id is not None:
                    await _drop_caseload(conn, event.reviewer_id)

    def fold(self) -> "AllocationFold":
        return AllocationFold()


class AllocationFold:
    """The same rows as `AllocationProjection.apply`, built in memory for a rebuild
    (infra.projections): each reviewer's row once, however many allocations changed its caseload."""

    def __init__(self) -> None:
        self.reviewers: dict[UUID, Row] = {}
        self.cases: dict[UUID, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for envelope, event in events:
            self._apply(envelope.occurred_at, event)

    async def write(self, conn: Connection) -> None:
        await copy_rows(
            conn,
            "reviewers",
            ({**r, "conflicts": json.dumps(r["conflicts"])} for r in self.reviewers.values()),
        )
        await copy_rows(conn, "allocation_cases", self.cases.values())

    def _reviewer(self, reviewer_id: UUID | None) -> Row:
        """The reviewer's row, or an empty one when there is none (an UPDATE of no row)."""
        return self.reviewers.get(reviewer_id, {}) if reviewer_id is not None else {}

    def _case(self, case_id: UUID) -> Row:
        return self.cases.get(case_id, {})

    def _drop_caseload(self, reviewer_id: UUID | None) -> None:
        reviewer = self._reviewer(reviewer_id)
        if reviewer:
            reviewer["active_caseload"] -= 1

    def _apply(self, at: Any, event: object) -> None:
        # The queue's events first, the reviewers' (a few) last: an event is matched against the
        # cases in order, each miss a check of its class (a rebuild's time, for every event).
        match event:
            case CaseAwaitingAllocation():
                if event.case_id in self.cases:
                    raise ValueError(f"allocation_cases: {event.case_id} queued twice")
                self.cases[event.case_id] = {
                    "case_id": event.case_id,
                    "status": "waiting",
                    "notified_on": event.notified_on,
                    "deadline": event.deadline,
                    "review_type": event.review_type,
                    "focused_reasons": list(event.focused_reasons),
                    "organisations_involved": list(event.organisations_involved),
                    "reviewer_id": None,
                    "senior_reviewer_id": None,
                    "returned_at": None,
                    "waiting_since": at,
                    "allocated_on": None,
                    "returned_reason": None,
                }
            case CaseReviewTypeChanged():
                case = self._case(event.case_id)
                if case:
                    case.update(review_type=event.review_type, focused_reasons=list(event.focused_reasons))
            case ReviewerAllocated():
                case = self._case(event.case_id)
                if case:
                    case.update(
                        status="allocated",
                        reviewer_id=event.reviewer_id,
                        senior_reviewer_id=event.senior_reviewer_id,
                        returned_at=None,
                        returned_reason=None,
                        allocated_on=event.allocated_on,
                    )
                reviewer = self._reviewer(event.reviewer_id)
                if reviewer:
                    reviewer["active_caseload"] += 1
                    reviewer["last_allocated_on"] = event.allocated_on
                senior = self._reviewer(event.senior_reviewer_id)
                if senior:
                    senior["last_supported_on"] = event.allocated_on
            case CaseReturnedToQueue():
                case = self._case(event.case_id)
                was = case.get("status")
                if case:
                    case.update(
                        status="waiting",
                        reviewer_id=None,
                        senior_reviewer_id=None,
                        allocated_on=None,
                        returned_at=at,
                        waiting_since=at,
                        returned_reason=texts.stored(event.reason),
                    )
                if was == "allocated":
                    self._drop_caseload(event.reviewer_id)
            case AllocationRestored():
                case = self._case(event.case_id)
                if case:
                    case.update(
                        status="allocated",
                        reviewer_id=event.reviewer_id,
                        senior_reviewer_id=event.senior_reviewer_id,
                    )
                reviewer = self._reviewer(event.reviewer_id)
                if reviewer:
                    reviewer["active_caseload"] += 1
            case CaseReallocated():
                self._drop_caseload(event.from_reviewer_id)
            case AllocationEnded():
                case = self._case(event.case_id)
                if case:
                    case["status"] = "ended"
                if event.reviewer_id is not None:
                    self._drop_caseload(event.reviewer_id)
            case ReviewerRegistered():
                if event.reviewer_id in self.reviewers:
                    raise ValueError(f"reviewers: {event.reviewer_id} registered twice")
                self.reviewers[event.reviewer_id] = {
                    "reviewer_id": event.reviewer_id,
                    "user_id": event.user_id,
                    "name": event.name,
                    "organisations": list(event.organisations),
                    "senior": event.senior,
                    "capacity": event.capacity,
                    "active": True,
                    "trained_on": None,
                    "conflicts": [],
                    "active_caseload": 0,
                    "last_allocated_on": None,
                    "last_supported_on": None,
                }
            case ReviewerTrainingRecorded():
                reviewer = self._reviewer(event.reviewer_id)
                if reviewer:  # greatest() passes over a NULL
                    trained = reviewer["trained_on"]
                    reviewer["trained_on"] = (
                        event.completed_on if trained is None else max(trained, event.completed_on)
                    )
            case ReviewerConflictRecorded():
                reviewer = self._reviewer(event.reviewer_id)
                if reviewer:
                    reviewer["conflicts"].append({"kind": event.kind, "name": event.name})
            case ReviewerDeactivated() | ReviewerReactivated():
                reviewer = self._reviewer(event.reviewer_id)
                if reviewer:
                    reviewer["active"] = isinstance(event, ReviewerReactivated)


async def _drop_caseload(conn: Connection, reviewer_id: object) -> None:
    await conn.execute(
        "UPDATE reviewers SET active_caseload = active_caseload - 1 WHERE reviewer_id = $1", reviewer_id
    )


async def record_opened_cases(conn: Connection, opened: Sequence[tuple[UUID, str | None, str]]) -> None:
    """What notification.CaseOpened tells the LAC's pages (reference, place of death), for each case
    (case id, reference, place of death), in order. Not a projection of this service's events, so a
    rebuild keeps it (see migration 002). An opened case is no longer one that is not open (migration
    003). In one statement however many cases: a batch's opened cases cost one round trip."""
    # A case opened twice here ends as it would one after the other: the later place of death, and
    # the later reference unless it has none.
    latest: dict[UUID, tuple[str | None, str]] = {}
    for case_id, reference, place_of_death in opened:
        earlier = latest.get(case_id)
        kept = reference if reference is not None or earlier is None else earlier[0]
        latest[case_id] = (kept, place_of_death)
    await conn.execute(
        "WITH opened AS (DELETE FROM cases_not_open WHERE case_id = any($1::uuid[]))"
        " INSERT INTO opened_cases (case_id, reference, place_of_death)"
        " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])"
        " ON CONFLICT (case_id) DO UPDATE SET place_of_death = EXCLUDED.place_of_death,"
        " reference = coalesce(EXCLUDED.reference, opened_cases.reference)",
        list(latest),
        [reference for reference, _ in latest.values()],
        [place for _, place in latest.values()],
    )


async def record_case_not_open(conn: Connection, case_id: UUID, status: str) -> None:
    """A case the notification service has but has not opened (eligibility_to_confirm, not_eligible),
    so that allocating it is refused naming its state. Kept by a rebuild (see migration 003)."""
    await conn.execute(
        "INSERT INTO cases_not_open (case_id, status) VALUES ($1, $2)"
        " ON CONFLICT (case_id) DO UPDATE SET status = EXCLUDED.status",
        case_id,
        status,
    )


def projections() -> list[AllocationProjection]:
    return [AllocationProjection()]
