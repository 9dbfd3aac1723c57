"""What reports may publish: small numbers suppressed in every figure (counts from 1 to 4, and every
percentage or median of fewer than 5 cases), emerging themes only against real history, and monthly
series that stop at the period's end."""

from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

from services.allocation.domain import review_deadline
from services.governance import reports
from services.governance.reports import SUPPRESSED, Fact
from tests.support.payloads import complete


def opened(case: UUID, on: date) -> Fact:
    data = complete("notification.CaseOpened", {"facts": {"age_at_death": 60, "ethnicity": "A"}})
    return Fact("notification.CaseOpened", case, on, data)


def one_case_completed_in(month: date) -> list[Fact]:
    case = uuid4()
    return [
        opened(case, month),
        Fact(
            "allocation.ReviewerAllocated",
            case,
            month + timedelta(days=2),
            complete("allocation.ReviewerAllocated", {"deadline": review_deadline(month).isoformat()}),
        ),
        Fact("review.ReviewCompleted", case, month + timedelta(days=20), complete("review.ReviewCompleted")),
    ]


def test_a_month_of_one_case_publishes_no_exact_count_percentage_or_median() -> None:
    facts = one_case_completed_in(date(2026, 3, 1))
    published = reports.publishable(reports.kpis(facts, date(2026, 3, 1), date(2026, 3, 31)))
    for key in ("notified", "eligible", "allocated", "completed", "completed_within_six_months"):
        assert published[key] == SUPPRESSED, key
    for key in (
        "per_cent_completed_within_six_months",
        "per_cent_completed_within_six_months_excluding_paused_time",
        "median_days_notification_to_allocation",
        "median_days_notification_to_completion",
    ):
        assert published[key] == SUPPRESSED, key
    assert published["in_progress"] == 0 and published["not_yet_allocated"] == 0  # nothing to hide in 0
    assert published["period"] == {"from": "2026-03-01", "to": "2026-03-31"}


def test_five_cases_are_published_exactly() -> None:
    facts = sorted((f for _ in range(5) for f in one_case_completed_in(date(2026, 3, 1))), key=lambda f: f.on)
    published = reports.publishable(reports.kpis(facts, date(2026, 3, 1), date(2026, 3, 31)))
    assert (published["completed"], published["per_cent_completed_within_six_months"]) == (5, 100.0)
    assert published["median_days_notification_to_completion"] == 20


def test_every_month_of_a_series_and_the_backlog_are_suppressed_too() -> None:
    facts = one_case_completed_in(date(2026, 3, 1))
    [march] = reports.monthly_series(facts, date(2026, 3, 1), date(2026, 3, 31))
    assert (march["notified"], march["completed"], march["per_cent_completed_within_six_months"]) == (
        SUPPRESSED,
        SUPPRESSED,
        SUPPRESSED,
    )
    backlog = reports.backlog_by_age([opened(uuid4(), date(2026, 3, 1))], date(2026, 3, 31))
    assert backlog == {"0-3 months": SUPPRESSED, "3-6 months": 0, "6-12 months": 0, "over 12 months": 0}


def test_a_monthly_series_never_charts_months_after_the_period_or_today() -> None:
    facts = one_case_completed_in(date(2026, 1, 5))
    months = [m["month"] for m in reports.monthly_series(facts, date(2026, 1, 1), date(2026, 12, 31))]
    assert months[0] == "2026-01" and months[-1] == "2026-12" and len(months) == 12
    until_today = reports.monthly_series(facts, date(2026, 1, 1), date(2026, 12, 31), today=date(2026, 4, 9))
    assert [m["month"] for m in until_today] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    assert reports.monthly_series(facts, date(2027, 1, 1), date(2027, 12, 31), today=date(2026, 4, 9)) == []


def _learning(on: date, theme: str, notified: date) -> list[Fact]:
    case = uuid4()
    return [
        opened(case, notified),
        Fact("review.LearningRecorded", case, on, complete("review.LearningRecorded", {"themes": [theme]})),
    ]


def test_no_theme_is_emerging_when_there_is_no_earlier_period_to_compare_with() -> None:
    # Eighteen months of records, reported as one period: nothing came before it.
    facts = sorted(
        (
            f
            for month in range(1, 13)
            for theme in ("sepsis", "constipation")
            for f in _learning(date(2026, month, 10), theme, date(2026, 1, 2))
        ),
        key=lambda f: f.on,
    )
    t = reports.themes(facts, date(2026, 1, 1), date(2026, 12, 31))
    assert t["learning_themes"] == {"constipation": 12, "sepsis": 12}
    assert t["emerging_themes"] == []
    assert t["emerging_compared_with_periods"] == 0
    assert t["emerging_note"].startswith("Not enough history to say")


def test_emerging_themes_are_judged_against_the_periods_the_records_cover() -> None:
    # Records begin in March: April can be compared with March only.
    facts = [f for i in range(6) for f in _learning(date(2026, 4, 2 + i), "sepsis", date(2026, 3, 1))]
    facts += [f for i in range(6) for f in _learning(date(2026, 3, 5 + i), "constipation", date(2026, 3, 1))]
    facts += [f for i in range(6) for f in _learning(date(2026, 4, 2 + i), "constipation", date(2026, 3, 1))]
    facts.sort(key=lambda f: f.on)
    t: dict[str, Any] = reports.themes(facts, date(2026, 4, 1), date(2026, 4, 30))
    assert t["emerging_themes"] == ["sepsis"]
    assert t["emerging_compared_with_periods"] == 1
    assert "1 period" in t["emerging_note"]
