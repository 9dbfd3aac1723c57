"""The allocation rules, each its own test; a refusal names every rule broken."""

from dataclasses import replace
from datetime import date
from typing import Any
from uuid import uuid4

import pytest

from events import EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseAwaitingAllocation,
    CaseReturnedToQueue,
    ReviewerAllocated,
)
from events.sealing import Sealed
from infra.sealing import seal, unseal
from services.allocation import domain
from services.allocation.domain import review_deadline

TODAY = date(2026, 11, 26)
RULE = "employing_organisation"
# The domain is given a sealer (the handler's, under the case's key); here one under a test key.
KEY = bytes(range(32))


def sealing(text: str) -> Sealed:
    return seal(KEY, "case", text.encode())


def opened(sealed: Sealed) -> str:
    return unseal(KEY, sealed).decode()


def reviewer(
    name: str = "Rae",
    *,
    senior: bool = False,
    capacity: int = 3,
    active: bool = True,
    trained_on: date | None = date(2026, 6, 1),
    organisations: tuple[str, ...] = ("Sirona Care",),
    conflicts: tuple[tuple[str, str], ...] = (),
) -> domain.Reviewer:
    return domain.Reviewer(
        uuid4(), f"{name.lower()}-sub", name, organisations, senior, capacity, active, trained_on, conflicts
    )


def case(**changes: object) -> domain.CaseAllocation:
    waiting = domain.evolve_case(
        None,
        CaseAwaitingAllocation(
            case_id=uuid4(),
            notified_on=date(2026, 10, 1),
            deadline=date(2027, 4, 1),
            review_type="initial",
            focused_reasons=[],
            organisations_involved=["Southmead Hospital", "Brunswick Care Ltd"],
        ),
    )
    assert waiting is not None
    from dataclasses import replace

    return replace(waiting, **changes)  # type: ignore[arg-type]


SENIOR = reviewer("Sam", senior=True)


def refused(
    c: domain.CaseAllocation,
    r: domain.Reviewer,
    s: domain.Reviewer = SENIOR,
    load: int = 0,
    today: date = TODAY,
) -> list[str]:
    with pytest.raises(domain.AllocationRefused) as refusal:
        domain.decide_allocation(c, r, s, load, today, RULE)
    return [v.code for v in refusal.value.violations]


def test_a_trained_active_unconflicted_reviewer_with_room_is_allocated_with_a_senior() -> None:
    r = reviewer()
    [event] = domain.decide_allocation(case(), r, SENIOR, 2, TODAY, RULE)
    assert isinstance(event, ReviewerAllocated)
    assert (event.reviewer_user_id, event.senior_reviewer_user_id, event.allocated_on) == (
        "rae-sub",
        "sam-sub",
        TODAY,
    )


def test_a_case_not_waiting_is_refused() -> None:
    assert refused(case(status="allocated"), reviewer()) == ["case_not_waiting"]


def test_an_inactive_reviewer_is_refused() -> None:
    assert refused(case(), reviewer(active=False)) == ["reviewer_inactive"]


def test_an_inactive_senior_reviewer_is_refused() -> None:
    assert refused(case(), reviewer(), reviewer("Sue", senior=True, active=False)) == ["reviewer_inactive"]


@pytest.mark.parametrize(
    ("trained_on", "today", "refusal"),
    [
        (date(2025, 11, 26), TODAY, None),  # the first anniversary is the last valid day
        (date(2025, 11, 25), TODAY, "training_expired"),  # older than 12 months
        (None, TODAY, "training_missing"),  # never trained
        (date(2024, 2, 29), date(2025, 2, 28), None),
        (date(2024, 2, 29), date(2025, 3, 1), "training_expired"),
    ],
)
def test_training_older_than_twelve_months_refuses_allocation(
    trained_on: date | None, today: date, refusal: str | None
) -> None:
    r = reviewer(trained_on=trained_on)
    senior = reviewer("Sam", senior=True, trained_on=today)
    if refusal is None:
        assert domain.decide_allocation(case(), r, senior, 0, today, RULE)
    else:
        assert refused(case(), r, senior, today=today) == [refusal]


