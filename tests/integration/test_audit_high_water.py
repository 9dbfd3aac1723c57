"""A store restored from a backup is fenced even when its own topic forgot what it lost (issue 20).

The store's first comparison is with its topic's last records (test_store_fencing.py). A topic can lose
them: a broker rebuilt empty, a quiet topic whose records passed their retention. The audit log holds
every event it was sent, and publishes on its topic how far it has logged each service
(services.audit.highwater); a store below that mark is fenced until the lost events are back."""

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest

from events import Actor
from events.allocation import ReviewerRegistered
from events.audit import LogHighWaterMarked
from events.topics import service_topic
from infra import db, fencing
from infra.eventstore import Context, EventStore
from infra.memory_store import MemoryEventStore
from infra.settings import database_url_for
from infra.signing import verifier_from_env
from services.audit.app import definition as audit_service
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw

CTX = Context(actor=Actor(kind="user", id="lac.alex", role="lac"))


@pytest.fixture
async def audit(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningService]:
    monkeypatch.setenv("LEDER_AUDIT_HIGH_WATER_SECONDS", "0.2")
    url = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(url)
    try:
        async with running_service(audit_service, url, kafka_bootstrap, topic_prefix) as running:
            yield running
    finally:
        await db.drop_database(url)


async def registrations(count: int) -> list[str]:
    """The allocation service's first `count` events, as its store numbered and published them."""
    history = MemoryEventStore("allocation")
    for i in range(count):
        registered = ReviewerRegistered(
            reviewer_id=UUID(int=i + 1), user_id=f"rae{i}", name=f"Rae {i}",
            organisations=["Sirona Care"], senior=False, capacity=5,
        )  # fmt: skip
        await history.append(f"reviewer-{i}", 0, [registered], CTX)
    return [r.envelope for r in await history.read_after(0)]


async def test_a_store_behind_the_audit_logs_high_water_mark_is_fenced_when_its_topic_holds_nothing(
    audit: RunningService, store: EventStore, kafka_bootstrap: str, topic_prefix: str
) -> None:
    published = await registrations(3)
    await publish_raw(
        kafka_bootstrap,
        service_topic("allocation", topic_prefix),
        [(None, text.encode()) for text in published],
    )
    audit_topic = service_topic("audit", topic_prefix)
    verifier = verifier_from_env(topic_prefix)

    async def marked() -> dict[str, int]:
        return await fencing.audit_high_water(kafka_bootstrap, audit_topic, verifier)

    async def logged_all() -> dict[str, int] | None:
        marks = await marked()
        return marks if marks.get("allocation") == 3 else None

    assert await eventually(logged_all) == {"allocation": 3}
    # Later records of the audit topic, none of them marks, as a busy audit log publishes (reads of
    # the log): the marks are found further back, and an unsigned mark (a forger's) is passed over.
    busy = [(None, b'{"not": "a mark"}')] * 700
    await publish_raw(kafka_bootstrap, audit_topic, busy, headers=[("event_type", b"audit.AuditLogRead")])
    forged = await MemoryEventStore("audit").append(
        "audit-forged", 0, [LogHighWaterMarked(highest={"allocation": 99}, log_size=99)], CTX
    )
    await publish_raw(
        kafka_bootstrap,
        audit_topic,
        [(None, forged[0].canonical())],
        headers=[("event_type", LogHighWaterMarked.event_type.encode())],
    )
    assert await marked() == {"allocation": 3}

    # The allocation service's store, restored from a backup taken before its first event; its own
    # topic (here one that never held anything) says nothing.
    restored = EventStore(store.pool, "allocation")
    guard = fencing.StoreGuard(
        restored, kafka_bootstrap, f"{topic_prefix}forgotten", verifier, audit_topic=audit_topic
    )
    await guard.open()
    await guard.check()
    assert guard.behind is not None
    assert "behind the audit log" in guard.behind and "to sequence 0, the audit log to 3" in guard.behind
    assert restored.fenced_because == guard.behind and not guard.clear.is_set()

    async with restored.transaction() as tx:  # what `leder recover` does
        await restored.restore(tx, published)
    await guard.check()
    assert guard.readiness() == {"ok": True, "compared": True, "reason": None}
