"""What a page shows beside a case id: its reference, review type, reviewer and senior reviewer (with
their names). Read from the events observed from the notification, allocation and review services,
kept as received, so nothing here needs rebuilding and a late or out-of-order event still counts."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from events.allocation import (
    CaseAwaitingAllocation,
    CaseReviewTypeChanged,
    ReviewerAllocated,
    ReviewerRegistered,
)
from events.notification import CaseEscalatedToFocused, CaseOpened
from events.registry import EventPayload, decode_payload
from events.review import ReviewEscalatedToFocused, ReviewHandedOver, ReviewStarted
from infra.db import Connection

# The observed events that say something about a case's reference, review type or reviewers.
CASE_EVENTS = tuple(
    cls.event_type
    for cls in (
        CaseOpened,
        CaseEscalatedToFocused,
        CaseAwaitingAllocation,
        CaseReviewTypeChanged,
        ReviewerAllocated,
        ReviewStarted,
        ReviewHandedOver,
        ReviewEscalatedToFocused,
    )
)


@dataclass(frozen=True)
class CaseDetails:
    case_id: UUID
    reference: str | None = None
    review_type: str | None = None
    reviewer: str | None = None
    senior_reviewer: str | None = None


def fold(case_id: UUID, facts: Iterable[EventPayload]) -> CaseDetails:
    """Pure: the case's details after its facts (payloads as the registry decodes them), oldest
    first; the latest wins."""
    reference = review_type = reviewer = senior = None
    for payload in facts:
        match payload:
            case CaseEscalatedToFocused() | ReviewEscalatedToFocused():
                review_type = "focused"
            case CaseOpened() as p:
                reference = p.reference or reference
                review_type = p.review_type
            case CaseAwaitingAllocation() | CaseReviewTypeChanged() as p:
                review_type = p.review_type
            case ReviewerAllocated() | ReviewStarted() as p:
                review_type = p.review_type
                reviewer, senior = p.reviewer_user_id, p.senior_reviewer_user_id
            case ReviewHandedOver() as p:
                reviewer, senior = p.reviewer_user_id, p.senior_reviewer_user_id
    return CaseDetails(case_id, reference, review_type, reviewer, senior)


async def details(db: asyncpg.Pool | Connection, case_ids: Sequence[UUID]) -> dict[UUID, CaseDetails]:
    rows = await db.fetch(
        "SELECT case_id, event_type, schema_version, data::text AS data FROM observed_events"
        " WHERE case_id = ANY($1::uuid[]) AND event_type = ANY($2::text[])"
        " ORDER BY case_id, occurred_at",
        list(set(case_ids)),
        list(CASE_EVENTS),
    )
    by_case: dict[UUID, list[EventPayload]] = {c: [] for c in case_ids}
    for row in rows:
        # Read through the registry: upcast from the version it was published in (the consumer
        # checked each was a valid event of a type it knows before keeping it).
        payload = decode_payload(row["event_type"], row["schema_version"], json.loads(row["data"]))
        by_case[row["case_id"]].append(payload)
    return {case_id: fold(case_id, facts) for case_id, facts in by_case.items()}


async def names(db: asyncpg.Pool | Connection, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Reviewers' names by the `sub` of their token, as the allocation service registered them."""
    wanted = {u for u in user_ids if u}
    if not wanted:
        return {}
    # Every registration (one per reviewer, and again when one registers anew), each read as its
    # typed payload: a later version that renames `user_id` or `name` on the wire still names them.
    rows = await db.fetch(
        "SELECT schema_version, data::text AS data FROM observed_events"
        " WHERE event_type = $1 ORDER BY occurred_at",
        ReviewerRegistered.event_type,
    )
    found: dict[str, str] = {}
    for row in rows:
        registered = decode_payload(
            ReviewerRegistered.event_type, row["schema_version"], json.loads(row["data"])
        )
        if isinstance(registered, ReviewerRegistered) and registered.user_id in wanted:
            found[registered.user_id] = registered.name  # the latest registration wins
    return found


async def described(db: asyncpg.Pool | Connection, case_ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    """Per case: case_id, reference, review_type, reviewer and senior_reviewer (subs) with names."""
    found = await details(db, case_ids)
    named = await names(db, [u for d in found.values() for u in (d.reviewer, d.senior_reviewer)])
    return {
        case_id: {
            "case_id": str(case_id),
            "reference": d.reference,
            "review_type": d.review_type,
            "reviewer": d.reviewer,
            "reviewer_name": named.get(d.reviewer) if d.reviewer else None,
            "senior_reviewer": d.senior_reviewer,
            "senior_reviewer_name": named.get(d.senior_reviewer) if d.senior_reviewer else None,
        }
        for case_id, d in found.items()
    }
