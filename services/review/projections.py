"""The review service's read model: each review's status and clock, for the LAC's deadline reports and
each reviewer's own list. Free text (the panel's comments, why a case was reopened) is kept sealed, as
the events carry it: the read model never holds it in clear."""

from collections.abc import Sequence

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
from services.review.texts import stored


class ReviewsProjection:
    name = "reviews"
    tables: Sequence[str] = ("reviews",)

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


def projections() -> list[ReviewsProjection]:
    return [ReviewsProjection()]