def test_a_reviewer_employed_by_an_organisation_involved_in_the_care_is_conflicted() -> None:
    assert refused(case(), reviewer(organisations=("SOUTHMEAD  hospital",))) == ["conflict_of_interest"]


def test_the_organisation_rule_can_be_switched_to_standing_conflicts_only() -> None:
    r = reviewer(organisations=("Southmead Hospital",))
    assert domain.decide_allocation(case(), r, SENIOR, 0, TODAY, "standing_only")


def test_a_standing_conflict_with_an_organisation_involved_is_a_conflict() -> None:
    assert refused(case(), reviewer(conflicts=(("organisation", "Brunswick Care Ltd"),))) == [
        "conflict_of_interest"
    ]


def test_a_senior_reviewer_with_a_conflict_is_refused() -> None:
    s = reviewer("Sue", senior=True, organisations=("Southmead Hospital",))
    assert refused(case(), reviewer(), s) == ["conflict_of_interest"]


def test_a_reviewer_who_declared_a_conflict_on_the_case_can_never_have_it_again() -> None:
    r = reviewer()
    assert refused(case(declared_conflicts=frozenset({r.reviewer_id})), r) == ["conflict_of_interest"]


def test_a_reviewer_at_capacity_is_refused() -> None:
    assert refused(case(), reviewer(capacity=3), load=3) == ["at_capacity"]


def test_the_reviewer_cannot_be_their_own_senior() -> None:
    r = reviewer(senior=True)
    assert refused(case(), r, r) == ["same_person"]


def test_the_senior_reviewer_must_be_senior() -> None:
    assert refused(case(), reviewer(), reviewer("Sid")) == ["not_senior"]


def test_a_refusal_names_every_rule_broken_in_order() -> None:
    r = reviewer(active=False, trained_on=None, capacity=1)
    assert refused(case(status="allocated"), r, reviewer("Sid"), load=1) == [
        "case_not_waiting",
        "reviewer_inactive",
        "training_missing",
        "at_capacity",
        "not_senior",
    ]


def test_declaring_a_conflict_returns_the_case_to_the_queue_and_blocks_the_reviewer() -> None:
    r = reviewer()
    c = case()
    for event in domain.decide_allocation(c, r, SENIOR, 0, TODAY, RULE):
        c = domain.evolve_case(c, event)  # type: ignore[assignment]
    events = domain.decide_conflict_declaration(c, r, "my sister worked there", seal=sealing)
    assert [opened(e.reason) for e in events] == [  # type: ignore[attr-defined]
        "my sister worked there",
        "the reviewer declared a conflict of interest",
    ]
    for event in events:
        c = domain.evolve_case(c, event)  # type: ignore[assignment]
    assert (c.status, c.reviewer_id) == ("waiting", None)
    assert refused(c, r) == ["conflict_of_interest"]


def test_only_the_allocated_reviewer_can_declare_a_conflict_on_a_case() -> None:
    with pytest.raises(domain.NotAllocatedToCaller):
        domain.decide_conflict_declaration(case(), reviewer(), "x", seal=sealing)


def test_suggestions_rank_eligible_first_then_lowest_relative_load_then_longest_since_last_allocation() -> (
    None
):
    c = case()
    busy = domain.Suggestion(reviewer("Busy", capacity=4), 2, date(2026, 1, 1), [])
    idle_recent = domain.Suggestion(reviewer("Recent", capacity=4), 1, date(2026, 11, 1), [])
    idle_long_ago = domain.Suggestion(reviewer("LongAgo", capacity=2), 0, date(2026, 3, 1), [])
    idle_never = domain.Suggestion(reviewer("Never", capacity=2), 0, None, [])
    conflicted = domain.Suggestion(
        reviewer("Conflicted"),
        0,
        None,
        domain.exclusions(c, reviewer(organisations=("Southmead Hospital",)), 0, TODAY, RULE),
    )
    ranked = domain.rank([busy, conflicted, idle_recent, idle_long_ago, idle_never])
    assert [s.reviewer.name for s in ranked] == ["Never", "LongAgo", "Recent", "Busy", "Conflicted"]


@pytest.mark.parametrize(
    ("notified", "deadline"),
    [
        (date(2026, 1, 15), date(2026, 7, 15)),
        (date(2026, 8, 31), date(2027, 2, 28)),
        (date(2027, 8, 31), date(2028, 2, 29)),
    ],
)
def test_the_deadline_is_six_months_from_notification(notified: date, deadline: date) -> None:
    assert review_deadline(notified) == deadline


