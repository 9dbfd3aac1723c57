"""Dates that cannot be true are refused naming the field and the rule; a reopened case returns its
completed review to the reviewer; the LAC cannot escalate a review the panel has approved."""

from datetime import date
from uuid import uuid4

import pytest

from events import EventPayload
from events.review import (
    CareJudged,
    ContactRecorded,
    FamilyInvolvementRecorded,
    NoteAdded,
    PenPortraitWritten,
    RecordsReceived,
    RecordsRequested,
    ReviewStarted,
    SafeguardingReferralMade,
)
from services.review import domain
from tests.unit.review.test_review_rules import sealed

CASE = uuid4()
TODAY = date(2026, 3, 1)


def started() -> domain.Review:
    review = domain.evolve(
        None,
        ReviewStarted(
            case_id=CASE,
            review_type="initial",
            focused_reasons=[],
            reviewer_user_id="rae",
            senior_reviewer_user_id="sam",
            notified_on=date(2026, 1, 15),
            deadline=date(2026, 7, 15),
        ),
    )
    assert review is not None
    return review


def apply(review: domain.Review, *events: EventPayload) -> domain.Review:
    for event in events:
        review = domain.evolve(review, event)  # type: ignore[assignment]
    return review


def contact(party: str, on: date = date(2026, 2, 1)) -> ContactRecorded:
    organisation = "Sirona" if party == "professional" else None
    return ContactRecorded(
        case_id=CASE,
        party=party,  # type: ignore[arg-type]
        status="completed",
        on=on,
        role="nurse" if organisation else None,
        organisation=organisation,
    )


MINIMUM = (
    contact("family"),
    contact("gp_records"),
    contact("professional"),
    PenPortraitWritten(case_id=CASE, text=sealed("Jo loved music")),
    CareJudged(
        case_id=CASE, phase="last admission", grade=2, scale_version="default-1", rationale=sealed("r")
    ),
)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (contact("gp", on=date(2026, 3, 2)), "on"),
        (RecordsReceived(case_id=CASE, source="GP", received_on=date(2026, 3, 2)), "received_on"),
        (RecordsRequested(case_id=CASE, source="GP", requested_on=date(2026, 3, 2)), "requested_on"),
        (
            FamilyInvolvementRecorded(case_id=CASE, step="invited_to_comment", on=date(2026, 3, 2)),
            "on",
        ),
        (
            SafeguardingReferralMade(
                case_id=CASE, to=sealed("Bristol"), on=date(2026, 3, 2), why=sealed("w")
            ),
            "on",
        ),
    ],
)
def test_a_date_in_the_future_is_refused_naming_the_field(payload: EventPayload, field: str) -> None:
    with pytest.raises(domain.ImpossibleDate) as refused:
        domain.decide_record(started(), "rae", payload, TODAY)
    assert (refused.value.status, refused.value.code, refused.value.field) == (422, "date_in_future", field)
    assert domain.decide_record(started(), "rae", payload.model_copy(update={field: TODAY}), TODAY)


def test_records_received_before_they_were_requested_are_refused() -> None:
    asked = apply(started(), RecordsRequested(case_id=CASE, source="GP", requested_on=date(2026, 2, 10)))
    early = RecordsReceived(case_id=CASE, source="gp", received_on=date(2026, 2, 9))
    with pytest.raises(domain.ImpossibleDate) as refused:
        domain.decide_record(asked, "rae", early, TODAY)
    assert (refused.value.code, refused.value.field) == ("received_before_requested", "received_on")
    other_source = RecordsReceived(case_id=CASE, source="Hospital", received_on=date(2026, 2, 9))
    assert domain.decide_record(asked, "rae", other_source, TODAY)
    on_the_day = RecordsReceived(case_id=CASE, source="GP", received_on=date(2026, 2, 10))
    assert domain.decide_record(asked, "rae", on_the_day, TODAY)


def completed() -> domain.Review:
    review = apply(started(), *MINIMUM)
    review = apply(review, *domain.decide_submission(review, "rae", date(2026, 5, 1)))
    return apply(review, *domain.decide_qa_outcome(review, True, None, date(2026, 5, 9)))


def test_a_reopened_case_returns_the_completed_review_to_the_reviewer_who_writes_and_resubmits() -> None:
    review = completed()
    assert review.status == "completed"
    [reopened] = domain.decide_reopen(review, sealed("the coroner's findings arrived"), date(2026, 6, 1))
    assert reopened.event_type == "review.ReviewReopened"
    review = apply(review, reopened)
    assert (review.status, review.reopened_reason) == (
        "in_progress",
        sealed("the coroner's findings arrived"),
    )
    assert domain.decide_record(review, "rae", PenPortraitWritten(case_id=CASE, text=sealed("more")), TODAY)
    [submitted] = domain.decide_submission(review, "rae", date(2026, 6, 2))
    assert submitted.event_type == "review.ReviewSubmittedForQA"
    again = apply(review, submitted)
    assert (again.status, again.submissions) == ("submitted", 2)


def test_reopening_a_review_that_is_not_completed_changes_nothing() -> None:
    assert domain.decide_reopen(started(), sealed("why"), date(2026, 6, 1)) == []
    reopened = apply(completed(), *domain.decide_reopen(completed(), sealed("why"), date(2026, 6, 1)))
    assert domain.decide_reopen(reopened, sealed("why"), date(2026, 6, 1)) == []  # a redelivery


def test_the_lac_cannot_escalate_a_completed_review() -> None:
    with pytest.raises(domain.ReviewIsCompleted):
        domain.decide_escalation_for_learning(completed(), "lac-1", "lac", sealed("new learning"))
    assert domain.decide_escalation_for_learning(started(), "lac-1", "lac", sealed("new learning"))


def test_notes_only_on_a_submitted_review_and_nothing_on_a_completed_one_as_documented() -> None:
    doc = " ".join((domain.authorise_write.__doc__ or "").split())
    assert "submitted review takes notes only" in doc and "completed review takes nothing" in doc
    with pytest.raises(domain.ReviewIsCompleted):
        domain.decide_record(completed(), "rae", NoteAdded(case_id=CASE, text=sealed("late")), TODAY)
