"""The demo's pure parts: its caseload is realistic and reproducible, its reviews keep the review
rules, and its calendar moves on only when the day's work is done."""

import asyncio
import statistics
from datetime import date, timedelta
from pathlib import Path

from events.partner import parse_notification
from infra.clock import FileClock, set_simulated_now
from leder.demo.calendar import Calendar, Latch, working_day
from leder.demo.caseload import Outcome, generate
from leder.demo.people import first_suggested_pair
from leder.demo.plan import review_steps

START, END = date(2025, 5, 26), date(2026, 11, 26)


def test_one_seed_makes_one_caseload_and_another_seed_another() -> None:
    assert generate(1, 300, START, END) == generate(1, 300, START, END)
    assert generate(1, 300, START, END).notices != generate(2, 300, START, END).notices


def test_the_caseload_looks_like_a_leder_teams() -> None:
    caseload = generate(2026, 3000, START, END)
    notices = caseload.notices
    assert all(START <= n.day < END for n in notices) and notices == sorted(notices, key=lambda n: n.day)
    for notice in notices:  # every one a valid partner notification on its day
        parse_notification(notice.body, today=notice.day)
    adults = [n.age_at_death for n in notices if n.expected != "referred_to_cdop"]
    assert 58 <= statistics.median(adults) <= 66
    rarer: tuple[Outcome, ...] = (
        "duplicate_linked",
        "referred_to_cdop",
        "not_eligible",
        "eligibility_to_confirm",
    )
    everything: tuple[Outcome, ...] = ("case_opened", *rarer)
    share = {o: caseload.count(o) / len(notices) for o in everything}
    assert 0.65 < share["case_opened"] < 0.85
    for outcome in rarer:
        assert 0.01 < share[outcome] < 0.1, (outcome, share)
    people = [n.body["person"] for n in notices if n.expected != "duplicate_linked"]
    assert 0.65 < sum(p["ethnicity"] == "A" for p in people) / len(people) < 0.9
    assert {p["ethnicity"] for p in people} >= {"A", "C", "H", "N", "Z", "99"}
    assert any(p["autism"] and p["learning_disability"] is False for p in people)
    assert {p["learning_disability_level"] for p in people} >= {"mild", "moderate", "severe", "profound"}
    duplicates = [n for n in notices if n.expected == "duplicate_linked"]
    firsts = {n.body["notification_id"]: n for n in notices}
    assert all(firsts[str(d.duplicate_of)].body["person"] == d.body["person"] for d in duplicates)


def test_a_paused_review_takes_only_notes_until_it_resumes_and_every_step_is_in_order() -> None:
    caseload = generate(2026, 600, START, END)
    stories = [n for n in caseload.notices if n.story and n.story.pause_after is not None]
    assert stories
    for notice in stories:
        assert notice.story is not None
        steps = review_steps(notice, notice.story)
        days = [working_day(START + timedelta(days=offset)) for offset, _, _ in steps]
        assert days == sorted(days)
        records = [path for _, path, _ in steps]
        paused, resumed = records.index("pause"), records.index("resumption")
        assert set(records[paused + 1 : resumed]) <= {"notes"}
        assert "submission" not in records  # the reviewer submits when the plan is done


def test_the_clock_file_moves_every_reader_and_its_absence_is_real_time(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    real = datetime(2026, 11, 26, 12, tzinfo=UTC)
    now = [real]
    clock = FileClock(tmp_path / "clock", real=lambda: now[0])
    assert clock() == real
    set_simulated_now(tmp_path / "clock", datetime(2025, 6, 2, 9, tzinfo=UTC), real=real)
    now[0] = real + timedelta(seconds=3)
    assert clock() == datetime(2025, 6, 2, 9, 0, 3, tzinfo=UTC)  # time runs on from there
    set_simulated_now(tmp_path / "clock", datetime(2025, 6, 3, 9, tzinfo=UTC), real=now[0])
    assert clock() == datetime(2025, 6, 3, 9, tzinfo=UTC)
    (tmp_path / "clock").unlink()
    assert clock() == now[0]


async def test_the_calendar_waits_for_the_days_work_and_late_sleepers_come_after_it(tmp_path: Path) -> None:
    calendar = Calendar(tmp_path / "clock", date(2026, 1, 5))
    seen: list[str] = []
    decided = Latch(calendar)

    async def reviewer() -> None:
        await calendar.until(date(2026, 1, 6))
        await asyncio.sleep(0.05)  # waiting on another service still counts as working
        seen.append("submitted")
        seen.append(f"told {await decided.wait()}")

    async def panel() -> None:
        await calendar.until(date(2026, 1, 6), late=True)
        seen.append("panel sits")
        decided.open("approved")

    calendar.spawn(reviewer())
    calendar.spawn(panel())
    await calendar.settled()
    assert seen == []
    await calendar.advance_to(date(2026, 1, 6))
    assert seen == ["submitted", "panel sits", "told approved"]
    assert (tmp_path / "clock").read_text().startswith("2026-01-06T09:00:00+00:00")


def _person(name: str, *, senior: bool = False, eligible: bool = True) -> dict[str, object]:
    return {"reviewer_id": f"id-{name}", "sub": name, "name": name, "senior": senior, "eligible": eligible}


def test_the_lac_allocates_the_first_suggested_pair_as_the_suggestions_give_it() -> None:
    # The reviewers' list ranks Sam first among the eligible seniors, but the system's first pair
    # has Sue (fewer cases supported): the LAC follows the pairs, not the reviewers' list.
    suggested = {
        "suggestions": [_person("rae"), _person("sam", senior=True), _person("sue", senior=True)],
        "senior_reviewers": [_person("sue", senior=True), _person("sam", senior=True)],
        "pairs": [
            {"reviewer": _person("rae"), "senior_reviewer": _person("sue", senior=True)},
            {"reviewer": _person("rae"), "senior_reviewer": _person("sam", senior=True)},
        ],
    }
    assert first_suggested_pair(suggested) == ("id-rae", "id-sue")
    assert first_suggested_pair({**suggested, "pairs": []}) is None  # nobody can take it today
