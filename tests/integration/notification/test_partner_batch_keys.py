"""The partner consumer's batch makes each new case's data key without an fsync of its own and syncs
them all once, before the batch's transaction commits: a key is durable in the key manager before
the row that holds its wrapping is."""

import json
from pathlib import Path
from uuid import UUID

from events.topics import partner_topic
from infra import sealing
from infra.inbox import Delivery
from infra.keys import LocalKeyFile
from infra.sealing import DataKeys
from infra.service import open_store
from infra.settings import Settings
from leder.people import NewPeople
from services.notification.app import definition
from services.notification.consumers import partner_notifications


async def test_a_batchs_keys_are_synced_once_before_it_commits(database_url: str, tmp_path: Path) -> None:
    store = await open_store(definition, Settings("notification", database_url, "", "", 0))
    keys = LocalKeyFile(tmp_path / "notification.keys")
    previous = sealing.install(DataKeys(keys, "notification"))
    seen: list[tuple[int, int]] = []  # at each sync: keys in the file, committed data key rows
    real_sync = keys.sync

    async def sync() -> None:
        in_file = len(await LocalKeyFile(keys.path).names())
        committed = await store.pool.fetchval("SELECT count(*) FROM data_keys")
        seen.append((in_file, committed))
        await real_sync()

    keys.sync = sync  # type: ignore[method-assign]
    try:
        people = NewPeople(400_500_000)
        bodies = [people.notification() for _ in range(3)]
        batch = [
            (json.dumps(b).encode(), Delivery(partner_topic(), 0, n, b["notification_id"].encode(), {}))
            for n, b in enumerate(bodies)
        ]
        assert await partner_notifications(store, partner_topic()).handle_batch(batch) == {}
        assert seen == [(3, 0)]  # once, the three keys written, none of their rows committed yet
        cases = await store.pool.fetch("SELECT case_id FROM notifications ORDER BY received_at")
        assert len(cases) == 3
        for row in cases:
            assert await store.pool.fetchval(
                "SELECT wrapped IS NOT NULL FROM data_keys WHERE key_id = $1", str(UUID(str(row["case_id"])))
            )
    finally:
        sealing.install(previous, "notification")
        await store.pool.close()
