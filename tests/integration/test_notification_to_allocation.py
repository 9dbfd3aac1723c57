"""Two services, one broker: a death notified to the notification service reaches the allocation
queue, and the allocation it gets lets the reviewer see the person's details."""

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from infra import db
from infra.settings import database_url_for
from services.allocation.app import definition as allocation
from services.notification.app import definition as notification_service
from tests.support.allocating import allocate_to_rae_with_sam
from tests.support.notifications import notification
from tests.support.service import running_service
from tests.support.waiting import eventually


async def test_a_notified_case_is_queued_allocated_and_then_visible_to_its_reviewer(
    pg_server_url: str, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    allocation_db = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(allocation_db)
    try:
        async with (
            running_service(notification_service, database_url, kafka_bootstrap, topic_prefix) as notify,
            running_service(allocation, allocation_db, kafka_bootstrap, topic_prefix) as alloc,
        ):
            alloc.runtime.clock = lambda: datetime.now(UTC)
            opened = await notify.client.post(
                "/notifications", json=notification(), headers=notify.headers("lac")
            )
            case_id = opened.json()["case_id"]

            async def queued() -> list[str]:
                response = await alloc.client.get("/allocation-queue", headers=alloc.headers("lac"))
                return [c["case_id"] for c in response.json()["cases"]]

            assert await eventually(queued, timeout=60) == [case_id]
            await allocate_to_rae_with_sam(alloc, case_id)

            async def reviewer_sees_the_person() -> bool:
                response = await notify.client.get(
                    f"/cases/{case_id}/person",
                    params={"reason": "the review"},
                    headers=notify.headers("reviewer", "rae"),
                )
                return response.status_code == 200

            await eventually(reviewer_sees_the_person, timeout=60)
            case = (await notify.client.get(f"/cases/{case_id}", headers=notify.headers("lac"))).json()
            assert (case["reviewer_user_id"], case["senior_reviewer_user_id"]) == ("rae", "sam")
    finally:
        await db.drop_database(allocation_db)


async def test_a_case_opened_when_eligibility_is_confirmed_counts_from_when_the_death_was_notified(
    pg_server_url: str, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    allocation_db = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(allocation_db)
    notified, confirmed = datetime(2026, 3, 2, 10, tzinfo=UTC), datetime(2026, 4, 20, 15, tzinfo=UTC)
    try:
        async with (
            running_service(notification_service, database_url, kafka_bootstrap, topic_prefix) as notify,
            running_service(allocation, allocation_db, kafka_bootstrap, topic_prefix) as alloc,
        ):
            notify.runtime.store.clock = lambda: notified
            alloc.runtime.clock = lambda: confirmed
            waiting = await notify.client.post(
                "/notifications",
                json=notification(**{"person.learning_disability": None}),
                headers=notify.headers("lac"),
            )
            assert waiting.json()["outcome"] == "eligibility_to_confirm", waiting.text
            case_id = waiting.json()["case_id"]
            notify.runtime.store.clock = lambda: confirmed
            decided = await notify.client.post(
                f"/cases/{case_id}/eligibility",
                json={"decision": "confirm", "learning_disability": True},
                headers=notify.headers("lac"),
            )
            assert decided.status_code == 200, decided.text
            assert decided.json()["case"]["notified_on"] == "2026-03-02"
            opened = [
                e
                for e in await notify.runtime.store.read_stream(case_id)
                if e.event_type.endswith("CaseOpened")
            ]
            assert [e.data["notified_on"] for e in opened] == ["2026-03-02"]

            async def queued() -> list[dict[str, Any]]:
                response = await alloc.client.get("/allocation-queue", headers=alloc.headers("lac"))
                return response.json()["cases"]  # type: ignore[no-any-return]

            [case] = await eventually(queued, timeout=60)
            assert (case["case_id"], case["notified_on"], case["deadline"], case["days_waiting"]) == (
                case_id,
                "2026-03-02",
                "2026-09-02",
                49,
            )
    finally:
        await db.drop_database(allocation_db)
