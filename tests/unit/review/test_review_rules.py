"""The review rules: who writes, the minimum for submission, pauses, escalation and the clock."""

import base64
from datetime import date
from uuid import uuid4

import pytest

from events import EventPayload
from events.review import (
    CareJudged,
    ContactRecorded,
    LapseInCareRecorded,
    NoteAdded,
    PenPortraitWritten,
    RecordsReceived,
    ReviewStarted,
)
from events.sealing import Sealed
from services.review import domain

CASE = uuid4()


def sealed(text: str) -> Sealed:
    """Free text as the domain receives it: sealed by the API before any decision (a stand-in here,
    the same for the same text; what it holds is the sealing's business, not the domain's)."""
    return Sealed(key_id=str(CASE), nonce="", ciphertext=base64.b64encode(text.encode()).decode())


def started(review_type: str = "initial") -> domain.Review:
    review = domain.evolve(
        None,
        ReviewStarted(
            case_id=CASE,
            review_type=review_type,
            focused_reasons=[] if review_type == "initial" else ["family_request"],
            reviewer_user_id="rae",
            senior_reviewer_user_id="sam",
            notified_on=date(2026, 1, 15),
            deadline=date(2026, 7, 15),
        ),
    )  # type: ignore[arg-type]
    assert review is not None
    return review


def apply(review: domain.Review, *events: EventPayload) -> domain.Review:
    for event in events:
        review = domain.evolve(review, event)  # type: ignore[assignment]
    return review


def contact(party: str, status: str = "completed", organisation: str | None = None) -> ContactRecorded:
    return ContactRecorded(
        case_id=CASE,
        party=party,
        status=status,
        on=date(2026, 2, 1),  # type: ignore[arg-type]
        role="nurse" if organisation else None,
        organisation=organisation,
    )


MINIMUM = (
    contact("family", "offered"),
    contact("gp_records"),
    contact("professional", organisation="Sirona"),
    PenPortraitWritten(case_id=CASE, text=sealed("Jo loved music")),
    CareJudged(
        case_id=CASE, phase="last admission", grade=2, scale_version="default-1", rationale=sealed("r")
    ),
)


def test_an_initial_review_with_the_minimum_can_be_submitted() -> None:
    [event] = domain.decide_submission(apply(started(), *MINIMUM), "rae", date(2026, 5, 1))
    assert event.event_type == "review.ReviewSubmittedForQA"


@pytest.mark.parametrize(
    ("left_out", "missing"),
    [
        (0, "family_or_carer_contact"),
        (1, "gp_contact_or_gp_records"),
        (2, "other_professional_contact"),
        (3, "pen_portrait"),
        (4, "quality_of_care_judgement"),
    ],
)
def test_submission_without_each_minimum_is_refused_naming_it(left_out: int, missing: str) -> None:
    review = apply(started(), *(e for i, e in enumerate(MINIMUM) if i != left_out))
    with pytest.raises(domain.ReviewIncomplete) as refused:
        domain.decide_submission(review, "rae", date(2026, 5, 1))
    assert refused.value.missing == [missing]


def test_submission_of_an_empty_review_names_everything_missing() -> None:
    with pytest.raises(domain.ReviewIncomplete) as refused:
        domain.decide_submission(started("focused"), "rae", date(2026, 5, 1))
    assert refused.value.missing == [
        "family_or_carer_contact",
        "gp_contact_or_gp_records",
        "other_professional_contact",
        "pen_portrait",
        "quality_of_care_judgement",
        "multi_agency_contacts",
        "records_from_two_sources",
    ]


def test_family_contact_is_not_needed_when_the_person_did_not_want_their_family_involved() -> None:
    review = apply(started(), contact("family", "not_wanted"), *MINIMUM[1:])
    assert domain.missing_for_submission(review) == []


def test_a_focused_review_needs_multi_agency_contacts_and_records_from_two_sources() -> None:
    review = apply(started("focused"), *MINIMUM)
    assert domain.missing_for_submission(review) == ["multi_agency_contacts", "records_from_two_sources"]
    review = apply(
        review,
        contact("professional", organisation="Southmead Hospital"),
        RecordsReceived(case_id=CASE, source="GP", received_on=date(2026, 2, 2)),
        RecordsReceived(case_id=CASE, source="Hospital", received_on=date(2026, 2, 3)),
    )
    assert domain.missing_for_submission(review) == []


