"""A consumed event gets a version 2 (tests/support/versions.py: notification.CaseOpened and
allocation.ReviewerAllocated, fields renamed on the wire, each with its upcaster from version 1): the
governance reports and the audit replay give the same answers for a history published in version 1,
one published in version 2, and one with both, because they read each event through the registry as
a typed payload, upcast from the version it was published in."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

import pytest

from events import Actor, Envelope
from events.notification import CaseOpened
from events.registry import UnknownEventType, decode_payload
from services.audit import replay
from services.governance import reports
from services.governance.reports import Fact
from tests.support.payloads import complete
from tests.support.versions import SECOND_VERSIONS, as_version_2, second_versions

Event = tuple[str, UUID, date, dict[str, Any]]
START = date(2026, 1, 5)


def _case_history(n: int) -> list[Event]:
    """Case n's life: opened, allocated, reviewed (some paused), approved and completed or still open."""
    case = UUID(int=n + 1)
    notified = START + timedelta(days=9 * n)
    allocated, started = notified + timedelta(days=3 + n), notified + timedelta(days=4 + n)
    reviewer, senior = f"rev-{n % 3}", "sen-1"
    focused = n % 2 == 0
    facts = {
        "age_at_death": 40 + 7 * n,
        "sex": "female" if n % 3 else "male",
        "ethnicity": "A" if n % 4 else "M",
        "learning_disability_level": "moderate",
        "place_of_death": "hospital" if n % 2 else "home",
    }

    def event(event_type: str, on: date, **data: Any) -> Event:
        return (event_type, case, on, complete(event_type, data, case))

    history = [
        event(
            "notification.CaseOpened",
            notified,
            reference=f"LDR-2026-{n + 1:05d}",
            review_type="focused" if focused else "initial",
            focused_reasons=["learning"] if focused else [],
            facts=facts,
            notified_on=notified.isoformat(),
        ),
        event(
            "allocation.CaseAwaitingAllocation",
            notified,
            notified_on=notified.isoformat(),
            review_type="focused" if focused else "initial",
        ),
        event(
            "allocation.ReviewerAllocated",
            allocated,
            reviewer_user_id=reviewer,
            senior_reviewer_user_id=senior,
            allocated_on=allocated.isoformat(),
            notified_on=notified.isoformat(),
            review_type="focused" if focused else "initial",
        ),
        event(
            "review.ReviewStarted",
            started,
            reviewer_user_id=reviewer,
            senior_reviewer_user_id=senior,
            review_type="focused" if focused else "initial",
        ),
        event(
            "review.LearningRecorded",
            started + timedelta(days=20),
            themes=["sepsis", "constipation"][: n % 2 + 1],
        ),
    ]
    if n % 3 == 1:
        paused = started + timedelta(days=10)
        history += [
            event(
                "review.ReviewPaused",
                paused,
                reason="coroners_investigation_or_inquest",
                paused_on=paused.isoformat(),
            ),
            event(
                "review.ReviewResumed",
                paused + timedelta(days=30),
                resumed_on=(paused + timedelta(days=30)).isoformat(),
            ),
        ]
    if n < 5:
        done = started + timedelta(days=100 + 15 * n)
        history += [
            event("review.CauseOfDeathRecorded", done - timedelta(days=5), avoidable=n % 2 == 0),
            event(
                "review.ReviewSubmittedForQA",
                done - timedelta(days=3),
                submitted_on=(done - timedelta(days=3)).isoformat(),
            ),
            event("governance.ReviewApprovedByQA", done),
            event("review.ReviewCompleted", done, completed_on=done.isoformat()),
        ]
    if n < 2:
        history.append(event("governance.CaseClosed", done + timedelta(days=7)))
    return history


HISTORY = sorted((e for n in range(7) for e in _case_history(n)), key=lambda e: e[2])
CASES = sorted({case for _, case, _, _ in HISTORY})


def _published(in_version_2: set[UUID]) -> list[tuple[str, UUID, date, int, dict[str, Any]]]:
    """The history as published: the cases in `in_version_2` by producers at version 2."""
    return [
        (event_type, case, on, *(as_version_2(event_type, data) if case in in_version_2 else (1, data)))
        for event_type, case, on, data in HISTORY
    ]


def _facts(published: list[tuple[str, UUID, date, int, dict[str, Any]]]) -> list[Fact]:
    return [Fact(event_type, case, on, data, version) for event_type, case, on, version, data in published]


