"""Reports computed from events only, for any past period: what the system knew at the period's end.

Pure functions over `Fact`s (the events the governance service observed or recorded), so each figure
can be checked by hand. Small numbers identify people: what a report publishes (`publishable`, every
monthly figure, the backlog, every grouped output) shows each count from 1 to SMALL_NUMBER - 1, and
each percentage or median of fewer than SMALL_NUMBER cases, as SUPPRESSED."""

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property
from typing import Any, TypeVar
from uuid import UUID

from events.allocation import CaseAwaitingAllocation, ReviewerAllocated
from events.calendar import add_months
from events.governance import CaseClosed, CaseReopened
from events.notification import CaseOpened, EligibilityToConfirm
from events.registry import EventPayload, decode_payload
from events.review import (
    CauseOfDeathRecorded,
    GoodPracticeRecorded,
    LapseInCareRecorded,
    LearningRecorded,
    RecommendationRecorded,
    ReviewCompleted,
    ReviewPaused,
    ReviewResumed,
)

P = TypeVar("P", bound=EventPayload)
SMALL_NUMBER = 5
SUPPRESSED = "<5"
NOTIFICATION_OUTCOMES = {
    "notification.EligibilityToConfirm",
    "notification.ReferredToChildDeathOverviewPanel",
    "notification.NotificationNotEligible",
    "notification.DuplicateNotificationLinked",
}


@dataclass(frozen=True)
class Fact:
    """An event as the governance service keeps it: `data` as it was published, in `schema_version`."""

    event_type: str
    case_id: UUID | None
    on: date
    data: dict[str, Any]
    schema_version: int = 1

    @cached_property
    def payload(self) -> EventPayload:
        """The data decoded through the event registry, upcast to the version this code knows: what
        the reports read, never the raw data of whichever version was published. Decoded once (a
        report computes many periods from the same facts)."""
        return decode_payload(self.event_type, self.schema_version, self.data)

    @cached_property
    def case_facts(self) -> dict[str, Any]:
        """What the case's CaseOpened or EligibilityToConfirm says of the person, as JSON carries it
        (the groups of `grouped` and `median_age` read it): made once, for every period computed."""
        payload = self.payload
        if not isinstance(payload, CaseOpened | EligibilityToConfirm):
            raise TypeError(f"{self.event_type} says nothing of the person")
        return payload.facts.model_dump(mode="json")

    def read(self, cls: type[P]) -> P:
        """The payload, of the class the fact's event type is registered with (or a later version)."""
        payload = self.payload
        if not isinstance(payload, cls):
            raise TypeError(f"{self.event_type} is read as {type(payload).__name__}, not {cls.__name__}")
        return payload


@dataclass
class Case:
    case_id: UUID
    notified_on: date | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    # The review's six-month deadline: allocation's rule, read from the events that carry it (the case
    # queued for allocation, or allocated), never computed here.
    deadline: date | None = None
    allocated_on: date | None = None
    completed_on: date | None = None
    closed_on: date | None = None
    pauses: list[tuple[date, date | None]] = field(default_factory=list)
    lapses: list[date] = field(default_factory=list)
    learning: list[tuple[date, str]] = field(default_factory=list)
    good_practice: list[tuple[date, str]] = field(default_factory=list)
    recommendations: list[date] = field(default_factory=list)
    avoidable: bool | None = None

    def paused_days(self, until: date) -> int:
        return sum(
            ((min(end, until) if end else until) - start).days for start, end in self.pauses if start <= until
        )


def cases_as_of(facts: Iterable[Fact], as_of: date) -> dict[UUID, Case]:
    cases: dict[UUID, Case] = {}
    for fact in facts:
        if fact.on > as_of or fact.case_id is None:
            continue
        case = cases.setdefault(fact.case_id, Case(fact.case_id))
        apply = APPLY.get(fact.event_type)
        if apply is not None:
            apply(case, fact)
    return {k: v for k, v in cases.items() if v.notified_on is not None}


