"""Access follows the allocation, in the notification service: the reviewer's and senior reviewer's
right to a case's personal details (and to the case) ends with the allocation, whatever ends it, and
comes back only with a new allocation. Each read of a case is recorded (notification.CaseRead)."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope, EventPayload
from events.allocation import (
    AllocationEnded,
    AllocationRestored,
    CaseReallocated,
    CaseReturnedToQueue,
    ConflictOfInterestDeclared,
    ReviewerAllocated,
)
from events.notification import CaseAllocationEnded, CaseRead
from events.topics import service_topic
from infra import db
from infra.settings import database_url_for
from services.allocation.app import definition as allocation
from services.notification.app import definition
from tests.support.allocating import allocate_to_rae_with_sam
from tests.support.notifications import notification
from tests.support.sealing import sealed
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw

REVIEWER_IDS = {name: uuid4() for name in ("rev-1", "sen-1", "rev-2", "sen-2")}


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


class AllocationStream:
    """The allocation service's events for one case, published in order as it would."""

    def __init__(self, svc: RunningService, bootstrap: str, prefix: str, case_id: str) -> None:
        self.svc, self.bootstrap, self.prefix, self.case_id = svc, bootstrap, prefix, UUID(case_id)
        self.version = 0

    async def publish(self, *payloads: EventPayload) -> None:
        envelopes = []
        for payload in payloads:
            self.version += 1
            now = datetime.now(UTC)
            envelopes.append(
                Envelope(
                    event_id=uuid4(),
                    event_type=payload.event_type,
                    schema_version=payload.schema_version,
                    stream_id=str(self.case_id),
                    case_id=self.case_id,
                    stream_version=self.version,
                    source="allocation",
                    source_sequence=self.version,
                    occurred_at=now,
                    recorded_at=now,
                    actor=Actor.system("allocation"),
                    correlation_id=str(uuid4()),
                    data=payload.model_dump(mode="json"),
                )
            )
        topic = service_topic("allocation", self.prefix)
        await publish_raw(self.bootstrap, topic, [(e.kafka_key, e.canonical()) for e in envelopes])

    def allocated(self, reviewer: str, senior: str) -> ReviewerAllocated:
        return ReviewerAllocated(
            case_id=self.case_id, reviewer_id=REVIEWER_IDS[reviewer], reviewer_user_id=reviewer,
            senior_reviewer_id=REVIEWER_IDS[senior], senior_reviewer_user_id=senior,
            allocated_on=date(2026, 11, 1), notified_on=date(2026, 10, 30), deadline=date(2027, 4, 30),
            review_type="initial", focused_reasons=[],
        )  # fmt: skip


async def answers(svc: RunningService, case_id: str, who: str) -> tuple[int, int]:
    """What `who` (a reviewer or senior reviewer) gets from the case and from its personal details."""
    role = "senior_reviewer" if who.startswith("sen") else "reviewer"
    headers = svc.headers(role, who)
    case = await svc.client.get(f"/cases/{case_id}", headers=headers)
    person = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "the review"}, headers=headers
    )
    return case.status_code, person.status_code


async def until(svc: RunningService, case_id: str, expected: dict[str, int]) -> None:
    """Wait for the consumer to apply the last event: then each person gets the status expected (200
    or 403) from both the case and its personal details."""

    async def settled() -> bool:
        for who, status in expected.items():
            if await answers(svc, case_id, who) != (status, status):
                return False
        return True

    await eventually(settled, timeout=60)


