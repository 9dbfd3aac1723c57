"""The review decisions that moved into the domain (issue 17, item 1): starting or handing over a
review on an allocation, the end and the restoring of an allocation, an escalation heard from the
notification service, the records the API's commands become (with their rules: a professional's role,
a date for records, avoidable mortality, a lapse's escalation), and the consumer's dispatch table."""

from datetime import date
from uuid import UUID, uuid4

import pytest

from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.notification import CaseEscalatedToFocused
from events.review import (
    RecordsReceived,
    RecordsRequested,
    ReviewerAccessEnded,
    ReviewerAccessRestored,
    ReviewEscalatedToFocused,
    ReviewHandedOver,
    ReviewStarted,
)
from events.sealing import Sealed
from infra.sealing import seal, unseal
from services.review import consumers, domain

KEY = bytes(range(32))
CASE = uuid4()


def sealing(text: str) -> Sealed:
    return seal(KEY, "case", text.encode())


def opened(sealed: Sealed) -> str:
    return unseal(KEY, sealed).decode()


def allocated(reviewer: str, senior: str = "senior-1", case_id: UUID = CASE) -> ReviewerAllocated:
    return ReviewerAllocated(
        case_id=case_id,
        reviewer_id=uuid4(),
        reviewer_user_id=reviewer,
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id=senior,
        allocated_on=date(2026, 1, 20),
        notified_on=date(2026, 1, 5),
        deadline=date(2026, 7, 5),
        review_type="focused",
        focused_reasons=["ethnicity"],
    )


def review_of(*events: object) -> domain.Review:
    state: domain.Review | None = None
    for event in events:
        state = domain.evolve(state, event)  # type: ignore[arg-type]
    assert state is not None
    return state


def test_an_allocation_starts_the_review_with_the_allocations_type_and_deadline() -> None:
    [started] = domain.decide_start_or_hand_over(None, allocated("reviewer-1"))
    assert started == ReviewStarted(
        case_id=CASE,
        review_type="focused",
        focused_reasons=["ethnicity"],
        reviewer_user_id="reviewer-1",
        senior_reviewer_user_id="senior-1",
        notified_on=date(2026, 1, 5),
        deadline=date(2026, 7, 5),
    )
    review = review_of(started)
    assert domain.decide_start_or_hand_over(review, allocated("reviewer-1")) == []  # told again
    [handed] = domain.decide_start_or_hand_over(review, allocated("reviewer-2"))
    assert isinstance(handed, ReviewHandedOver) and handed.from_reviewer_user_id == "reviewer-1"


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        (
            ConflictOfInterestDeclared(case_id=CASE, reviewer_id=uuid4(), reason=sealing("x")),
            "conflict_declared",
        ),
        (CaseReturnedToQueue(case_id=CASE, reviewer_id=uuid4(), reason=sealing("x")), "returned_to_queue"),
        (AllocationEnded(case_id=CASE, reviewer_id=uuid4(), reason="case_closed"), "case_closed"),
    ],
)
def test_whatever_ends_the_allocation_ends_the_reviewers_access_saying_why(
    ending: domain.AllocationEnding, reason: str
) -> None:
    review = review_of(*domain.decide_start_or_hand_over(None, allocated("reviewer-1")))
    [ended] = domain.decide_allocation_ended(review, ending)
    assert isinstance(ended, ReviewerAccessEnded) and ended.reason == reason
    assert (
        domain.decide_allocation_ended(
            review_of(*domain.decide_start_or_hand_over(None, allocated("r")), ended), ending
        )
        == []
    )


def test_a_restored_allocation_gives_the_same_pair_the_review_back() -> None:
    started = domain.decide_start_or_hand_over(None, allocated("reviewer-1"))
    ended = domain.decide_allocation_ended(
        review_of(*started), AllocationEnded(case_id=CASE, reviewer_id=uuid4(), reason="case_closed")
    )
    restored = AllocationRestored(
        case_id=CASE,
        reviewer_id=uuid4(),
        reviewer_user_id="reviewer-1",
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="senior-1",
        restored_on=date(2026, 3, 1),
        reason=sealing("reopened"),
    )
    [back] = domain.decide_restoring(review_of(*started, *ended), restored)
    assert isinstance(back, ReviewerAccessRestored) and back.because == "allocation_restored"


