"""The people of `leder demo` and what they do, each through the public API their role has: partner
systems notify, the LAC confirms eligibility, records ethnicity, trains reviewers and allocates,
reviewers review (with pauses, lapses in care and conflicts of interest), the QA panel meets every
fortnight, the Governance Group every quarter. The services decide everything else."""

import functools
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from leder.demo.calendar import Calendar, Latch, working_day
from leder.demo.caseload import Caseload, Notice, Reviewer, Story
from leder.demo.plan import review_steps
from leder.demo.world import DemoError, World, eventually

LAC = ("lac", "lena.lac")
PANEL = ("qa_panel", "qa.chair")
GROUP = ("governance", "governance.chair")
PARTNER_ROLE = "partner_system"


def first_suggested_pair(suggested: dict[str, Any]) -> tuple[str, str] | None:
    """The reviewer and senior reviewer a LAC following the suggestions allocates: the first pair GET
    /cases/{id}/suggested-reviewers offers (the system's pick, support counted for each senior
    reviewer), or None when no pair can take the case today."""
    pairs = suggested.get("pairs") or []
    if not pairs:
        return None
    first = pairs[0]
    return first["reviewer"]["reviewer_id"], first["senior_reviewer"]["reviewer_id"]


@dataclass
class Case:
    case_id: UUID
    notice: Notice
    story: Story
    decision: Latch
    allocated: Latch
    returned: bool = False
    reviewer: str | None = None