async def test_each_end_of_an_allocation_ends_the_reviewers_access_and_only_a_new_allocation_restores_it(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    opened = await svc.client.post(
        "/notifications", json=notification(), headers=svc.headers("partner_system")
    )
    case_id = opened.json()["case_id"]
    stream = AllocationStream(svc, kafka_bootstrap, topic_prefix, case_id)
    first, second = {"rev-1": 200, "sen-1": 200}, {"rev-2": 200, "sen-2": 200}
    none_of_them = {who: 403 for who in REVIEWER_IDS}
    assert await answers(svc, case_id, "rev-1") == (403, 403)

    await stream.publish(stream.allocated("rev-1", "sen-1"))
    await until(svc, case_id, first | {"rev-2": 403})

    # A conflict declared: the case back in the queue.
    await stream.publish(
        ConflictOfInterestDeclared(
            case_id=stream.case_id, reviewer_id=REVIEWER_IDS["rev-1"], reason=sealed("knew him")
        ),
        CaseReturnedToQueue(
            case_id=stream.case_id,
            reviewer_id=REVIEWER_IDS["rev-1"],
            reason=sealed("the reviewer declared a conflict"),
        ),
    )
    await until(svc, case_id, none_of_them)
    listed = (await svc.client.get(f"/cases/{case_id}", headers=svc.headers("lac"))).json()
    assert (listed["reviewer_user_id"], listed["senior_reviewer_user_id"]) == (None, None)

    # Allocated again, then moved to others: the first pair's access ends, the second's begins.
    await stream.publish(stream.allocated("rev-1", "sen-1"))
    await until(svc, case_id, first)
    await stream.publish(
        CaseReallocated(
            case_id=stream.case_id, from_reviewer_id=REVIEWER_IDS["rev-1"],
            to_reviewer_id=REVIEWER_IDS["rev-2"], reason=sealed("workload"),
        ),
        stream.allocated("rev-2", "sen-2"),
    )  # fmt: skip
    await until(svc, case_id, second | {"rev-1": 403, "sen-1": 403})

    # The review completed; restored when the case is reopened; the case closed.
    await stream.publish(
        AllocationEnded(case_id=stream.case_id, reviewer_id=REVIEWER_IDS["rev-2"], reason="review_completed")
    )
    await until(svc, case_id, none_of_them)
    restored = AllocationRestored(
        case_id=stream.case_id, reviewer_id=REVIEWER_IDS["rev-2"], reviewer_user_id="rev-2",
        senior_reviewer_id=REVIEWER_IDS["sen-2"], senior_reviewer_user_id="sen-2",
        restored_on=date(2026, 12, 1), reason=sealed("new evidence"),
    )  # fmt: skip
    await stream.publish(restored)
    await until(svc, case_id, second)
    await stream.publish(
        AllocationEnded(case_id=stream.case_id, reviewer_id=REVIEWER_IDS["rev-2"], reason="case_closed")
    )
    await until(svc, case_id, none_of_them)

    # Reopened and restored again, then the senior reviewer is deactivated: the case goes back to
    # the queue (the allocation service's CaseReturnedToQueue).
    await stream.publish(restored)
    await until(svc, case_id, second)
    await stream.publish(
        CaseReturnedToQueue(
            case_id=stream.case_id, reviewer_id=REVIEWER_IDS["rev-2"],
            reason=sealed("the senior reviewer sen-2 was deactivated (left)"),
        )
    )  # fmt: skip
    await until(svc, case_id, none_of_them)

    # The LAC keeps access throughout; each end is recorded, with its reason, in the case's stream.
    lac = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "checking"}, headers=svc.headers("lac")
    )
    assert lac.status_code == 200
    ended = [
        e.payload()
        for e in await svc.runtime.store.read_stream(case_id)
        if e.event_type == CaseAllocationEnded.event_type
    ]
    assert [(e.reason, e.reviewer_user_id, e.senior_reviewer_user_id) for e in ended] == [  # type: ignore[attr-defined]
        ("conflict_declared", "rev-1", "sen-1"),
        ("reallocated", "rev-1", "sen-1"),
        ("review_completed", "rev-2", "sen-2"),
        ("case_closed", "rev-2", "sen-2"),
        ("returned_to_queue", "rev-2", "sen-2"),
    ]


async def test_each_read_of_a_case_is_recorded_on_its_reads_stream_and_a_refused_one_is_not(
    svc: RunningService,
) -> None:
    opened = await svc.client.post(
        "/notifications", json=notification(), headers=svc.headers("partner_system")
    )
    case_id = opened.json()["case_id"]
    for who in ("lac-1", "lac-2"):
        assert (await svc.client.get(f"/cases/{case_id}", headers=svc.headers("lac", who))).status_code == 200
    refused = await svc.client.get(f"/cases/{case_id}", headers=svc.headers("reviewer", "rev-9"))
    assert refused.status_code == 403 and refused.json()["code"] == "not_allocated_to_caller"

    reads = await svc.runtime.store.read_stream(f"reads-{case_id}")
    assert [(e.event_type, str(e.case_id)) for e in reads] == [(CaseRead.event_type, case_id)] * 2
    assert [(e.payload().reader, e.payload().role) for e in reads] == [  # type: ignore[attr-defined]
        ("lac-1", "lac"),
        ("lac-2", "lac"),
    ]
    # The case's own stream is untouched by reads: a read never conflicts with a change.
    assert [e.event_type for e in await svc.runtime.store.read_stream(case_id)] == ["notification.CaseOpened"]


async def test_deactivating_the_senior_reviewer_in_the_allocation_service_ends_the_reviewers_access_here(
    pg_server_url: str, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    allocation_db = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(allocation_db)
    try:
        async with (
            running_service(definition, database_url, kafka_bootstrap, topic_prefix) as notify,
            running_service(allocation, allocation_db, kafka_bootstrap, topic_prefix) as alloc,
        ):
            alloc.runtime.clock = lambda: datetime.now(UTC)
            opened = await notify.client.post(
                "/notifications", json=notification(), headers=notify.headers("lac")
            )
            case_id = opened.json()["case_id"]

            async def queued() -> bool:
                response = await alloc.client.get("/allocation-queue", headers=alloc.headers("lac"))
                return case_id in [c["case_id"] for c in response.json()["cases"]]

            await eventually(queued, timeout=60)
            await allocate_to_rae_with_sam(alloc, case_id)
            await until(notify, case_id, {"rae": 200})  # rae: a reviewer
            reviewers = (await alloc.client.get("/reviewers", headers=alloc.headers("lac"))).json()
            [sam] = [r["reviewer_id"] for r in reviewers["reviewers"] if r["user_id"] == "sam"]
            gone = await alloc.client.post(
                f"/reviewers/{sam}/deactivation", headers=alloc.headers("lac"), json={"reason": "left"}
            )
            assert gone.status_code == 200, gone.text
            await until(notify, case_id, {"rae": 403})
            [ended] = [
                e.payload()
                for e in await notify.runtime.store.read_stream(case_id)
                if e.event_type == CaseAllocationEnded.event_type
            ]
            assert (ended.reason, ended.reviewer_user_id, ended.senior_reviewer_user_id) == (  # type: ignore[attr-defined]
                "returned_to_queue",
                "rae",
                "sam",
            )
    finally:
        await db.drop_database(allocation_db)