def test_an_escalation_heard_records_only_the_reasons_the_review_did_not_have() -> None:
    review = review_of(*domain.decide_start_or_hand_over(None, allocated("reviewer-1")))
    assert domain.decide_focused_escalation(review, ["ethnicity"]) == []
    assert domain.decide_focused_escalation(review, ["ethnicity", "family_request"]) == [
        ReviewEscalatedToFocused(case_id=CASE, reasons=["family_request"])
    ]


def test_a_contact_with_a_professional_names_their_role_and_organisation() -> None:
    with pytest.raises(domain.IncompleteRecord) as refused:
        domain.contact_recorded(CASE, domain.RecordContact("professional", "completed", date(2026, 2, 1)))
    assert (refused.value.status, refused.value.code) == (422, "professional_needs_role_and_organisation")
    named = domain.RecordContact("professional", "completed", date(2026, 2, 1), "GP", "Pembroke Road Surgery")
    assert domain.contact_recorded(CASE, named).organisation == "Pembroke Road Surgery"
    assert (
        domain.contact_recorded(CASE, domain.RecordContact("family", "offered", date(2026, 2, 1))).role
        is None
    )


def test_records_need_a_date_and_are_asked_for_before_they_are_received() -> None:
    with pytest.raises(domain.IncompleteRecord) as refused:
        domain.records_recorded(CASE, domain.RecordRecords("GP"))
    assert refused.value.code == "records_need_a_date"
    both = domain.records_recorded(CASE, domain.RecordRecords("GP", date(2026, 2, 1), date(2026, 2, 9)))
    assert both == [
        RecordsRequested(case_id=CASE, source="GP", requested_on=date(2026, 2, 1)),
        RecordsReceived(case_id=CASE, source="GP", received_on=date(2026, 2, 9)),
    ]


@pytest.mark.parametrize(
    ("age", "preventable", "avoidable"),
    [(74, True, True), (75, True, False), (40, False, False)],
)
def test_a_death_is_avoidable_under_75_from_a_preventable_or_treatable_cause(
    age: int, preventable: bool, avoidable: bool
) -> None:
    recorded = domain.cause_of_death_recorded(
        CASE, domain.RecordCauseOfDeath("sepsis", preventable, age), sealing
    )
    assert (recorded.avoidable, opened(recorded.cause)) == (avoidable, "sepsis")


def test_a_lapse_says_why_it_escalates_in_its_own_sealed_words_cut_to_500_characters() -> None:
    lapse, detail = domain.lapse_recorded(
        CASE, domain.RecordLapse("x" * 600, "ward 3", "Southmead Hospital", "contributed"), sealing
    )
    assert opened(lapse.what) == "x" * 600 and opened(lapse.where) == "ward 3"
    assert opened(detail) == ("lapse in care: " + "x" * 600)[:500]


def test_the_themed_records_carry_the_themes_version_they_were_checked_against() -> None:
    command = domain.RecordThemed("good", ["sepsis"], "2026.1")
    assert domain.good_practice_recorded(CASE, command, sealing).themes_version == "2026.1"
    assert domain.learning_recorded(CASE, command, sealing).themes == ["sepsis"]


def test_every_event_the_consumer_handles_is_in_its_dispatch_table_versions_included() -> None:
    class ReviewerAllocatedLater(ReviewerAllocated):  # a later version's class subclasses the one it replaces
        pass

    later = ReviewerAllocatedLater.model_validate(allocated("r").model_dump())
    assert consumers.handler_for(later) is consumers.HANDLERS[ReviewerAllocated]
    escalated = CaseEscalatedToFocused.model_construct(
        case_id=CASE, reasons=["learning"], source="ethnicity_recorded"
    )
    assert consumers.handler_for(escalated) is consumers.HANDLERS[CaseEscalatedToFocused]
    [started] = domain.decide_start_or_hand_over(None, allocated("r"))
    assert consumers.handler_for(started) is None  # the service's own event: not consumed