@dataclass
class Demo:
    world: World
    calendar: Calendar
    caseload: Caseload
    seed: int
    tally: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    cases: dict[UUID, Case] = field(default_factory=dict)
    reviewer_ids: dict[str, str] = field(default_factory=dict)  # user id -> reviewer id
    desk: list[Case] = field(default_factory=list)  # cases waiting for the LAC's allocation round
    submitted: set[UUID] = field(default_factory=set)  # reviews waiting for a QA panel
    approved: list[tuple[date, UUID, tuple[str, ...], list[str]]] = field(default_factory=list)

    # -- the LAC's standing work ------------------------------------------------------------------

    async def register_reviewers(self) -> None:
        for reviewer in self.caseload.reviewers:
            made = await self._as(
                LAC,
                "POST",
                "allocation",
                "/reviewers",
                body={
                    "user_id": reviewer.user_id,
                    "name": reviewer.name,
                    "organisations": list(reviewer.organisations),
                    "senior": reviewer.senior,
                    "capacity": reviewer.capacity,
                },
            )
            self.reviewer_ids[reviewer.user_id] = made.json()["reviewer_id"]
            trained = self.calendar.today - timedelta(days=reviewer.trained_days_before_start)
            await self._train(reviewer, trained)
            self.calendar.spawn(self._refresh_training(reviewer, trained))

    async def _train(self, reviewer: Reviewer, on: date) -> None:
        await self._as(
            LAC,
            "POST",
            "allocation",
            f"/reviewers/{self.reviewer_ids[reviewer.user_id]}/training",
            body={"completed_on": on.isoformat()},
        )
        self.tally["training recorded"] += 1

    async def _refresh_training(self, reviewer: Reviewer, last: date) -> None:
        """Yearly refreshers, now and then a few weeks late (the reviewer cannot take cases meanwhile)."""
        while True:
            due = working_day(last + timedelta(days=reviewer.refresher_after_days))
            if due >= self.caseload.end:
                return
            await self.calendar.until(due)
            await self._train(reviewer, due)
            last = due

    # -- notifications ----------------------------------------------------------------------------

    async def notify(self, notice: Notice) -> None:
        await self.calendar.until(notice.day)
        if notice.door == "kafka":
            await self.world.publish(notice.body)
        else:
            await self.world.call(
                "POST",
                "notification",
                "/notifications",
                role=PARTNER_ROLE,
                sub=notice.body["notifier"]["organisation"],
                organisation=notice.body["notifier"]["organisation"],
                body=notice.body,
            )
        self.tally[f"notified by {notice.door}"] += 1
        notification_id = notice.body["notification_id"]

        async def taken() -> dict[str, Any] | None:
            answer = await self.world.call(
                "GET",
                "notification",
                f"/notifications/{notification_id}",
                role=PARTNER_ROLE,
                sub="demo",
                # The notifier's own system asks: a partner reads its own organisation's outcomes only.
                organisation=notice.body["notifier"]["organisation"],
                ok=(200, 404),
            )
            return answer.json() if answer.status_code == 200 else None

        outcome = await eventually(taken, f"the outcome of notification {notification_id}")
        self.tally[outcome["outcome"]] += 1
        if outcome["outcome"] != notice.expected:
            self.mismatches.append(f"{notification_id}: {outcome['outcome']}, expected {notice.expected}")
            return
        if notice.story is not None and outcome["case_id"]:
            case = Case(
                UUID(outcome["case_id"]), notice, notice.story, Latch(self.calendar), Latch(self.calendar)
            )
            self.cases[case.case_id] = case
            await self.case_life(case, outcome)

    # -- a case from notification to closure ------------------------------------------------------

    async def case_life(self, case: Case, outcome: dict[str, Any]) -> None:
        story, day = case.story, case.notice.day
        if outcome["outcome"] == "eligibility_to_confirm":
            await self.calendar.until(working_day(day + timedelta(days=story.eligibility_after)))
            if not story.eligibility_confirmed:
                await self._as(
                    LAC,
                    "POST",
                    "notification",
                    f"/cases/{case.case_id}/eligibility",
                    {"decision": "reject", "reason": "GP records show no learning disability"},
                )
                self.tally["eligibility rejected"] += 1
                return
            await self._as(
                LAC,
                "POST",
                "notification",
                f"/cases/{case.case_id}/eligibility",
                {"decision": "confirm", "learning_disability": True, "autism": False},
            )
            self.tally["eligibility confirmed"] += 1
        if outcome["flags"] and story.ethnicity_recorded_later:
            await self.calendar.until(
                working_day(self.calendar.today + timedelta(days=story.ethnicity_after))
            )
            await self._as(
                LAC,
                "POST",
                "notification",
                f"/cases/{case.case_id}/ethnicity",
                {"ethnicity": story.ethnicity_recorded_later},
            )
            self.tally["ethnicity recorded later"] += 1
        await self.calendar.until(working_day(day + timedelta(days=story.wait_for_allocation)))
        await self.allocate(case)
        await self.review(case)

    async def allocate(self, case: Case) -> None:
        """Into the LAC's next allocation round, once the case is in the allocation queue."""
        await eventually(lambda: self._queued(case.case_id), f"case {case.case_id} in the allocation queue")
        self.desk.append(case)
        await case.allocated.wait()

    async def allocation_rounds(self) -> None:
        """Each working day, after everything else, the LAC allocates what waits, oldest first, to
        the first suggested reviewer and senior reviewer; what nobody can take waits for tomorrow."""
        day = working_day(self.caseload.start)
        while day < self.caseload.end:
            await self.calendar.until(day, late=True)
            waiting = sorted(self.desk, key=lambda c: (c.notice.day, c.notice.body["notification_id"]))
            self.desk = []
            for case in waiting:
                if await self._allocated(case):
                    case.allocated.open()
                else:
                    self.desk.append(case)
                    self.tally["allocation deferred a day"] += 1
            day = working_day(day + timedelta(days=1))

    async def _allocated(self, case: Case) -> bool:
        suggested = (
            await self._as(LAC, "GET", "allocation", f"/cases/{case.case_id}/suggested-reviewers")
        ).json()
        pair = first_suggested_pair(suggested)
        if pair is None:
            return False
        reviewer_id, senior_id = pair
        answer = await self._as(
            LAC,
            "POST",
            "allocation",
            f"/cases/{case.case_id}/allocation",
            body={"reviewer_id": reviewer_id, "senior_reviewer_id": senior_id},
            ok=(201, 409),
        )
        if answer.status_code != 201:
            return False
        case.reviewer = next(u for u, i in self.reviewer_ids.items() if i == reviewer_id)
        self.tally["allocated"] += 1
        return True

    async def _queued(self, case_id: UUID) -> bool:
        waiting = (await self._as(LAC, "GET", "allocation", "/allocation-queue")).json()["cases"]
        return any(c["case_id"] == str(case_id) for c in waiting)

    async def review(self, case: Case) -> None:
        story, reviewer = case.story, case.reviewer
        assert reviewer is not None
        await self._started(case, reviewer)
        start = self.calendar.today
        if story.conflict_declared:
            await self.calendar.until(working_day(start + timedelta(days=2)))
            await self.world.call(
                "POST",
                "allocation",
                f"/cases/{case.case_id}/conflict-declaration",
                role="reviewer",
                sub=reviewer,
                body={"reason": "I supported this person's family in a previous role"},
            )
            self.tally["conflicts declared"] += 1
            case.story = replace(story, conflict_declared=False)  # the next reviewer has none
            await self.allocate(case)
            return await self.review(case)
        for offset, path, body in review_steps(case.notice, case.story):
            await self.calendar.until(working_day(start + timedelta(days=offset)))
            if path == "pause":
                self.tally["paused"] += 1
            if path == "lapses-in-care":
                self.tally["lapses in care"] += 1
            await self._write(case, reviewer, path, body)
        await self.calendar.until(working_day(start + timedelta(days=story.review_days + story.pause_days)))
        await self._submit_until_approved(case, reviewer)

    async def _started(self, case: Case, reviewer: str) -> dict[str, Any]:
        async def started() -> dict[str, Any] | None:
            answer = await self.world.call(
                "GET", "review", f"/reviews/{case.case_id}", role="reviewer", sub=reviewer, ok=(200, 403, 404)
            )
            return answer.json() if answer.status_code == 200 else None

        return await eventually(started, f"the review of case {case.case_id} to start for {reviewer}")

    async def _write(self, case: Case, reviewer: str, path: str, body: dict[str, Any]) -> None:
        today = self.calendar.today.isoformat()
        dated = {k: (today if v is None and k.endswith("_on") else v) for k, v in body.items()}
        if path in ("contacts", "family-involvement"):
            dated["on"] = today
        await self.world.call(
            "POST", "review", f"/reviews/{case.case_id}/{path}", role="reviewer", sub=reviewer, body=dated
        )

    async def _submit_until_approved(self, case: Case, reviewer: str) -> None:
        while True:
            await self._write(case, reviewer, "submission", {})
            self.tally["submitted"] += 1
            self.submitted.add(case.case_id)
            decision = await case.decision.wait()
            if decision == "approved":
                return
            await self.calendar.until(
                working_day(self.calendar.today + timedelta(days=case.story.rework_days))
            )
            await self._back_in_progress(case, reviewer)
            await self._write(case, reviewer, "notes", {"text": "the panel's comments are addressed"})

    async def _back_in_progress(self, case: Case, reviewer: str) -> None:
        async def in_progress() -> bool:
            answer = await self.world.call(
                "GET", "review", f"/reviews/{case.case_id}", role="reviewer", sub=reviewer
            )
            return bool(answer.json()["status"] == "in_progress")

        await eventually(in_progress, f"the returned review of case {case.case_id} to reopen")

    # -- the QA panel and the Governance Group ----------------------------------------------------

    async def qa_panels(self) -> None:
        """Every other Wednesday the LAC puts what awaits QA on a panel's agenda and the panel decides."""
        day = self.caseload.start + timedelta(days=(2 - self.caseload.start.weekday()) % 7 + 14)
        while day < self.caseload.end:
            await self.calendar.until(day, late=True)
            known = sorted(self.submitted, key=lambda c: self.cases[c].notice.body["notification_id"])
            self.submitted.clear()
            if known:
                await eventually(
                    functools.partial(self._awaiting_qa, known), f"{len(known)} submitted reviews to reach QA"
                )
                panel = (
                    await self._as(LAC, "POST", "governance", "/qa-panels", {"held_on": day.isoformat()})
                ).json()
                self.tally["QA panels held"] += 1
                for case_id in known:
                    await self._decide(panel["panel_id"], self.cases[case_id])
            day += timedelta(days=14)

    async def _awaiting_qa(self, cases: list[UUID]) -> bool:
        awaiting = (await self._as(LAC, "GET", "governance", "/qa/awaiting")).json()["reviews"]
        return {str(c) for c in cases} <= {r["case_id"] for r in awaiting}

    async def _decide(self, panel_id: str, case: Case) -> None:
        await self._as(
            LAC, "POST", "governance", f"/qa-panels/{panel_id}/agenda", {"case_id": str(case.case_id)}
        )
        returning = case.story.returned_by_qa and not case.returned
        body: dict[str, Any] = (
            {
                "case_id": str(case.case_id),
                "decision": "returned",
                "comments": "the family's view of the last admission is missing",
            }
            if returning
            else {
                "case_id": str(case.case_id),
                "decision": "approved",
                "quality_rating": case.story.quality_rating,
                "themes": list(case.story.themes),
            }
        )
        await self._as(PANEL, "POST", "governance", f"/qa-panels/{panel_id}/decisions", body=body)
        case.returned = case.returned or returning
        self.tally["returned by QA" if returning else "approved by QA"] += 1
        if not returning:
            orgs = case.notice.body["organisations_involved"]
            self.approved.append((self.calendar.today, case.case_id, case.story.themes, orgs))
        case.decision.open(body["decision"])

    async def governance_group(self) -> None:
        """Each quarter the Group turns the commonest themes of the reviews it approved into actions."""
        day = working_day(self.caseload.start + timedelta(days=91))
        seen = 0
        while day < self.caseload.end:
            await self.calendar.until(day, late=True)
            recent, seen = sorted(self.approved[seen:], key=lambda a: (a[0], str(a[1]))), len(self.approved)
            themes = Counter(t for _, _, ts, _ in recent for t in ts)
            for theme, count in themes.most_common(2):
                if count < 3:
                    continue
                linked = [case_id for _, case_id, ts, _ in recent if theme in ts]
                organisation = Counter(o for _, _, ts, os in recent if theme in ts for o in os).most_common(
                    1
                )[0][0]
                self.calendar.spawn(self._action(theme, organisation, linked))
            day = working_day(day + timedelta(days=91))

    async def _action(self, theme: str, organisation: str, case_ids: list[UUID]) -> None:
        rng = random.Random(f"{self.seed}:{theme}:{self.calendar.today}")  # the same run, the same actions
        due = self.calendar.today + timedelta(days=rng.randint(60, 150))
        agreed = await self._as(
            GROUP,
            "POST",
            "governance",
            "/actions",
            body={
                "what": f"Act on {theme.replace('_', ' ')}: a plan with the organisation",
                "organisation": organisation,
                "lead": "Director of Nursing",
                "due_on": due.isoformat(),
                "case_ids": [str(c) for c in case_ids[:200]],
                "themes": [theme],
            },
        )
        action_id = agreed.json()["action_id"]
        self.tally["actions agreed"] += 1
        await self.calendar.until(working_day(self.calendar.today + timedelta(days=30)))
        await self._as(
            GROUP,
            "POST",
            "governance",
            f"/actions/{action_id}/progress",
            body={"update": "plan agreed with the organisation's board"},
        )
        if rng.random() < 0.6:
            done = due - timedelta(days=rng.randint(0, 25))
            await self.calendar.until(working_day(max(done, self.calendar.today + timedelta(days=1))))
            if self.calendar.today <= due:
                await self._as(
                    GROUP,
                    "POST",
                    "governance",
                    f"/actions/{action_id}/completion",
                    body={"evidence": "re-audit shows the change in place"},
                )
                self.tally["actions completed"] += 1

    async def _as(
        self,
        who: tuple[str, str],
        method: str,
        service: str,
        path: str,
        body: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        """A call by one of the standing people: the LAC, the QA panel, the Governance Group."""
        role, sub = who
        return await self.world.call(method, service, path, role=role, sub=sub, body=body, ok=ok)


__all__ = ["Demo", "DemoError"]
