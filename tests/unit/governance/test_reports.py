"""Each KPI computed on a known set of cases, by hand; suppression; emerging themes."""

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from services.allocation.domain import review_deadline
from services.governance import domain, reports
from services.governance.reports import Fact
from tests.support.payloads import complete


def opened(case: UUID, on: date, **facts: Any) -> Fact:
    return Fact(
        "notification.CaseOpened",
        case,
        on,
        complete(
            "notification.CaseOpened",
            {
                "facts": {
                    "age_at_death": 60,
                    "sex": "female",
                    "ethnicity": "A",
                    "learning_disability_level": "mild",
                    "place_of_death": "hospital",
                    **facts,
                }
            },
        ),
    )


def fact(event_type: str, case: UUID | None, on: date, **data: Any) -> Fact:
    return Fact(event_type, case, on, complete(event_type, data, case))


def allocated(case: UUID, on: date, notified: date) -> Fact:
    """The allocation, with the deadline the allocation service gives it (the reports read it there)."""
    return fact("allocation.ReviewerAllocated", case, on, deadline=review_deadline(notified).isoformat())


A, B, C, D, E = (uuid4() for _ in range(5))
FACTS = sorted(
    [
        # A: notified 1 Jan, allocated 11 Jan (10 days), completed 30 Jun: within six months (deadline 1 Jul).
        opened(A, date(2026, 1, 1)),
        allocated(A, date(2026, 1, 11), date(2026, 1, 1)),
        fact("review.ReviewCompleted", A, date(2026, 6, 30)),
        # B: notified 31 Jan (month boundary), allocated 1 Feb (1 day), paused 40 days, completed 20 Aug:
        # late counting pauses (deadline 31 Jul), in time not counting them (31 Jul + 40 days = 9 Sep).
        opened(B, date(2026, 1, 31)),
        allocated(B, date(2026, 2, 1), date(2026, 1, 31)),
        fact("review.ReviewPaused", B, date(2026, 3, 1)),
        fact("review.ReviewResumed", B, date(2026, 4, 10)),
        fact("review.ReviewCompleted", B, date(2026, 8, 20)),
        # C: notified 1 Feb, allocated 31 Mar (58 days), still in progress.
        opened(C, date(2026, 2, 1)),
        allocated(C, date(2026, 3, 31), date(2026, 2, 1)),
        # D: notified 15 Jan, never allocated.
        opened(D, date(2026, 1, 15)),
        # E: a child: no case, but notified.
        fact("notification.ReferredToChildDeathOverviewPanel", None, date(2026, 1, 20)),
    ],
    key=lambda f: f.on,
)


def test_kpis_for_january_count_what_happened_in_january_and_the_state_at_its_end() -> None:
    k = reports.kpis(FACTS, date(2026, 1, 1), date(2026, 1, 31))
    assert (k["notified"], k["eligible"], k["allocated"], k["completed"]) == (4, 3, 1, 0)
    # At 31 January: A allocated (in progress); B and D not yet allocated; C not yet notified.
    assert (k["in_progress"], k["not_yet_allocated"]) == (1, 2)
    assert k["median_days_notification_to_allocation"] == 10


def test_a_case_notified_on_the_last_day_of_a_month_counts_in_that_month() -> None:
    february = reports.kpis(FACTS, date(2026, 2, 1), date(2026, 2, 28))
    assert (february["eligible"], february["allocated"]) == (1, 1)  # C notified; B allocated
    assert february["median_days_notification_to_allocation"] == 1


def test_completed_within_six_months_is_counted_with_and_without_paused_time() -> None:
    k = reports.kpis(FACTS, date(2026, 1, 1), date(2026, 12, 31))
    assert k["completed"] == 2
    assert k["completed_within_six_months"] == 1  # A only
    assert k["completed_within_six_months_excluding_paused_time"] == 2  # B too, once its pause is not counted
    assert (
        k["per_cent_completed_within_six_months"],
        k["per_cent_completed_within_six_months_excluding_paused_time"],
    ) == (50.0, 100.0)
    assert k["median_days_notification_to_completion"] == (180 + 201) / 2
    assert k["median_days_notification_to_allocation"] == 10  # of 10, 1, 58


def test_a_past_period_is_reported_as_it_was_known_then() -> None:
    march = reports.kpis(FACTS, date(2026, 3, 1), date(2026, 3, 31))
    assert (march["completed"], march["in_progress"], march["not_yet_allocated"]) == (0, 3, 1)


