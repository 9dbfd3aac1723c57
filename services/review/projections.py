"""The review service's read model: each review's status and clock, for the LAC's deadline reports and
each reviewer's own list. Free text (the panel's comments, why a case was reopened) is kept sealed, as
the events carry it: the read model never holds it in clear."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from events import Envelope
from events.review import (
    LapseInCareRecorded,
    ReviewCompleted,
    ReviewerAccessEnded,
    ReviewerAccessRestored,
    ReviewEscalatedToFocused,
    ReviewHandedOver,
    ReviewPaused,
    ReviewReopened,
    ReviewResumed,
    ReviewReturnedForRework,
    ReviewStarted,
    ReviewSubmittedForQA,
)
from infra.db import Connection
from infra.projections import Decoded, Row, add_missing, copy_rows, reads
from services.review.texts import stored


class ReviewsProjection:
    name = "reviews"
    tables: Sequence[str] = ("reviews",)
    event_types = reads(
        ReviewStarted, ReviewHandedOver, ReviewerAccessRestored, ReviewerAccessEnded,
        ReviewEscalatedToFocused, LapseInCareRecorded, ReviewPaused, ReviewResumed, ReviewSubmittedForQA,
        ReviewReturnedForRework, ReviewCompleted, ReviewReopened,
    )  # fmt: skip

    async def apply(self, conn: Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        at = envelope.occurred_at
        match event:
            case ReviewStarted():
                await conn.execute(
                    "INSERT INTO reviews (case_id, status, review_type, focused_reasons, reviewer_user_id,"
                    " senior_reviewer_user_id, notified_on, deadline, updated_at)"
                    " VALUES ($1, 'in_progress', $2, $3, $4, $5, $6, $7, $8)",
                    event.case_id,
                    event.review_type,
                    event.focused_reasons,
                    event.reviewer_user_id,
                    event.senior_reviewer_user_id,
                    event.notified_on,
                    event.deadline,
                    at,
                )
            case ReviewHandedOver() | ReviewerAccessRestored():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "reviewer_user_id = $3, senior_reviewer_user_id = $4, access_ended = NULL",
                    event.reviewer_user_id,
                    event.senior_reviewer_user_id,
                )
            case ReviewerAccessEnded():
                await self._set(conn, event.case_id, at, "access_ended = $3", event.reason)
            case ReviewEscalatedToFocused():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "review_type = 'focused', focused_reasons = focused_reasons || ARRAY(SELECT r FROM"
                    " unnest($3::text[]) AS r WHERE r <> ALL(focused_reasons))",
                    event.reasons,
                )
            case LapseInCareRecorded():
                await self._set(conn, event.case_id, at, "lapses = lapses + 1")
            case ReviewPaused():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "status = 'paused', paused_since = $3, pause_reason = $4",
                    event.paused_on,
                    event.reason,
                )
            case ReviewResumed():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "status = 'in_progress', paused_days = paused_days"
                    " + ($3::date - paused_since), paused_since = NULL, pause_reason = NULL",
                    event.resumed_on,
                )
            case ReviewSubmittedForQA():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "status = 'submitted', submitted_on = $3, returned_by_qa = false, qa_comments = NULL,"
                    " reopened_reason = NULL",
                    event.submitted_on,
                )
            case ReviewReturnedForRework():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "status = 'in_progress', returned_by_qa = true, qa_comments = $3",
                    stored(event.comments),
                )
            case ReviewCompleted():
                await self._set(
                    conn, event.case_id, at, "status = 'completed', completed_on = $3", event.completed_on
                )
            case ReviewReopened():
                await self._set(
                    conn,
                    event.case_id,
                    at,
                    "status = 'in_progress', completed_on = NULL, reopened_reason = $3",
                    stored(event.reason),
                )

    @staticmethod
    async def _set(conn: Connection, case_id: object, at: object, assignments: str, *args: object) -> None:
        await conn.execute(
            f"UPDATE reviews SET {assignments}, updated_at = $2 WHERE case_id = $1", case_id, at, *args
        )

    def fold(self) -> "ReviewsFold":
        return ReviewsFold()


class ReviewsFold:
    """The same rows as `ReviewsProjection.apply`, built in memory for a rebuild (infra.projections)."""

    def __init__(self) -> None:
        self.reviews: dict[UUID, Row] = {}

    async def add(self, conn: Connection, events: Sequence[Decoded]) -> None:
        for envelope, event in events:
            self._apply(envelope.occurred_at, event)

    async def write(self, conn: Connection) -> None:
        await copy_rows(conn, "reviews", self.reviews.values())

    def _apply(self, at: Any, event: object) -> None:
        if isinstance(event, ReviewStarted):
            if event.case_id in self.reviews:
                raise ValueError(f"reviews: a second ReviewStarted for {event.case_id}")
            self.reviews[event.case_id] = {
                "case_id": event.case_id,
                "status": "in_progress",
                "review_type": event.review_type,
                "focused_reasons": list(event.focused_reasons),
                "reviewer_user_id": event.reviewer_user_id,
                "senior_reviewer_user_id": event.senior_reviewer_user_id,
                "notified_on": event.notified_on,
                "deadline": event.deadline,
                "paused_days": 0,
                "paused_since": None,
                "submitted_on": None,
                "completed_on": None,
                "lapses": 0,
                "updated_at": at,
                "pause_reason": None,
                "returned_by_qa": False,
                "qa_comments": None,
                "reopened_reason": None,
                "access_ended": None,
            }
            return
        row = self.reviews.get(getattr(event, "case_id", None))  # type: ignore[arg-type]
        if row is None:
            return  # an UPDATE of no row
        match event:
            case ReviewHandedOver() | ReviewerAccessRestored():
                row["reviewer_user_id"] = event.reviewer_user_id
                row["senior_reviewer_user_id"] = event.senior_reviewer_user_id
                row["access_ended"] = None
            case ReviewerAccessEnded():
                row["access_ended"] = event.reason
            case ReviewEscalatedToFocused():
                row["review_type"] = "focused"
                row["focused_reasons"] = add_missing(row["focused_reasons"], event.reasons)
            case LapseInCareRecorded():
                row["lapses"] += 1
            case ReviewPaused():
                row.update(status="paused", paused_since=event.paused_on, pause_reason=event.reason)
            case ReviewResumed():
                if row["paused_since"] is None:  # the SQL's paused_days would be NULL: refused
                    raise ValueError(f"reviews: {event.case_id} resumed without a pause")
                row["paused_days"] += (event.resumed_on - row["paused_since"]).days
                row.update(status="in_progress", paused_since=None, pause_reason=None)
            case ReviewSubmittedForQA():
                row.update(
                    status="submitted",
                    submitted_on=event.submitted_on,
                    returned_by_qa=False,
                    qa_comments=None,
                    reopened_reason=None,
                )
            case ReviewReturnedForRework():
                row.update(status="in_progress", returned_by_qa=True, qa_comments=stored(event.comments))
            case ReviewCompleted():
                row.update(status="completed", completed_on=event.completed_on)
            case ReviewReopened():
                row.update(status="in_progress", completed_on=None, reopened_reason=stored(event.reason))
            case _:
                return  # not a review event: no statement, no updated_at
        row["updated_at"] = at


def projections() -> list[ReviewsProjection]:
    return [ReviewsProjection()]
