"""A reviewer's and senior reviewer's access to a review follows the allocation (issue 15, item 1): it
ends with a declared conflict, the case back in the queue (the reviewer deactivated included), a
reallocation, the review completed or the case closed, and comes back only with a new allocation (the
case allocated again, or the allocation restored on reopening). Each step publishes the allocation and
governance events those services publish, and checks every route under /reviews/{case_id} that a
reviewer or senior reviewer can call. Every read of the review by a person is recorded."""

import asyncio
from datetime import date
from typing import Any, Literal
from uuid import uuid4

from events import EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.governance import CaseClosed, CaseReopened, ReviewApprovedByQA
from events.topics import service_topic
from services.allocation.domain import review_deadline
from tests.integration.review.test_review_service import FOCUSED_MORE, MINIMUM, NOW, envelope, post, svc
from tests.support.sealing import sealed
from tests.support.service import RunningService
from tests.support.waiting import eventually, publish_raw

__all__ = ["svc"]  # the fixture

RAE, KIT, SAM = "rae", "kit", "sam"
NOTIFIED = date(2026, 10, 1)
# Every write a reviewer can make on a case, each with a valid body: a refusal is then the access rule,
# never the body's validation. Pause and resumption come last: a paused review takes only notes.
WRITES: list[tuple[str, dict[str, Any]]] = [
    ("contacts", {"party": "family", "status": "offered", "on": "2026-10-20"}),
    ("records", {"source": "GP", "requested_on": "2026-10-21"}),
    ("pen-portrait", {"text": "Jo loved Bristol Rovers."}),
    ("family-involvement", {"step": "invited_to_comment", "on": "2026-10-24"}),
    ("care-judgements", {"phase": "final admission", "grade": 2, "rationale": "prompt care"}),
    ("lapses-in-care", {"what": "late", "where": "ward 4", "organisation": "NBT", "contribution": "unknown"}),
    ("good-practice", {"text": "hospital passport used", "themes": ["sepsis"]}),
    ("learning", {"text": "sepsis screening", "themes": ["sepsis"]}),
    ("recommendations", {"what": "use the sepsis tool", "organisation": "NBT"}),
    ("cause-of-death", {"cause": "sepsis", "preventable_or_treatable": True, "age_at_death": 62}),
    ("safeguarding-referrals", {"to": "the local authority", "on": "2026-10-25", "why": "neglect"}),
    ("escalation", {"detail": "wider learning"}),
    ("notes", {"text": "a note"}),
    ("submission", {}),
    ("pause", {"reason": "police_investigation"}),
    ("resumption", {}),
]


class Case:
    """One case's events as the allocation and governance services publish them: each source's stream
    numbered from 1 without a gap, as the review service's inbox expects."""

    def __init__(self, svc: RunningService, bootstrap: str, prefix: str) -> None:
        self.svc, self.bootstrap, self.prefix = svc, bootstrap, prefix
        self.case_id = uuid4()
        self.versions: dict[str, int] = {}
        self.ids = {RAE: uuid4(), KIT: uuid4(), SAM: uuid4()}

    async def publish(self, source: str, *payloads: EventPayload) -> None:
        messages = []
        for payload in payloads:
            self.versions[source] = self.versions.get(source, 0) + 1
            messages.append(envelope(source, self.case_id, payload, self.versions[source]))
        topic = service_topic(source, self.prefix)
        await publish_raw(self.bootstrap, topic, [(m.kafka_key, m.canonical()) for m in messages])

    def allocated(self, reviewer: str, senior: str = SAM) -> ReviewerAllocated:
        return ReviewerAllocated(
            case_id=self.case_id,
            reviewer_id=self.ids[reviewer],
            reviewer_user_id=reviewer,
            senior_reviewer_id=self.ids[senior],
            senior_reviewer_user_id=senior,
            allocated_on=NOW.date(),
            notified_on=NOTIFIED,
            deadline=review_deadline(NOTIFIED),
            review_type="initial",
            focused_reasons=[],
        )

    def returned(self, reviewer: str, reason: str) -> CaseReturnedToQueue:
        return CaseReturnedToQueue(
            case_id=self.case_id, reviewer_id=self.ids[reviewer], reason=sealed(reason)
        )

    def ended(self, reviewer: str, reason: Literal["review_completed", "case_closed"]) -> AllocationEnded:
        return AllocationEnded(case_id=self.case_id, reviewer_id=self.ids[reviewer], reason=reason)

    async def read(self, who: str, role: str = "reviewer") -> Any:
        return await self.svc.client.get(f"/reviews/{self.case_id}", headers=self.svc.headers(role, who))

    async def until_read(self, who: str, status: int, role: str = "reviewer") -> None:
        async def answered() -> bool:
            return bool((await self.read(who, role)).status_code == status)

        await eventually(answered, timeout=60)

    async def until_status(self, status: str) -> None:
        async def reached() -> bool:
            return bool((await self.read("lac-1", "lac")).json()["status"] == status)

        await eventually(reached, timeout=60)

    async def mine(self, who: str) -> list[dict[str, Any]]:
        answer = await self.svc.client.get("/reviews/mine", headers=self.svc.headers("reviewer", who))
        return [r for r in answer.json()["reviews"] if r["case_id"] == str(self.case_id)]