# What each event does to a case, by the type its payload class is registered under. A handler that
# reads the event's fields reads them from the typed payload (`Fact.read`: decoded through the
# registry, upcast from the version it was published in); one that needs only that and when it
# happened does not decode it at all.
def _opened(case: Case, fact: Fact) -> None:
    opened = fact.read(CaseOpened)
    # The clock starts when the death was notified: for a case opened when the LAC confirmed its
    # eligibility, before the event (events from before notified_on: its date).
    case.notified_on = case.notified_on or opened.notified_on or fact.on
    case.facts = fact.case_facts


def _eligibility_to_confirm(case: Case, fact: Fact) -> None:
    case.facts = fact.case_facts


def _awaiting_allocation(case: Case, fact: Fact) -> None:
    case.deadline = case.deadline or fact.read(CaseAwaitingAllocation).deadline


def _allocated(case: Case, fact: Fact) -> None:
    case.allocated_on = case.allocated_on or fact.on
    case.deadline = case.deadline or fact.read(ReviewerAllocated).deadline


def _paused(case: Case, fact: Fact) -> None:
    case.pauses.append((fact.on, None))


def _resumed(case: Case, fact: Fact) -> None:
    if case.pauses:
        case.pauses[-1] = (case.pauses[-1][0], fact.on)


def _learning(case: Case, fact: Fact) -> None:
    case.learning += [(fact.on, t) for t in fact.read(LearningRecorded).themes]


def _good_practice(case: Case, fact: Fact) -> None:
    case.good_practice += [(fact.on, t) for t in fact.read(GoodPracticeRecorded).themes]


def _cause_of_death(case: Case, fact: Fact) -> None:
    case.avoidable = fact.read(CauseOfDeathRecorded).avoidable


def _completed(case: Case, fact: Fact) -> None:
    case.completed_on = fact.on


def _closed(case: Case, fact: Fact) -> None:
    case.closed_on = fact.on


def _reopened(case: Case, fact: Fact) -> None:
    case.closed_on = None


APPLY: dict[str, Callable[[Case, Fact], None]] = {
    CaseOpened.event_type: _opened,
    EligibilityToConfirm.event_type: _eligibility_to_confirm,
    CaseAwaitingAllocation.event_type: _awaiting_allocation,
    ReviewerAllocated.event_type: _allocated,
    ReviewPaused.event_type: _paused,
    ReviewResumed.event_type: _resumed,
    LapseInCareRecorded.event_type: lambda case, fact: case.lapses.append(fact.on),
    LearningRecorded.event_type: _learning,
    GoodPracticeRecorded.event_type: _good_practice,
    RecommendationRecorded.event_type: lambda case, fact: case.recommendations.append(fact.on),
    CauseOfDeathRecorded.event_type: _cause_of_death,
    ReviewCompleted.event_type: _completed,
    CaseClosed.event_type: _closed,
    CaseReopened.event_type: _reopened,
}


def _median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def kpis(facts: list[Fact], start: date, end: date) -> dict[str, Any]:
    """NHS England's monthly figures (for any period): counts in the period and the state at its end."""
    cases = cases_as_of(facts, end)
    in_period = [c for c in cases.values() if c.notified_on and start <= c.notified_on <= end]
    others = [f for f in facts if f.event_type in NOTIFICATION_OUTCOMES and start <= f.on <= end]
    allocated = [c for c in cases.values() if c.allocated_on and start <= c.allocated_on <= end]
    completed = [c for c in cases.values() if c.completed_on and start <= c.completed_on <= end]
    within = [c for c in completed if c.completed_on and c.deadline and c.completed_on <= c.deadline]
    within_excl = [
        c
        for c in completed
        if c.completed_on
        and c.deadline
        and c.completed_on <= c.deadline + timedelta(days=c.paused_days(c.completed_on))
    ]
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "notified": len(in_period)
        + len([f for f in others if f.event_type != "notification.EligibilityToConfirm"]),
        "eligible": len(in_period),
        "allocated": len(allocated),
        "in_progress": len([c for c in cases.values() if c.allocated_on and not c.completed_on]),
        "completed": len(completed),
        "not_yet_allocated": len([c for c in cases.values() if not c.allocated_on and not c.closed_on]),
        "completed_within_six_months": len(within),
        "completed_within_six_months_excluding_paused_time": len(within_excl),
        "per_cent_completed_within_six_months": _per_cent(len(within), len(completed)),
        "per_cent_completed_within_six_months_excluding_paused_time": _per_cent(
            len(within_excl), len(completed)
        ),
        "median_days_notification_to_allocation": _median(
            [(c.allocated_on - c.notified_on).days for c in allocated if c.allocated_on and c.notified_on]
        ),
        "median_days_notification_to_completion": _median(
            [(c.completed_on - c.notified_on).days for c in completed if c.completed_on and c.notified_on]
        ),
    }