def test_a_senior_reviewer_without_valid_training_is_refused() -> None:
    never = reviewer("Sue", senior=True, trained_on=None)
    lapsed = reviewer("Sol", senior=True, trained_on=date(2025, 1, 1))
    assert refused(case(), reviewer(), never) == ["training_missing"]
    assert refused(case(), reviewer(), lapsed) == ["training_expired"]


def test_what_stops_a_reviewer_taking_any_case_names_them_and_the_rule() -> None:
    r = reviewer("Rae", active=False, trained_on=None, capacity=2)
    assert [(v.code, v.detail) for v in domain.availability(r, 2, TODAY)] == [
        ("reviewer_inactive", "Rae is inactive"),
        ("training_missing", "Rae has no training recorded"),
        ("at_capacity", "Rae has 2 active cases, capacity 2"),
    ]
    assert domain.availability(reviewer(), 0, TODAY) == []
    assert all(code in domain.RULE_NAMES for code in domain.RULES)


def candidate(
    s: domain.Reviewer, supporting: int = 0, last: date | None = None, c: domain.CaseAllocation | None = None
) -> domain.SeniorCandidate:
    return domain.SeniorCandidate(s, supporting, last, domain.senior_exclusions(c or case(), s, TODAY, RULE))


def test_seniors_rank_by_fewest_cases_supported_then_longest_since_they_last_supported() -> None:
    busy = candidate(reviewer("Busy", senior=True), 3, date(2026, 1, 1))
    recent = candidate(reviewer("Recent", senior=True), 1, date(2026, 11, 1))
    long_ago = candidate(reviewer("LongAgo", senior=True), 1, date(2026, 2, 1))
    never = candidate(reviewer("Never", senior=True), 1)
    untrained = candidate(reviewer("Untrained", senior=True, trained_on=None))
    conflicted = candidate(reviewer("Conflicted", senior=True, organisations=("Southmead Hospital",)))
    not_senior = candidate(reviewer("Plain"))
    ranked = domain.rank_seniors([busy, recent, untrained, long_ago, conflicted, never, not_senior])
    assert [c.reviewer.name for c in ranked if not c.excluded_because] == [
        "Never",
        "LongAgo",
        "Recent",
        "Busy",
    ]
    excluded = {c.reviewer.name: [v.code for v in c.excluded_because] for c in ranked if c.excluded_because}
    assert excluded == {
        "Untrained": ["training_missing"],
        "Conflicted": ["conflict_of_interest"],
        "Plain": ["not_senior"],
    }


def test_pairs_take_reviewers_in_rank_order_with_the_best_senior_who_is_not_them() -> None:
    c = case()
    sam = reviewer("Sam", senior=True)
    sue = reviewer("Sue", senior=True)
    rae, ria = reviewer("Rae"), reviewer("Ria")
    reviewers = [
        domain.Suggestion(r, load, None, domain.exclusions(c, r, load, TODAY, RULE))
        for r, load in ((sam, 0), (rae, 1), (ria, 2), (sue, 3))
    ]
    seniors = [candidate(sam, 0), candidate(sue, 2)]
    pairs = [
        (p.reviewer.reviewer.name, p.senior.reviewer.name) for p in domain.suggest_pairs(reviewers, seniors)
    ]
    # The reviewers who are not senior first, each with Sam (who supports fewest), then their second
    # choices; Sam is offered as a reviewer only after them, with Sue. Sue is full as a reviewer but
    # may still support.
    assert pairs == [("Rae", "Sam"), ("Ria", "Sam"), ("Rae", "Sue"), ("Ria", "Sue"), ("Sam", "Sue")]
    assert all(a != b for a, b in pairs)


