"""The person index is written with the data key intake has just made and this process holds, in a
statement that checks the key is still the case's: a key another process rotated or destroyed meanwhile
is not trusted from memory (rotated: read again and indexed; destroyed: nothing indexed)."""

from collections.abc import AsyncIterator
from uuid import UUID

import pytest

from infra.keys import LocalKeyFile
from infra.sealing import DataKeys
from services.notification.app import definition
from services.notification.personal import keys
from services.notification.projections import PersonIndex
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def another_process() -> DataKeys:
    """The service's keys as another process of it has them: the same key file, read by another reader."""
    held = keys().keys
    assert isinstance(held, LocalKeyFile)
    return DataKeys(LocalKeyFile(held.path), "notification")


async def test_the_index_follows_the_stored_key_not_the_one_held_in_memory(svc: RunningService) -> None:
    opened = await svc.client.post(
        "/notifications", json=notification(), headers=svc.headers("partner_system")
    )
    assert opened.status_code == 201, opened.text
    case_id = UUID(opened.json()["case_id"])
    pool = svc.runtime.pool
    index = "SELECT match_kind FROM person_index WHERE case_id = $1 ORDER BY match_kind"
    assert [r["match_kind"] for r in await pool.fetch(index, case_id)] == ["name_and_dates", "nhs_number"]
    opening = (await svc.runtime.store.read_stream(str(case_id), limit=1))[0]
    held = keys().cached(str(case_id))
    assert held is not None  # intake made it here

    # Rotated by another process: the wrapping held here is not the row's; the index is still written.
    other = another_process()
    name = other.kek(str(case_id))
    await other.keys.rotate(name)
    rewrapped = await other.keys.rewrap(name, held[0])
    await pool.execute("UPDATE data_keys SET wrapped = $2 WHERE key_id = $1", str(case_id), rewrapped)
    assert keys().cached(str(case_id)) == held
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM person_index WHERE case_id = $1", case_id)
        await PersonIndex().apply(conn, opening)
    assert [r["match_kind"] for r in await pool.fetch(index, case_id)] == ["name_and_dates", "nhs_number"]

    # Destroyed by another process while this one holds the key: nothing is indexed.
    async with pool.acquire() as conn, conn.transaction():
        await other.destroy(conn, str(case_id))
    assert keys().cached(str(case_id)) is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM person_index WHERE case_id = $1", case_id)
        await PersonIndex().apply(conn, opening)
    assert await pool.fetch(index, case_id) == []
