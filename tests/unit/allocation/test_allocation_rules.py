"""The allocation rules, each its own test; a refusal names every rule broken."""

from datetime import date
from uuid import uuid4

import pytest

from events.allocation import (
    CaseAwaitingAllocation,
    ReviewerAllocated,
)
from events.calendar import review_deadline
from services.allocation import domain

TODAY = date(2026, 11, 26)
RULE = "employing_organisation"


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
    events = domain.decide_conflict_declaration(c, r, "my sister worked there")
    for event in events:
        c = domain.evolve_case(c, event)  # type: ignore[assignment]
    assert (c.status, c.reviewer_id) == ("waiting", None)
    assert refused(c, r) == ["conflict_of_interest"]


def test_only_the_allocated_reviewer_can_declare_a_conflict_on_a_case() -> None:
    with pytest.raises(domain.NotAllocatedToCaller):
        domain.decide_conflict_declaration(case(), reviewer(), "x")


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
    # Sam ranks first as reviewer, so Sue supports him; then each next reviewer with Sam, then
    # second choices while there is room for five. Sue is full as a reviewer but may still support.
    assert pairs == [("Sam", "Sue"), ("Rae", "Sam"), ("Ria", "Sam"), ("Rae", "Sue"), ("Ria", "Sue")]
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