async def assert_shut_out(case: Case, *people: str) -> None:
    """Every route a reviewer or senior reviewer can call on the case answers 403 with the problem a
    case not allocated to them gets, and writes nothing; the LAC still reads the review."""
    before = await case.svc.runtime.store.stream_version(str(case.case_id))
    for who in people:
        for role in ("reviewer", "senior_reviewer"):
            read = await case.read(who, role)
            assert (read.status_code, read.json()["code"]) == (403, "not_allocated_reviewer"), (
                who,
                read.text,
            )
            for path, body in WRITES:
                answer = await post(case.svc, case.case_id, path, body, who=who, role=role)
                assert (answer.status_code, answer.json()["code"]) == (403, "not_allocated_reviewer"), (
                    who,
                    role,
                    path,
                    answer.text,
                )
    assert await case.svc.runtime.store.stream_version(str(case.case_id)) == before
    assert (await case.read("lac-1", "lac")).status_code == 200


async def assert_let_in(case: Case, reviewer: str, senior: str = SAM) -> None:
    """The reviewer and senior reviewer of the allocation read the review; the reviewer writes: no route
    refuses them for access (a rule of the review's state may still refuse a write)."""
    for who in (reviewer, senior):
        assert (await case.read(who)).status_code == 200, who
    for path, body in WRITES:
        answer = await post(case.svc, case.case_id, path, body, who=reviewer)
        assert answer.status_code != 403, (path, answer.text)
    note = await post(case.svc, case.case_id, "notes", {"text": "back on the case"}, who=reviewer)
    assert note.status_code == 201, note.text


async def submit_and_close(case: Case, reviewer: str) -> None:
    """The minimum, submitted (unless it is already); the QA panel approves it and the case is closed."""
    if (await case.read("lac-1", "lac")).json()["status"] != "submitted":
        for path, body in MINIMUM + FOCUSED_MORE:  # a lapse in care made the review focused
            assert (await post(case.svc, case.case_id, path, body, who=reviewer)).status_code == 201, path
        submitted = await post(case.svc, case.case_id, "submission", who=reviewer)
        assert submitted.status_code == 201, submitted.text
    approved = ReviewApprovedByQA(case_id=case.case_id, panel_id=uuid4(), quality_rating=4, themes=["sepsis"])
    await case.publish("governance", approved, CaseClosed(case_id=case.case_id, closed_on=NOW.date()))
    await case.until_status("completed")