def test_a_lapse_in_care_escalates_an_initial_review_to_focused() -> None:
    lapse = LapseInCareRecorded(
        case_id=CASE,
        what=sealed("sepsis not recognised"),
        where=sealed("ward 4"),
        organisation="Southmead Hospital",
        contribution="contributed",
    )
    events = domain.decide_record(started(), "rae", lapse)
    assert [e.event_type for e in events] == ["review.LapseInCareRecorded", "review.ReviewEscalatedToFocused"]
    review = apply(started(), *events)
    assert (review.review_type, review.focused_reasons) == ("focused", ("lapse_in_care",))
    assert [e.event_type for e in domain.decide_record(review, "rae", lapse)] == [
        "review.LapseInCareRecorded"
    ]


def test_only_the_allocated_reviewer_writes() -> None:
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_record(started(), "ria", NoteAdded(case_id=CASE, text=sealed("x")))
    with pytest.raises(domain.NotTheAllocatedReviewer):
        domain.decide_record(
            started(), "sam", NoteAdded(case_id=CASE, text=sealed("x"))
        )  # the senior reads only


def test_a_paused_review_takes_notes_and_nothing_else() -> None:
    review = apply(
        started(),
        *domain.decide_pause(started(), "rae", "coroners_investigation_or_inquest", date(2026, 3, 1)),
    )
    assert review.status == "paused"
    assert domain.decide_record(review, "rae", NoteAdded(case_id=CASE, text=sealed("inquest set for May")))
    with pytest.raises(domain.ReviewIsPaused):
        domain.decide_record(review, "rae", PenPortraitWritten(case_id=CASE, text=sealed("x")))
    with pytest.raises(domain.ReviewIsPaused):
        domain.decide_submission(apply(review, *MINIMUM), "rae", date(2026, 3, 2))
    resumed = apply(review, *domain.decide_resume(review, "rae", date(2026, 3, 31)))
    assert resumed.status == "in_progress" and resumed.paused_days(date(2026, 6, 1)) == 30


def test_the_deadline_not_counting_paused_time_moves_by_the_days_paused() -> None:
    review = apply(
        started(), *domain.decide_pause(started(), "rae", "police_investigation", date(2026, 3, 1))
    )
    assert review.paused_days(date(2026, 3, 11)) == 10  # an open pause counts up to today
    assert review.deadline_excluding_pauses(date(2026, 3, 11)) == date(2026, 7, 25)


def test_deadline_events_fire_at_four_five_and_after_six_months_once_each() -> None:
    review = started()
    assert domain.decide_deadline_events(review, date(2026, 5, 14)) == []
    four = domain.decide_deadline_events(review, date(2026, 5, 15))
    assert [(e.event_type, getattr(e, "months", None)) for e in four] == [
        ("review.ReviewDeadlineApproaching", 4)
    ]
    review = apply(review, *four)
    assert domain.decide_deadline_events(review, date(2026, 5, 20)) == []
    late = domain.decide_deadline_events(review, date(2026, 7, 16))
    assert [e.event_type for e in late] == ["review.ReviewDeadlineApproaching", "review.ReviewOverdue"]
    assert domain.decide_deadline_events(apply(review, *late), date(2026, 9, 1)) == []


def test_the_qa_panel_returns_or_approves_only_a_submitted_review() -> None:
    review = apply(started(), *MINIMUM)
    with pytest.raises(domain.ReviewNotEditable):
        domain.decide_qa_outcome(review, True, None, date(2026, 6, 1))
    review = apply(review, *domain.decide_submission(review, "rae", date(2026, 5, 1)))
    with pytest.raises(domain.ReviewNotEditable):
        domain.decide_record(review, "rae", PenPortraitWritten(case_id=CASE, text=sealed("y")))
    returned = apply(
        review, *domain.decide_qa_outcome(review, False, sealed("more on the GP"), date(2026, 6, 1))
    )
    assert returned.status == "in_progress"
    resubmitted = apply(returned, *domain.decide_submission(returned, "rae", date(2026, 6, 2)))
    completed = apply(resubmitted, *domain.decide_qa_outcome(resubmitted, True, None, date(2026, 6, 9)))
    assert completed.status == "completed"
    assert domain.decide_deadline_events(completed, date(2026, 12, 1)) == []