def _envelopes(published: list[tuple[str, UUID, date, int, dict[str, Any]]]) -> list[Envelope]:
    out = []
    for sequence, (event_type, case, on, version, data) in enumerate(published, start=1):
        at = datetime.combine(on, time(12), UTC) + timedelta(seconds=sequence)
        out.append(
            Envelope(
                event_id=UUID(int=10_000 + sequence),
                event_type=event_type,
                schema_version=version,
                stream_id=str(case),
                case_id=case,
                stream_version=sequence,
                source=event_type.split(".")[0],
                source_sequence=sequence,
                occurred_at=at,
                recorded_at=at,
                actor=Actor.system("test"),
                correlation_id="history",
                data=data,
            )
        )
    return out


def _report_answers(facts: list[Fact]) -> dict[str, Any]:
    year = (date(2026, 1, 1), date(2026, 12, 31))
    completed = [c for c in reports.cases_as_of(facts, year[1]).values() if c.completed_on]
    return {
        "cases": reports.cases_as_of(facts, year[1]),
        "cases_in_march": reports.cases_as_of(facts, date(2026, 3, 31)),
        "kpis": [reports.kpis(facts, date(2026, m, 1), date(2026, m, 28)) for m in range(1, 13)],
        "year": reports.publishable(reports.kpis(facts, *year)),
        "themes": reports.themes(facts, date(2026, 1, 1), date(2026, 3, 31)),
        "backlog": reports.backlog_by_age(facts, date(2026, 5, 1)),
        "monthly": reports.monthly_series(facts, *year),
        "grouped": reports.grouped(completed),
        "median_age": reports.median_age(completed),
    }


def _replay_answers(envelopes: list[Envelope]) -> dict[str, Any]:
    moments = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 13)] + [datetime(2027, 1, 1, tzinfo=UTC)]
    return {
        "states": [
            replay.state_as_of(str(case), [e for e in envelopes if e.case_id == case], at)
            for case in CASES
            for at in moments
        ],
        "summaries": [replay.summary(e) for e in envelopes],
    }


@pytest.fixture
def versions_2() -> Any:
    with second_versions():
        yield


def test_reports_and_replay_read_version_1_and_version_2_of_an_event_alike(versions_2: None) -> None:
    all_v1 = _published(set())
    all_v2 = _published(set(CASES))
    mixed = _published(set(CASES[::2]))
    # Version 2 really is another shape on the wire: a reader of raw dicts would find no reviewer.
    allocated_v2 = [d for t, _, _, v, d in all_v2 if t == "allocation.ReviewerAllocated"]
    assert allocated_v2 and all("reviewer_user_id" not in d and "reviewer_sub" in d for d in allocated_v2)
    assert all(v == 2 for t, _, _, v, _ in all_v2 if t in SECOND_VERSIONS)

    v1_reports = _report_answers(_facts(all_v1))
    assert _report_answers(_facts(all_v2)) == v1_reports
    assert _report_answers(_facts(mixed)) == v1_reports
    v1_replay = _replay_answers(_envelopes(all_v1))
    assert _replay_answers(_envelopes(all_v2)) == v1_replay
    assert _replay_answers(_envelopes(mixed)) == v1_replay

    # And the answers are the history's, not empty ones that would agree anyway.
    assert v1_reports["year"]["eligible"] == 7 and v1_reports["year"]["allocated"] == 7
    assert v1_reports["grouped"]["sex"] == {"female": "<5", "male": "<5"}
    assert v1_reports["themes"]["learning_themes"] == {"constipation": "<5", "sepsis": 7}
    last = {s.case_id: s for s in v1_replay["states"] if s.as_of.startswith("2027")}
    first = last[str(CASES[0])]
    assert (first.reference, first.reviewer, first.senior_reviewer) == ("LDR-2026-00001", "rev-0", "sen-1")
    assert (first.review_type, first.focused_reasons, first.status) == ("focused", ["learning"], "closed")
    assert last[str(CASES[6])].status == "review_in_progress"


def test_a_version_2_is_read_only_while_a_test_registers_it() -> None:
    _, _, _, version, data = next(e for e in _published(set(CASES)) if e[0] == "notification.CaseOpened")
    assert version == 2
    with pytest.raises(UnknownEventType):
        decode_payload("notification.CaseOpened", version, data)
    with second_versions():
        decoded = decode_payload("notification.CaseOpened", version, data)
        assert isinstance(decoded, CaseOpened) and decoded.facts.age_at_death == 40
        # Read as a version 1 (its schema version lost), it is refused, not misread.
        with pytest.raises(KeyError):
            decode_payload("notification.CaseOpened", 1, data)
    with pytest.raises(UnknownEventType):
        decode_payload("notification.CaseOpened", version, data)