def test_no_pair_without_an_eligible_reviewer_and_an_eligible_senior_who_is_someone_else() -> None:
    c = case()
    sam = reviewer("Sam", senior=True)
    alone = [domain.Suggestion(sam, 0, None, [])]
    assert domain.suggest_pairs(alone, [candidate(sam)]) == []
    rae = reviewer("Rae", trained_on=None)
    untrained = [domain.Suggestion(rae, 0, None, domain.exclusions(c, rae, 0, TODAY, RULE))]
    assert domain.suggest_pairs(untrained, [candidate(sam)]) == []
    many = [domain.Suggestion(reviewer(f"R{i}"), 0, None, []) for i in range(8)]
    assert len(domain.suggest_pairs(many, [candidate(sam)])) == domain.MAX_PAIRS


def test_training_is_valid_for_the_named_number_of_months_which_the_expiry_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r = reviewer(trained_on=date(2026, 1, 31))
    assert r.training_expires_on() == date(2027, 1, 31)
    monkeypatch.setattr(domain, "TRAINING_VALID_MONTHS", 6)
    assert r.training_expires_on() == date(2026, 7, 31)
    violation = domain.training_violation(r, date(2026, 8, 1))
    assert violation is not None and violation.code == "training_expired"
    assert violation.detail == "Rae's training expired on 2026-07-31"
    monkeypatch.setattr(domain, "TRAINING_VALID_MONTHS", 1)
    assert r.training_expires_on() == date(2026, 2, 28)  # no 31 February: the month's last day
    assert domain.training_expiry(date(2026, 1, 31), 18) == date(2027, 7, 31)


def test_the_organisation_that_notified_the_death_counts_as_involved_in_the_care() -> None:
    from events.notification import CaseFacts

    facts = CaseFacts(
        age_at_death=62,
        sex="male",
        ethnicity="A",
        learning_disability=True,
        learning_disability_level="severe",
        autism=False,
        accommodation_type="residential_care",
        opted_out_of_secondary_use=False,
        date_of_death=date(2026, 9, 1),
        place_of_death="hospital",
        place_of_death_organisation="Southmead Hospital",
        gp_practice_code="L81001",
        organisations_involved=["Brunswick Care Ltd", "southmead hospital"],
        notifier_organisation="Pembroke Road Surgery",
        notifier_role="gp",
        involve_family=True,
    )
    involved = domain.organisations_involved(facts)
    assert involved == ["Brunswick Care Ltd", "southmead hospital", "Pembroke Road Surgery"]
    gp_reviewer = reviewer(organisations=("PEMBROKE ROAD  surgery",))
    assert refused(case(organisations_involved=tuple(involved)), gp_reviewer) == ["conflict_of_interest"]


def test_rank_puts_non_senior_reviewers_before_seniors_whatever_their_caseload() -> None:
    idle_senior = domain.Suggestion(reviewer("Sam", senior=True, capacity=5), 0, None, [])
    busy = domain.Suggestion(reviewer("Busy", capacity=4), 3, date(2026, 11, 1), [])
    idle = domain.Suggestion(reviewer("Idle", capacity=4), 0, None, [])
    ranked = domain.rank([idle_senior, busy, idle])
    assert [s.reviewer.name for s in ranked] == ["Idle", "Busy", "Sam"]


def test_a_senior_supporting_their_support_capacity_cannot_support_another_case() -> None:
    sam = reviewer("Sam", senior=True)
    full = domain.senior_exclusions(case(), sam, TODAY, RULE, supporting=domain.SUPPORT_CAPACITY)
    assert [(v.code, v.detail) for v in full] == [
        (
            "at_capacity",
            f"Sam (senior reviewer) supports {domain.SUPPORT_CAPACITY} cases,"
            f" capacity {domain.SUPPORT_CAPACITY}",
        )
    ]
    assert domain.senior_exclusions(case(), sam, TODAY, RULE, supporting=domain.SUPPORT_CAPACITY - 1) == []
    with pytest.raises(domain.AllocationRefused) as refusal:
        domain.decide_allocation(
            case(), reviewer(), sam, 0, TODAY, RULE, senior_supporting=domain.SUPPORT_CAPACITY
        )
    assert refusal.value.code == "at_capacity"


