"""What never became a LeDeR case has its own, short retention: a child's death referred to the CDOP,
a notification not eligible, a case found not eligible and a partner notification refused to the DLQ
(sealed there under a key of its own) are shredded when it ends, like a case; an open case is not."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events import Actor
from events.notification import NotificationPersonalDataDestroyed, PersonalDataDestroyed
from events.sealing import Sealed
from events.topics import all_topics, dlq, partner_topic
from infra import kafka
from infra.eventstore import Context
from services.notification import handlers
from services.notification.app import definition
from tests.support.notifications import born_and_died, notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import publish_raw, read_topic

RETENTION_DAYS = 90
SWEEP = Context(Actor.system("retention"))


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


async def notify(svc: RunningService, body: dict[str, Any]) -> dict[str, Any]:
    response = await svc.client.post("/notifications", json=body, headers=svc.headers("partner_system"))
    assert response.status_code == 201, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


async def test_what_never_became_a_case_is_shredded_when_its_short_retention_ends(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    cdop = born_and_died(date(2010, 3, 1), date(2026, 10, 3))
    assert (await notify(svc, cdop))["outcome"] == "referred_to_cdop"
    not_eligible = notification(**{"person.learning_disability": False, "person.autism": False})
    assert (await notify(svc, not_eligible))["outcome"] == "not_eligible"
    to_confirm = notification(**{"person.learning_disability": None, "person.autism": None})
    rejected = (await notify(svc, to_confirm))["case_id"]
    decided = await svc.client.post(
        f"/cases/{rejected}/eligibility",
        json={"decision": "reject", "reason": "no diagnosis found in the records"},
        headers=svc.headers("lac"),
    )
    assert decided.status_code == 200, decided.text
    kept = (await notify(svc, notification()))["case_id"]

    # A notification the partner topic refuses: the DLQ has it sealed, the reason in clear.
    refused = notification(**{"person.nhs_number": "9434765918"})
    topic = partner_topic(topic_prefix)
    await publish_raw(kafka_bootstrap, topic, [(b"k", json.dumps(refused).encode())])
    [dead] = await read_topic(kafka_bootstrap, dlq(topic), at_least=1, timeout=60)
    assert b"O'Brien" not in dead.value and b"9434765918" not in dead.value
    sealed = Sealed.model_validate_json(dead.value)
    async with svc.runtime.pool.acquire() as conn:
        assert json.loads(await svc.runtime.keys.open_bytes(conn, sealed) or b"") == refused
    assert json.loads(dict(dead.headers)["dlq_reason"])[0]["field"] == "person.nhs_number"

    store = svc.runtime.store
    now = datetime.now(UTC)
    nothing = await handlers.destroy_expired_non_cases(store, RETENTION_DAYS, now, SWEEP)
    assert nothing == handlers.NonCaseDestroyed()

    later = now + timedelta(days=RETENTION_DAYS, minutes=1)
    done = await handlers.destroy_expired_non_cases(store, RETENTION_DAYS, later, SWEEP)
    assert done.cases == [UUID(rejected)]
    assert sorted(done.notifications) == sorted(UUID(b["notification_id"]) for b in (cdop, not_eligible))
    assert done.dead_letters == [sealed.key_id]

    # Each recorded on its own stream, then its key destroyed: nothing of them can be opened.
    for body in (cdop, not_eligible):
        [destroyed] = [
            e.payload()
            for e in await store.read_stream(f"notification-{body['notification_id']}")
            if e.event_type == NotificationPersonalDataDestroyed.event_type
        ]
        assert destroyed == NotificationPersonalDataDestroyed(
            notification_id=UUID(body["notification_id"]),
            reason="retention_period_ended",
            retention_days=RETENTION_DAYS,
        )
    [case_destroyed] = [
        e.payload()
        for e in await store.read_stream(rejected)
        if e.event_type == PersonalDataDestroyed.event_type
    ]
    assert case_destroyed.retention_days == RETENTION_DAYS  # type: ignore[attr-defined]
    live = await store.pool.fetch("SELECT key_id FROM data_keys WHERE destroyed_at IS NULL")
    assert [r["key_id"] for r in live] == [kept]
    async with svc.runtime.pool.acquire() as conn:
        assert await svc.runtime.keys.open_bytes(conn, sealed) is None
    gone = await svc.client.get(
        f"/cases/{rejected}/person", params={"reason": "checking"}, headers=svc.headers("lac")
    )
    assert gone.status_code == 410
    shown = await svc.client.get(
        f"/cases/{kept}/person", params={"reason": "review"}, headers=svc.headers("lac")
    )
    assert shown.status_code == 200

    # Swept again: nothing more.
    again = await handlers.destroy_expired_non_cases(store, RETENTION_DAYS, later, SWEEP)
    assert again == handlers.NonCaseDestroyed()


async def test_the_partner_topic_and_its_dlq_are_made_with_a_retention_and_no_other_topic_is(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDER_PARTNER_TOPIC_RETENTION_DAYS", "3")
    prefix = f"t{uuid4().hex[:8]}."
    await kafka.ensure_topics(kafka_bootstrap, all_topics(prefix), partitions=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in all_topics(prefix)]
        )
    finally:
        await admin.close()
    retention = {}
    for response in described:
        for _code, _message, _kind, topic, entries in response.resources:
            retention[topic] = next((value for name, value, *_ in entries if name == "retention.ms"), None)
    three_days = str(3 * 86_400_000)
    partner = {partner_topic(prefix), dlq(partner_topic(prefix))}
    assert {t: retention[t] for t in partner} == dict.fromkeys(partner, three_days)
    # Every other topic keeps the broker's default (tansu names none; Kafka its own log.retention).
    assert three_days not in {retention[t] for t in set(all_topics(prefix)) - partner}