def test_groups_smaller_than_five_are_suppressed_in_every_grouped_output() -> None:
    cases = [
        reports.Case(
            uuid4(),
            date(2026, 1, 1),
            {
                "age_at_death": age,
                "sex": sex,
                "ethnicity": "A",
                "learning_disability_level": "mild",
                "place_of_death": "home",
            },
        )
        for age, sex in [(50, "male")] * 6 + [(62, "female")] * 3
    ]
    grouped = reports.grouped(cases)
    assert grouped["sex"] == {"female": "<5", "male": 6}
    assert grouped["age_band"] == {"45-54": 6, "55-64": "<5"}
    assert grouped["ethnicity"] == {"A": 9}
    ages = reports.median_age(cases)
    assert ages["overall"] == 50 and ages["sex"] == {"female": "<5", "male": 50}
    assert reports.suppress(0) == 0 and reports.suppress(4) == "<5" and reports.suppress(5) == 5


def test_a_theme_is_emerging_when_it_outgrows_its_recent_past() -> None:
    def learning(on: date, theme: str) -> list[Fact]:
        case = uuid4()
        return [opened(case, date(2025, 1, 1)), fact("review.LearningRecorded", case, on, themes=[theme])]

    facts = [f for i in range(6) for f in learning(date(2026, 4, 2 + i), "sepsis")]
    facts += [f for i in range(6) for f in learning(date(2026, 4, 2 + i), "constipation")]
    facts += [
        f
        for month in (1, 2, 3)
        for i in range(5)
        for f in learning(date(2026, month, 10 + i), "constipation")
    ]
    facts.sort(key=lambda f: f.on)
    t = reports.themes(facts, date(2026, 4, 1), date(2026, 4, 30))
    assert t["learning_themes"] == {"constipation": 6, "sepsis": 6}
    assert t["emerging_themes"] == ["sepsis"]  # constipation was as common in each of the three months before


def test_an_overdue_action_is_flagged_once_and_never_when_completed() -> None:
    action = domain.Action(uuid4(), date(2026, 5, 1))
    assert domain.decide_overdue(action, date(2026, 5, 1)) == []
    [flag] = domain.decide_overdue(action, date(2026, 5, 2))
    flagged = domain.evolve_action(action, flag)
    assert flagged is not None and domain.decide_overdue(flagged, date(2026, 6, 1)) == []
    done = domain.Action(uuid4(), date(2026, 5, 1), completed=True)
    assert domain.decide_overdue(done, date(2026, 6, 1)) == []


def test_a_case_opened_when_its_eligibility_was_confirmed_counts_from_when_the_death_was_notified() -> None:
    # Notified 20 January; the LAC confirmed eligibility (and the case opened) on 10 March; allocated
    # 20 March (59 days after notification), completed 25 July: late, the deadline being 20 July. It
    # was notified in January, not March, though January's report (as known then) has no such case.
    late = uuid4()
    facts = [
        Fact(
            "notification.CaseOpened",
            late,
            date(2026, 3, 10),
            {**opened(late, date(2026, 3, 10)).data, "notified_on": "2026-01-20"},
        ),
        allocated(late, date(2026, 3, 20), date(2026, 1, 20)),
        fact("review.ReviewCompleted", late, date(2026, 7, 25)),
    ]
    [case] = reports.cases_as_of(facts, date(2026, 12, 31)).values()
    assert (case.notified_on, case.deadline) == (date(2026, 1, 20), date(2026, 7, 20))
    whole = reports.kpis(facts, date(2026, 1, 1), date(2026, 12, 31))
    assert whole["median_days_notification_to_allocation"] == 59
    assert (whole["completed"], whole["completed_within_six_months"]) == (1, 0)  # due 20 July
    assert reports.kpis(facts, date(2026, 1, 1), date(2026, 1, 31))["eligible"] == 0  # not known yet
    assert reports.kpis(facts, date(2026, 3, 1), date(2026, 3, 31))["eligible"] == 0  # not notified in March
    # A CaseOpened recorded before notified_on existed counts from its own date, as before.
    [old] = reports.cases_as_of([opened(late, date(2026, 3, 10))], date(2026, 12, 31)).values()
    assert old.notified_on == date(2026, 3, 10)