async def test_access_ends_with_each_end_of_the_allocation_and_comes_back_only_with_a_new_one(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case = Case(svc, kafka_bootstrap, topic_prefix)
    await case.publish("allocation", case.allocated(RAE))
    await case.until_read(RAE, 200)
    await assert_let_in(case, RAE)

    # A conflict of interest declared: the case goes back to the queue, and the review with it.
    declared = ConflictOfInterestDeclared(
        case_id=case.case_id, reviewer_id=case.ids[RAE], reason=sealed("knew her")
    )
    conflict = case.returned(RAE, "the reviewer declared a conflict of interest")
    await case.publish("allocation", declared, conflict)
    await case.until_read(RAE, 403)
    await assert_shut_out(case, RAE, SAM)
    assert await case.mine(RAE) == [] and await case.mine(SAM) == []
    refused = await case.read(RAE)
    assert "the allocation ended (a conflict of interest was declared)" in refused.json()["detail"]

    # Reallocated to another reviewer: they (and the senior) have it; the first reviewer does not.
    await case.publish("allocation", case.allocated(KIT))
    await case.until_read(KIT, 200)
    await assert_let_in(case, KIT)
    await assert_shut_out(case, RAE)

    # The reviewer deactivated: the allocation service returns each of their cases to the queue.
    await case.publish("allocation", case.returned(KIT, "the reviewer was deactivated"))
    await case.until_read(KIT, 403)
    await assert_shut_out(case, KIT, SAM, RAE)

    # Allocated again to the same pair: access comes back.
    await case.publish("allocation", case.allocated(KIT))
    await case.until_read(KIT, 200)
    await assert_let_in(case, KIT)
    [listed] = await case.mine(KIT)
    assert listed["can_open"] is True

    # Returned to the queue for some other reason (the LAC's decision, say).
    await case.publish("allocation", case.returned(KIT, "the LAC took the case back"))
    await case.until_read(KIT, 403)
    await assert_shut_out(case, KIT, SAM)
    await case.publish("allocation", case.allocated(RAE))
    await case.until_read(RAE, 200)

    # The review completed (approved by the QA panel) and the case closed: the allocation ends. The
    # completed review stays on the reviewer's list for the record, without a way in.
    await submit_and_close(case, RAE)
    await case.publish("allocation", case.ended(RAE, "review_completed"))
    await case.until_read(RAE, 403)
    await assert_shut_out(case, RAE, SAM)
    [listed] = await case.mine(RAE)
    assert (listed["status"], listed["can_open"], listed["qa_comments"]) == ("completed", False, None)
    assert "the review was completed" in (await case.read(SAM, "senior_reviewer")).json()["detail"]

    # Reopened, but the allocation could not be restored (the case went back to the queue): the review
    # is in progress again and the old pair still has no access.
    await case.publish("governance", CaseReopened(case_id=case.case_id, reason="the coroner's findings"))
    await case.publish("allocation", case.returned(RAE, "the case was reopened and cannot go back"))
    await case.until_status("in_progress")
    await assert_shut_out(case, RAE, SAM)
    assert await case.mine(RAE) == []

    # A new allocation after that reopening, then the case closed (case_closed ends it this time).
    await case.publish("allocation", case.allocated(RAE))
    await case.until_read(RAE, 200)
    await assert_let_in(case, RAE)
    await submit_and_close(case, RAE)
    await case.publish("allocation", case.ended(RAE, "case_closed"))
    await case.until_read(RAE, 403)
    await assert_shut_out(case, RAE, SAM)

    # Reopened and the allocation restored to the same pair: access comes back with it.
    await case.publish("governance", CaseReopened(case_id=case.case_id, reason="new evidence"))
    restored = AllocationRestored(
        case_id=case.case_id,
        reviewer_id=case.ids[RAE],
        reviewer_user_id=RAE,
        senior_reviewer_id=case.ids[SAM],
        senior_reviewer_user_id=SAM,
        restored_on=NOW.date(),
        reason=sealed("new evidence"),
    )
    await case.publish("allocation", restored)
    await case.until_status("in_progress")
    await case.until_read(RAE, 200)
    await assert_let_in(case, RAE)
    [listed] = await case.mine(SAM)
    assert (listed["role_in_case"], listed["can_open"]) == ("senior_reviewer", True)

    ended = [
        e.data["reason"]
        for e in await svc.runtime.store.read_stream(str(case.case_id))
        if e.event_type == "review.ReviewerAccessEnded"
    ]
    # The reopening whose allocation could not be restored ended nothing more: access had ended already.
    assert ended == [
        "conflict_declared",
        "returned_to_queue",
        "returned_to_queue",
        "review_completed",
        "case_closed",
    ], ended


async def test_every_read_of_the_review_by_a_person_is_recorded_on_the_cases_reads_stream(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case = Case(svc, kafka_bootstrap, topic_prefix)
    await case.publish("allocation", case.allocated(RAE))
    await case.until_read(RAE, 200)
    store = svc.runtime.store
    before = len(await store.read_stream(f"reads-{case.case_id}"))
    assert (await case.read(SAM, "senior_reviewer")).status_code == 200
    assert (await case.read("lac-1", "lac")).status_code == 200
    assert (await case.read(KIT)).status_code == 403  # a refused read shows nothing: nothing to record
    reads = (await store.read_stream(f"reads-{case.case_id}"))[before:]
    assert [(e.event_type, e.data, e.actor.id, e.case_id) for e in reads] == [
        (
            "review.ReviewRead",
            {"case_id": str(case.case_id), "reader": SAM, "role": "senior_reviewer"},
            SAM,
            case.case_id,
        ),
        (
            "review.ReviewRead",
            {"case_id": str(case.case_id), "reader": "lac-1", "role": "lac"},
            "lac-1",
            case.case_id,
        ),
    ]
    # Many reading the same case at once: each read answered, each recorded once.
    answers = await asyncio.gather(*(case.read(who) for who in [RAE, SAM] * 10))
    assert [a.status_code for a in answers] == [200] * 20
    assert len(await store.read_stream(f"reads-{case.case_id}")) == before + 2 + 20
    # The reads are not the review's history: the review's own stream holds only its writes.
    review = (await case.read("lac-1", "lac")).json()
    assert "review.ReviewRead" not in [h["event_type"] for h in review["history"]]
