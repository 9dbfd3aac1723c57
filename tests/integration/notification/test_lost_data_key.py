"""A case whose data key is not in the service's database (made after the backup a database was
restored from, and not recovered): its personal details cannot be opened, and the service says so
with problem details instead of failing, recording no view it did not give."""

from collections.abc import AsyncIterator

import pytest

from services.notification.app import definition
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


async def test_personal_details_under_a_lost_key_answer_410_and_record_no_view(svc: RunningService) -> None:
    opened = await svc.client.post(
        "/notifications", json=notification(), headers=svc.headers("partner_system")
    )
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    await svc.runtime.pool.execute("DELETE FROM data_keys WHERE key_id = $1", case_id)
    views = "SELECT count(*) FROM events WHERE event_type = 'notification.PersonalDetailsViewed'"
    before = await svc.runtime.pool.fetchval(views)

    answer = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "after a restore"}, headers=svc.headers("lac")
    )

    assert answer.status_code == 410, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == "personal_data_unavailable"
    assert await svc.runtime.pool.fetchval(views) == before
