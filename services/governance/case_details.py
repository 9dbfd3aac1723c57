"""What a page shows beside a case id: its reference, review type, reviewer and senior reviewer (with
their names). Read from the events observed from the notification, allocation and review services,
kept as received, so nothing here needs rebuilding and a late or out-of-order event still counts."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from infra.db import Connection

# The observed events that say something about a case's reference, review type or reviewers.
CASE_EVENTS = (
    "notification.CaseOpened",
    "notification.CaseEscalatedToFocused",
    "allocation.CaseAwaitingAllocation",
    "allocation.CaseReviewTypeChanged",
    "allocation.ReviewerAllocated",
    "review.ReviewStarted",
    "review.ReviewHandedOver",
    "review.ReviewEscalatedToFocused",
)


@dataclass(frozen=True)
class CaseDetails:
    case_id: UUID
    reference: str | None = None
    review_type: str | None = None
    reviewer: str | None = None
    senior_reviewer: str | None = None


def fold(case_id: UUID, facts: Iterable[tuple[str, dict[str, Any]]]) -> CaseDetails:
    """Pure: the case's details after its facts (event type, data), oldest first; the latest wins."""
    reference = review_type = reviewer = senior = None
    for event_type, data in facts:
        if event_type == "notification.CaseOpened":
            reference = data.get("reference") or reference
        if event_type in ("notification.CaseEscalatedToFocused", "review.ReviewEscalatedToFocused"):
            review_type = "focused"
        elif "review_type" in data:
            review_type = data["review_type"]
        if "reviewer_user_id" in data:
            reviewer = data["reviewer_user_id"]
        if "senior_reviewer_user_id" in data:
            senior = data["senior_reviewer_user_id"]
    return CaseDetails(case_id, reference, review_type, reviewer, senior)


async def details(db: asyncpg.Pool | Connection, case_ids: Sequence[UUID]) -> dict[UUID, CaseDetails]:
    rows = await db.fetch(
        "SELECT case_id, event_type, data::text AS data FROM observed_events"
        " WHERE case_id = ANY($1::uuid[]) AND event_type = ANY($2::text[])"
        " ORDER BY case_id, occurred_at",
        list(set(case_ids)),
        list(CASE_EVENTS),
    )
    by_case: dict[UUID, list[tuple[str, dict[str, Any]]]] = {c: [] for c in case_ids}
    for row in rows:
        by_case[row["case_id"]].append((row["event_type"], json.loads(row["data"])))
    return {case_id: fold(case_id, facts) for case_id, facts in by_case.items()}


async def names(db: asyncpg.Pool | Connection, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Reviewers' names by the `sub` of their token, as the allocation service registered them."""
    wanted = sorted({u for u in user_ids if u})
    if not wanted:
        return {}
    rows = await db.fetch(
        "SELECT data->>'user_id' AS user_id, data->>'name' AS name FROM observed_events"
        " WHERE event_type = 'allocation.ReviewerRegistered' AND data->>'user_id' = ANY($1::text[])"
        " ORDER BY occurred_at",
        wanted,
    )
    return {r["user_id"]: r["name"] for r in rows}


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