# The figures of `kpis` that count cases, and each percentage or median with the count it is taken over.
COUNTS = (
    "notified",
    "eligible",
    "allocated",
    "in_progress",
    "completed",
    "not_yet_allocated",
    "completed_within_six_months",
    "completed_within_six_months_excluding_paused_time",
)
OVER = {
    "per_cent_completed_within_six_months": "completed",
    "per_cent_completed_within_six_months_excluding_paused_time": "completed",
    "median_days_notification_to_allocation": "allocated",
    "median_days_notification_to_completion": "completed",
}


def publishable(figures: dict[str, Any]) -> dict[str, Any]:
    """`kpis` as a report may publish them: counts from 1 to 4 shown as SUPPRESSED, and so is every
    percentage and median taken over fewer than SMALL_NUMBER cases (one case's 100% is that case)."""
    out = dict(figures)
    for key in COUNTS:
        if key in figures:
            out[key] = suppress(figures[key])
    for key, over in OVER.items():
        if key in figures and figures[key] is not None and figures[over] < SMALL_NUMBER:
            out[key] = SUPPRESSED
    return out


def _per_cent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def suppress(count: int) -> int | str:
    return SUPPRESSED if 0 < count < SMALL_NUMBER else count


def age_band(age: int) -> str:
    for low, high in ((18, 24), (25, 34), (35, 44), (45, 54), (55, 64), (65, 74), (75, 84)):
        if low <= age <= high:
            return f"{low}-{high}"
    return "85+" if age >= 85 else "under 18"


GROUPS: dict[str, Callable[[dict[str, Any]], object]] = {
    "ethnicity": lambda f: f.get("ethnicity"),
    "age_band": lambda f: age_band(f["age_at_death"]) if "age_at_death" in f else None,
    "sex": lambda f: f.get("sex"),
    "learning_disability_level": lambda f: f.get("learning_disability_level"),
    "place_of_death": lambda f: f.get("place_of_death"),
}


def grouped(cases: Iterable[Case]) -> dict[str, dict[str, int | str]]:
    """Completed reviews by each grouping, with small numbers suppressed."""
    out: dict[str, dict[str, int | str]] = {}
    cases = list(cases)
    for name, key in GROUPS.items():
        counts = Counter(str(key(c.facts)) for c in cases)
        out[name] = {group: suppress(n) for group, n in sorted(counts.items())}
    avoidable = Counter(
        "avoidable" if c.avoidable else "not_avoidable" if c.avoidable is False else "not_recorded"
        for c in cases
    )
    out["avoidable"] = {k: suppress(v) for k, v in sorted(avoidable.items())}
    return out


def median_age(cases: Iterable[Case]) -> dict[str, Any]:
    cases = [c for c in cases if "age_at_death" in c.facts]
    result: dict[str, Any] = {"overall": _median_or_suppressed([c.facts["age_at_death"] for c in cases])}
    for name, key in GROUPS.items():
        if name == "age_band":
            continue
        by: dict[str, list[int]] = defaultdict(list)
        for c in cases:
            by[str(key(c.facts))].append(c.facts["age_at_death"])
        result[name] = {g: _median_or_suppressed(ages) for g, ages in sorted(by.items())}
    return result