def test_following_the_first_suggested_pair_for_20_cases_spreads_support_across_the_seniors() -> None:
    """The LAC allocates 20 cases one after another, each to the first pair offered: every case goes
    to a reviewer who is not senior (there is room), and the seniors share the support evenly."""
    plain = [reviewer(f"R{i}", capacity=8) for i in range(5)]
    seniors = [reviewer(f"S{i}", senior=True, capacity=5) for i in range(3)]
    load = {r.reviewer_id: 0 for r in plain + seniors}
    supporting = {s.reviewer_id: 0 for s in seniors}
    last_allocated: dict[object, date] = {}
    last_supported: dict[object, date] = {}
    chosen = []
    for n in range(20):
        day = date(2026, 11, 1 + n)
        c = case()
        offered = [
            domain.Suggestion(
                r,
                load[r.reviewer_id],
                last_allocated.get(r.reviewer_id),
                domain.exclusions(c, r, load[r.reviewer_id], day, RULE),
                supporting=supporting.get(r.reviewer_id, 0),
            )
            for r in plain + seniors
        ]
        candidates = [
            domain.SeniorCandidate(
                s,
                supporting[s.reviewer_id],
                last_supported.get(s.reviewer_id),
                domain.senior_exclusions(c, s, day, RULE, supporting=supporting[s.reviewer_id]),
            )
            for s in seniors
        ]
        first = domain.suggest_pairs(offered, candidates)[0]
        who, senior = first.reviewer.reviewer, first.senior.reviewer
        assert who.reviewer_id != senior.reviewer_id
        load[who.reviewer_id] += 1
        supporting[senior.reviewer_id] += 1
        last_allocated[who.reviewer_id] = last_supported[senior.reviewer_id] = day
        chosen.append(who)
    assert not any(r.senior for r in chosen)
    assert sorted(supporting.values()) == [6, 7, 7]
    assert sorted(load[r.reviewer_id] for r in plain) == [4, 4, 4, 4, 4]


def test_pairs_offer_a_senior_as_reviewer_only_when_no_one_else_is_eligible() -> None:
    sam, sue = reviewer("Sam", senior=True), reviewer("Sue", senior=True)
    rae = reviewer("Rae", trained_on=None)
    c = case()
    offered = [
        domain.Suggestion(r, 0, None, domain.exclusions(c, r, 0, TODAY, RULE)) for r in (sam, sue, rae)
    ]
    pairs = domain.suggest_pairs(offered, [candidate(sam), candidate(sue, 1)])
    assert [(p.reviewer.reviewer.name, p.senior.reviewer.name) for p in pairs] == [
        ("Sam", "Sue"),
        ("Sue", "Sam"),
    ]


# Reopening a closed case (governance.CaseReopened): the allocation it ended is restored if the same
# reviewer and senior reviewer can still take the case, by the rules of an allocation; else the case
# goes back to the front of the queue, saying why.


def ended_case(r: domain.Reviewer, s: domain.Reviewer = SENIOR) -> domain.CaseAllocation:
    [allocated] = domain.decide_allocation(case(), r, s, 0, TODAY, RULE)
    c = domain.evolve_case(case(), allocated)
    assert c is not None
    [ended] = domain.decide_end(c, "case_closed")
    after = domain.evolve_case(c, ended)
    assert after is not None and after.status == "ended"
    return after


def reopened(
    c: domain.CaseAllocation,
    r: domain.Reviewer,
    s: domain.Reviewer = SENIOR,
    load: int = 0,
    supporting: int = 0,
    today: date = TODAY,
) -> list[EventPayload]:
    return list(domain.decide_reopening(c, r, s, load, today, RULE, "new evidence", supporting, seal=sealing))


def test_a_reopened_case_is_restored_to_its_reviewer_and_senior_who_can_still_take_it() -> None:
    r = reviewer()
    c = ended_case(r)
    [restored] = reopened(c, r, load=2, supporting=SUPPORT_FULL - 1)
    assert isinstance(restored, AllocationRestored)
    assert (restored.reviewer_id, restored.senior_reviewer_id) == (r.reviewer_id, SENIOR.reviewer_id)
    assert (restored.reviewer_user_id, restored.senior_reviewer_user_id) == ("rae-sub", "sam-sub")
    assert (restored.restored_on, opened(restored.reason)) == (TODAY, "new evidence")
    after = domain.evolve_case(c, restored)
    assert after is not None
    assert (after.status, after.reviewer_id, after.senior_reviewer_id) == (
        "allocated",
        r.reviewer_id,
        SENIOR.reviewer_id,
    )
    assert reopened(after, r) == []  # told again: already restored


