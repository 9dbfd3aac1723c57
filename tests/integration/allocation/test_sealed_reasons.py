"""The free text about a case is sealed under the allocation service's own key for it: never in clear
in its events, read models or topic; opened for the LAC; gone with the key when the case's retention
ends (notification.PersonalDataDestroyed)."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.allocation import CasePersonalDataDestroyed, CaseReallocated, ConflictOfInterestDeclared
from events.notification import PersonalDataDestroyed
from events.topics import service_topic
from services.allocation.app import definition
from tests.integration.allocation.test_allocation_service import allocate, open_cases, queue, register
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)
# Distinctive words each reason carries, to search every copy for.
CONFLICT = "Priscilla Vandermeer-Oyelaran is my cousin"
REALLOCATION = "Mr Thaddeus Quillfeather asked for another reviewer"


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: NOW
        yield running


def destroyed_envelope(case_id: UUID) -> Envelope:
    payload = PersonalDataDestroyed(case_id=case_id, reason="retention_period_ended", retention_years=8)
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=1,
        stream_id=str(case_id),
        case_id=case_id,
        stream_version=2,  # the notification stream's next event after CaseOpened
        source="notification",
        source_sequence=2,
        occurred_at=NOW,
        recorded_at=NOW,
        actor=Actor.system("notification"),
        correlation_id="c",
        data=payload.model_dump(mode="json"),
    )


async def stored_text(svc: RunningService) -> str:
    """Every row of every table of the service, as text: its events and read models."""
    async with svc.runtime.store.pool.acquire() as conn:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
        return " ".join(
            [
                await conn.fetchval(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM \"{name}\" t")
                for name in (r["table_name"] for r in tables)
            ]
        )


async def test_reasons_are_sealed_opened_for_the_lac_and_gone_with_the_cases_key(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    [case_id] = await open_cases(svc, kafka_bootstrap, topic_prefix, 5)
    rae, ria, zeb = await register(svc, "Rae"), await register(svc, "Ria"), await register(svc, "Zebedee")
    sam = await register(svc, "Sam", senior=True)
    assert (await allocate(svc, case_id, rae, sam)).status_code == 201
    declared = await svc.client.post(
        f"/cases/{case_id}/conflict-declaration",
        headers=svc.headers("reviewer", "rae"),
        json={"reason": CONFLICT},
    )
    assert declared.status_code == 200, declared.text
    assert (await allocate(svc, case_id, ria, sam)).status_code == 201
    moved = await svc.client.post(
        f"/cases/{case_id}/reallocation",
        headers=svc.headers("lac"),
        json={"reviewer_id": zeb, "senior_reviewer_id": sam, "reason": REALLOCATION},
    )
    assert moved.status_code == 200, moved.text
    gone = await svc.client.post(
        f"/reviewers/{zeb}/deactivation", headers=svc.headers("lac"), json={"reason": "left the team"}
    )
    assert gone.status_code == 200, gone.text

    # The LAC reads why the case came back, opened.
    [waiting] = await queue(svc)
    assert waiting["returned_because"] == "the reviewer Zebedee was deactivated (left the team)"

    # Sealed under the case's key everywhere the service keeps or sends it.
    stored = await stored_text(svc)
    for text in (CONFLICT, REALLOCATION, "was deactivated", "declared a conflict"):
        assert text not in stored, text
    records = await read_topic(kafka_bootstrap, service_topic("allocation", topic_prefix), at_least=13)
    published = b" ".join(r.value for r in records if r.value is not None)
    assert b"CaseReallocated" in published
    for text in (CONFLICT, REALLOCATION, "was deactivated", "declared a conflict"):
        assert text.encode() not in published, text
    history = [e.payload() for e in await svc.runtime.store.read_stream(case_id)]
    [conflict] = [e for e in history if isinstance(e, ConflictOfInterestDeclared)]
    [reallocated] = [e for e in history if isinstance(e, CaseReallocated)]
    assert conflict.reason.key_id == reallocated.reason.key_id == case_id
    async with svc.runtime.store.pool.acquire() as conn:
        keys = svc.runtime.keys
        assert await keys.open_text(conn, conflict.reason) == CONFLICT
        assert await keys.open_text(conn, reallocated.reason) == REALLOCATION

    # The case's retention ends: the service destroys its key, saying so, and the reasons open no more.
    await publish_raw(
        kafka_bootstrap,
        service_topic("notification", topic_prefix),
        [(e.kafka_key, e.canonical()) for e in [destroyed_envelope(UUID(case_id))]],
    )

    async def destroyed() -> list[Envelope]:
        found = [
            e for e in await svc.runtime.store.read_stream(case_id) if e.event_type.endswith("Destroyed")
        ]
        return found

    [recorded] = await eventually(destroyed, timeout=60)
    assert recorded.payload() == CasePersonalDataDestroyed(
        case_id=UUID(case_id), reason="retention_period_ended"
    )
    async with svc.runtime.store.pool.acquire() as conn:
        key = await conn.fetchrow("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = $1", case_id)
        assert key is not None and key["wrapped"] is None and key["destroyed_at"] is not None
        for sealed in (conflict.reason, reallocated.reason):
            assert await svc.runtime.keys.open_text(conn, sealed) is None
    [waiting] = await queue(svc)
    assert waiting["returned_because"] is None