def _median_or_suppressed(ages: list[int]) -> float | str | None:
    if not ages:
        return None
    return SUPPRESSED if len(ages) < SMALL_NUMBER else statistics.median(ages)


def themes(facts: list[Fact], start: date, end: date, previous_periods: int = 3) -> dict[str, Any]:
    """Learning themes, lapses, good practice and recommendations in the period. A theme is emerging
    when it appears at least SMALL_NUMBER times in the period and more than one and a half times its
    average over the `previous_periods` periods of the same length before it: only over those the
    records cover (each starting on or after the first fact), and never when they cover none (there
    is nothing to compare with: the report says so)."""
    length = (end - start).days + 1
    cases = cases_as_of(facts, end).values()
    records_begin = min((f.on for f in facts), default=start)

    def count(s: date, e: date) -> Counter[str]:
        return Counter(t for c in cases for on, t in c.learning if s <= on <= e)

    now = count(start, end)
    history = [
        count(start - timedelta(days=length * k), start - timedelta(days=length * (k - 1) + 1))
        for k in range(1, previous_periods + 1)
        if start - timedelta(days=length * k) >= records_begin
    ]
    emerging = (
        sorted(
            t
            for t, n in now.items()
            if n >= SMALL_NUMBER and n > 1.5 * (sum(h[t] for h in history) / len(history))
        )
        if history
        else []
    )
    if history:
        periods = "1 period" if len(history) == 1 else f"{len(history)} periods"
        note = f"Compared with the {periods} of the same length before this one."
    else:
        note = (
            f"Not enough history to say: the records begin on {records_begin.day} {records_begin:%B %Y},"
            " with no earlier period of the same length to compare this one with."
        )
    return {
        "learning_themes": {t: suppress(n) for t, n in sorted(now.items())},
        "good_practice_themes": {
            t: suppress(n)
            for t, n in sorted(
                Counter(t for c in cases for on, t in c.good_practice if start <= on <= end).items()
            )
        },
        "lapses_in_care": suppress(sum(1 for c in cases for on in c.lapses if start <= on <= end)),
        "recommendations": suppress(sum(1 for c in cases for on in c.recommendations if start <= on <= end)),
        "emerging_themes": emerging,
        "emerging_rule": f"at least {SMALL_NUMBER} in the period and more than 1.5 times the average of the "
        f"{previous_periods} periods before it",
        "emerging_compared_with_periods": len(history),
        "emerging_note": note,
    }


def monthly_series(
    facts: list[Fact], start: date, end: date, today: date | None = None
) -> list[dict[str, Any]]:
    """Per month of the period (each cut to the period; none after its end, or after `today`: a month
    to come has no figures): notified, allocated, completed, median days to allocation, per cent
    within six months, as they may be published."""
    series = []
    last = min(end, today) if today else end
    month = date(start.year, start.month, 1)
    while month <= last:
        month_end = add_months(month, 1) - timedelta(days=1)
        k = publishable(kpis(facts, max(month, start), min(month_end, end)))
        series.append(
            {
                "month": month.strftime("%Y-%m"),
                **{
                    key: k[key]
                    for key in (
                        "notified",
                        "allocated",
                        "completed",
                        "median_days_notification_to_allocation",
                        "per_cent_completed_within_six_months",
                        "per_cent_completed_within_six_months_excluding_paused_time",
                    )
                },
            }
        )
        month = add_months(month, 1)
    return series


def backlog_by_age(facts: list[Fact], as_of: date) -> dict[str, int | str]:
    """Open cases (not completed, not closed) by months since notification."""
    buckets: Counter[str] = Counter()
    for case in cases_as_of(facts, as_of).values():
        if case.completed_on or case.closed_on or case.notified_on is None:
            continue
        days = (as_of - case.notified_on).days
        buckets[
            "0-3 months"
            if days < 92
            else "3-6 months"
            if days < 183
            else "6-12 months"
            if days < 366
            else "over 12 months"
        ] += 1
    return {
        k: suppress(buckets.get(k, 0)) for k in ("0-3 months", "3-6 months", "6-12 months", "over 12 months")
    }
