"""The notification service's rules of access and ownership: access follows the allocation, a
notification belongs to the organisation that sent it, and the same id with other content is refused."""

import json
from dataclasses import replace
from uuid import uuid4

import pytest

from events.notification import (
    CaseAllocationEnded,
    NotificationNotEligible,
    NotificationPersonalDataDestroyed,
)
from events.partner import parse_notification
from services.notification import domain
from tests.support.notifications import notification
from tests.unit.notification.test_decision import SEALED, decide

SOUTHMEAD = "Southmead Hospital"


def opened() -> domain.Case:
    [event] = decide(notification()).events
    case = domain.evolve(None, event)
    assert case is not None
    return case


def allocated(case: domain.Case, reviewer: str = "rev-1", senior: str | None = "sen-1") -> domain.Case:
    for event in domain.decide_allocation(case, reviewer, senior):
        case = domain.evolve(case, event)  # type: ignore[assignment]
    return case


def test_the_allocated_reviewer_and_senior_may_see_the_person_until_the_allocation_ends() -> None:
    case = allocated(opened())
    for who, role in (("rev-1", "reviewer"), ("sen-1", "senior_reviewer")):
        assert domain.decide_view(case, who, role, "the review")
    [ended] = domain.decide_allocation_end(case, "conflict_declared")
    assert ended == CaseAllocationEnded(
        case_id=case.case_id,
        reviewer_user_id="rev-1",
        senior_reviewer_user_id="sen-1",
        reason="conflict_declared",
    )
    after = domain.evolve(case, ended)
    assert after is not None
    for who, role in (("rev-1", "reviewer"), ("sen-1", "senior_reviewer")):
        with pytest.raises(domain.NotAllowedToSeePersonalDetails):
            domain.decide_view(after, who, role, "the review")
    assert domain.decide_view(after, "lac-1", "lac", "checking")  # the LAC sees every case
    # Ended already (the return to the queue that follows a declared conflict): nothing more.
    assert domain.decide_allocation_end(after, "returned_to_queue") == []
    # Back only with a new allocation.
    again = allocated(after, "rev-2", "sen-2")
    assert domain.decide_view(again, "rev-2", "reviewer", "the review")
    with pytest.raises(domain.NotAllowedToSeePersonalDetails):
        domain.decide_view(again, "rev-1", "reviewer", "the review")


def test_a_read_of_a_case_is_recorded_and_refused_to_a_reviewer_not_allocated() -> None:
    case_id = uuid4()
    [read] = domain.decide_read(case_id, "rev-1", "reviewer", frozenset({"rev-1"}))
    assert (read.case_id, read.reader, read.role) == (case_id, "rev-1", "reviewer")  # type: ignore[attr-defined]
    with pytest.raises(domain.NotAllowedToSeePersonalDetails):
        domain.decide_read(case_id, "rev-2", "reviewer", frozenset({"rev-1"}))
    assert domain.reads_stream(case_id) == f"reads-{case_id}"


def test_the_content_hash_is_what_the_notification_says_whatever_its_spelling() -> None:
    body = notification()
    reordered = json.dumps(dict(reversed(list(body.items()))))
    assert domain.content_hash(parse_notification(body)) == domain.content_hash(parse_notification(reordered))
    body["person"]["given_name"] = "Someone"
    assert domain.content_hash(parse_notification(body)) != domain.content_hash(parse_notification(reordered))


def test_a_partner_notifies_in_its_own_name_and_reads_only_its_own_outcomes() -> None:
    sent = parse_notification(notification())
    domain.check_notifier(sent, "partner_system", SOUTHMEAD)
    domain.check_notifier(sent, "lac", "QUY")  # the LAC records a notification made to them
    with pytest.raises(domain.NotYourOrganisation, match="you notify for L81001"):
        domain.check_notifier(sent, "partner_system", "L81001")
    assert domain.may_read_outcome("partner_system", SOUTHMEAD, SOUTHMEAD)
    assert not domain.may_read_outcome("partner_system", "L81001", SOUTHMEAD)
    assert domain.may_read_outcome("lac", "ICB", SOUTHMEAD)


def test_the_same_id_again_is_idempotent_only_with_the_same_content_from_the_same_organisation() -> None:
    body = notification()
    sent = parse_notification(body)
    digest = domain.content_hash(sent)
    domain.decide_resend(sent, digest, SOUTHMEAD, digest)
    domain.decide_resend(sent, digest, SOUTHMEAD, None)  # taken before hashes were kept
    body["person"]["family_name"] = "Other"
    other = parse_notification(body)
    with pytest.raises(domain.NotificationIdConflict, match="other content"):
        domain.decide_resend(other, domain.content_hash(other), SOUTHMEAD, digest)
    body["notifier"]["organisation"] = "Brunswick Care Ltd"
    theirs = parse_notification(body)
    with pytest.raises(domain.NotificationIdConflict, match="is taken") as refused:
        domain.decide_resend(theirs, domain.content_hash(theirs), SOUTHMEAD, digest)
    assert SOUTHMEAD not in refused.value.detail


def test_a_notification_that_opened_no_case_is_destroyed_once_under_its_own_key() -> None:
    nid = uuid4()
    facts = domain.facts_of(parse_notification(notification()))
    intake = NotificationNotEligible(notification_id=nid, reason="neither", facts=facts, personal=SEALED)
    state = domain.evolve_non_case(None, intake)
    assert state == domain.NonCaseNotification(nid, SEALED.key_id)
    [destroyed] = domain.decide_non_case_destruction(state, 90)
    assert destroyed == NotificationPersonalDataDestroyed(
        notification_id=nid, reason="retention_period_ended", retention_days=90
    )
    gone = domain.evolve_non_case(state, destroyed)
    assert gone is not None and domain.decide_non_case_destruction(gone, 90) == []


def test_only_a_case_found_not_eligible_takes_the_short_retention() -> None:
    case = opened()
    assert not domain.non_case_retention_applies(case)
    assert domain.non_case_retention_applies(replace(case, status="not_eligible"))