SUPPORT_FULL = domain.SUPPORT_CAPACITY
# How each rule reads in the reason the case went back to the queue.
WORDS = {
    "reviewer_inactive": "is inactive",
    "training_expired": "training expired on 2026-11-01",
    "conflict_of_interest": "involved in the person's care",
    "at_capacity": "capacity",
}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"reviewer": {"active": False}}, "reviewer_inactive"),
        ({"reviewer": {"trained_on": date(2025, 11, 1)}}, "training_expired"),
        ({"reviewer": {"conflicts": (("organisation", "Southmead Hospital"),)}}, "conflict_of_interest"),
        ({"load": 3}, "at_capacity"),
        ({"senior": {"active": False}}, "reviewer_inactive"),
        ({"senior": {"trained_on": date(2025, 11, 1)}}, "training_expired"),
        ({"senior": {"organisations": ("Brunswick Care Ltd",)}}, "conflict_of_interest"),
        ({"supporting": SUPPORT_FULL}, "at_capacity"),
    ],
)
def test_a_reopened_case_goes_back_to_the_queue_if_its_reviewer_or_senior_can_no_longer_take_it(
    change: dict[str, Any], code: str
) -> None:
    r, s = reviewer(), SENIOR
    c = ended_case(r, s)
    r, s = replace(r, **change.get("reviewer", {})), replace(s, **change.get("senior", {}))
    [returned] = reopened(c, r, s, load=change.get("load", 0), supporting=change.get("supporting", 0))
    assert isinstance(returned, CaseReturnedToQueue)
    assert returned.reviewer_id == r.reviewer_id
    reason = opened(returned.reason)
    assert reason.startswith("the case was reopened (new evidence) and cannot go back to Rae and Sam: ")
    assert WORDS[code] in reason, reason
    after = domain.evolve_case(c, returned)
    assert after is not None
    assert (after.status, after.reviewer_id, after.senior_reviewer_id) == ("waiting", None, None)


def test_reopening_a_case_whose_allocation_has_not_ended_changes_nothing() -> None:
    r = reviewer()
    [allocated] = domain.decide_allocation(case(), r, SENIOR, 0, TODAY, RULE)
    c = domain.evolve_case(case(), allocated)
    assert c is not None
    assert reopened(c, r) == []
    assert reopened(case(), r) == []


def test_once_reopened_only_the_case_closing_again_ends_the_allocation() -> None:
    # The QA panel's approval both completes the review (review topic) and closes the case
    # (governance topic); the completion may reach this service after the reopening that followed.
    r = reviewer()
    [restored] = reopened(ended_case(r), r)
    c = domain.evolve_case(ended_case(r), restored)
    assert c is not None
    assert domain.decide_end(c, "review_completed") == []  # the completion before the reopening
    [ended] = domain.decide_end(c, "case_closed")  # approved again: the case closes again
    assert isinstance(ended, AllocationEnded) and ended.reviewer_id == r.reviewer_id
    # Queued again instead, then allocated afresh: the same.
    [returned] = reopened(ended_case(r), replace(r, active=False))
    queued = domain.evolve_case(ended_case(r), returned)
    assert queued is not None and queued.reopened
    [allocated] = domain.decide_allocation(queued, reviewer("Tia"), SENIOR, 0, TODAY, RULE)
    again = domain.evolve_case(queued, allocated)
    assert again is not None and domain.decide_end(again, "review_completed") == []
    # A case never reopened ends on either, whichever comes first.
    [first] = domain.decide_allocation(case(), r, SENIOR, 0, TODAY, RULE)
    fresh = domain.evolve_case(case(), first)
    assert fresh is not None and len(domain.decide_end(fresh, "review_completed")) == 1


def test_the_end_of_a_cases_retention_is_recorded_once() -> None:
    c = case()
    [destroyed] = domain.decide_personal_data_destruction(c)
    assert (destroyed.case_id, destroyed.reason) == (c.case_id, "retention_period_ended")  # type: ignore[attr-defined]
    after = domain.evolve_case(c, destroyed)
    assert after is not None and after.personal_data_destroyed
    assert domain.decide_personal_data_destruction(after) == []
