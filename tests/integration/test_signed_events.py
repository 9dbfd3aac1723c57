"""Signed events (issue 16, item 1): anyone who can write to the broker is no longer any service.

A forged `allocation.ReviewerAllocated` naming mallory, on the allocation topic, once gave mallory a
case's personal details and its review; a forged `source_sequence` of 90000 left the audit log with a
gap for good. Each forgery here (unsigned, signed with a key no one pinned, signed with another
service's key) is dead-lettered with its reason by every consumer, and changes nothing; the genuine
event of the same stream and version, after it, is applied."""

import io
import json
import os
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import Actor, Envelope, EventPayload
from events.allocation import ReviewerAllocated, ReviewerRegistered
from events.topics import dlq, service_topic
from infra import db, signing
from infra.settings import database_url_for
from infra.signing import EventVerifier, PinnedKeys, Signer
from services.allocation.domain import review_deadline
from services.audit.app import definition as audit_service
from services.notification.app import definition as notification_service
from services.review.app import definition as review_service
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.signing import signer
from tests.support.waiting import eventually, publish_raw, read_topic

NOTIFIED = date(2026, 10, 1)
# A case that is not the caller's: 403 (or 404, the same answer as for a case that does not exist).
REFUSED = {403, 404}
STRANGER = Signer("allocation", Ed25519PrivateKey.generate())  # a key no one pinned


def envelope(
    source: str, stream_id: str, payload: EventPayload, version: int, case_id: UUID | None, sequence: int = 0
) -> Envelope:
    """`sequence`: the source's sequence number; by default the stream's version."""
    now = datetime.now(UTC)
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=payload.schema_version,
        stream_id=stream_id,
        case_id=case_id,
        stream_version=version,
        source=source,
        source_sequence=sequence or version,
        occurred_at=now,
        recorded_at=now,
        actor=Actor.system(source),
        correlation_id=str(uuid4()),
        data=payload.model_dump(mode="json"),
    )


def allocated(case_id: UUID, reviewer: str) -> ReviewerAllocated:
    return ReviewerAllocated(
        case_id=case_id,
        reviewer_id=uuid4(),
        reviewer_user_id=reviewer,
        senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="sam",
        allocated_on=date(2026, 10, 2),
        notified_on=NOTIFIED,
        deadline=review_deadline(NOTIFIED),
        review_type="initial",
        focused_reasons=[],
    )


def forgeries(topic: str, value: bytes) -> dict[str, list[tuple[str, bytes]]]:
    """The reason each forgery is refused for -> the headers it is published with."""
    return {
        "signature_missing": [],
        "unknown_signing_key": STRANGER.headers(topic, value),
        "signing_key_of_another_service": signer("review").headers(topic, value),
    }


async def dead_letters(
    bootstrap: str, topic: str, groups: list[str], reasons: list[str]
) -> list[ConsumerRecord]:
    """Until each group has dead-lettered one record for each reason; those records."""
    wanted = {(group, reason) for group in groups for reason in reasons}

    def key(record: ConsumerRecord) -> tuple[str, str]:
        headers = {k: v.decode() for k, v in record.headers}
        [reason] = json.loads(headers["dlq_reason"])
        assert reason["field"] == signing.SIGNATURE_HEADER, reason
        return headers["dlq_group"], reason["type"]

    records = await read_topic(bootstrap, dlq(topic), at_least=len(wanted), timeout=60)
    assert sorted(key(r) for r in records) == sorted(wanted)
    return records


@pytest.fixture
async def notification_and_review(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[tuple[RunningService, RunningService]]:
    urls = [database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}") for _ in range(2)]
    for url in urls:
        await db.ensure_database(url)
    try:
        async with (
            running_service(notification_service, urls[0], kafka_bootstrap, topic_prefix) as notifications,
            running_service(review_service, urls[1], kafka_bootstrap, topic_prefix) as reviews,
        ):
            yield notifications, reviews
    finally:
        for url in urls:
            await db.drop_database(url)


async def test_a_forged_reviewer_allocation_is_dead_lettered_with_its_reason_and_grants_mallory_nothing(
    notification_and_review: tuple[RunningService, RunningService], kafka_bootstrap: str, topic_prefix: str
) -> None:
    notifications, reviews = notification_and_review
    opened = await notifications.client.post(
        "/notifications", json=notification(), headers=notifications.headers("partner_system")
    )
    case_id = UUID(opened.json()["case_id"])
    topic = service_topic("allocation", topic_prefix)
    # Version 1 of the case's allocation stream, as the allocation service's first event would be.
    forged = envelope("allocation", str(case_id), allocated(case_id, "mallory"), 1, case_id)
    value = forged.canonical()
    for headers in forgeries(topic, value).values():
        await publish_raw(kafka_bootstrap, topic, [(forged.kafka_key, value)], headers=headers)

    groups = [f"{topic_prefix}leder.{service}.allocation-events" for service in ("notification", "review")]
    records = await dead_letters(kafka_bootstrap, topic, groups, list(forgeries(topic, value)))
    assert all(r.value == value for r in records)  # the forged bytes, kept as they came

    async def mallorys() -> tuple[int, int, int]:
        person = await notifications.client.get(
            f"/cases/{case_id}/person",
            params={"reason": "the review"},
            headers=notifications.headers("reviewer", "mallory"),
        )
        case = await notifications.client.get(
            f"/cases/{case_id}", headers=notifications.headers("reviewer", "mallory")
        )
        review = await reviews.client.get(
            f"/reviews/{case_id}", headers=reviews.headers("reviewer", "mallory")
        )
        return person.status_code, case.status_code, review.status_code

    # Every forgery was handled (dead-lettered) before this: mallory has nothing.
    assert set(await mallorys()) <= REFUSED

    # The allocation service's genuine event, of the same stream and version: the forgeries took no
    # place in the stream, so it is applied, and rae (not mallory) may read.
    genuine = envelope("allocation", str(case_id), allocated(case_id, "rae"), 1, case_id)
    await publish_raw(kafka_bootstrap, topic, [(genuine.kafka_key, genuine.canonical())])

    async def rae_reads() -> bool:
        person = await notifications.client.get(
            f"/cases/{case_id}/person",
            params={"reason": "the review"},
            headers=notifications.headers("reviewer", "rae"),
        )
        review = await reviews.client.get(f"/reviews/{case_id}", headers=reviews.headers("reviewer", "rae"))
        return person.status_code == 200 and review.status_code == 200

    await eventually(rae_reads, timeout=60)
    assert set(await mallorys()) <= REFUSED


@pytest.fixture
async def audit(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(audit_service, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def registered(n: int) -> ReviewerRegistered:
    return ReviewerRegistered(
        reviewer_id=uuid4(),
        user_id=f"reviewer-{n}",
        name=f"Reviewer {n}",
        organisations=["Sirona Care"],
        senior=False,
        capacity=5,
    )


async def logged(audit: RunningService, event_id: UUID) -> bool:
    return bool(await audit.runtime.pool.fetchval("SELECT 1 FROM audit_log WHERE event_id = $1", event_id))


async def until_logged(audit: RunningService, event_id: UUID) -> None:
    async def check() -> bool:
        return await logged(audit, event_id)

    await eventually(check, timeout=60)


async def test_a_forged_source_sequence_of_90000_leaves_no_gap_and_each_entry_keeps_its_signature(
    audit: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = service_topic("allocation", topic_prefix)
    forged = envelope("allocation", f"reviewer-{uuid4()}", registered(0), 90_000, None)
    value = forged.canonical()
    for headers in forgeries(topic, value).values():
        await publish_raw(kafka_bootstrap, topic, [(forged.kafka_key, value)], headers=headers)
    case_id = uuid4()  # (a registration names no case; this one does, for the case's history below)
    genuine = envelope("allocation", f"reviewer-{uuid4()}", registered(1), 1, case_id)
    await publish_raw(kafka_bootstrap, topic, [(genuine.kafka_key, genuine.canonical())])

    await dead_letters(
        kafka_bootstrap,
        topic,
        [f"{topic_prefix}leder.audit.allocation-events"],
        list(forgeries(topic, value)),
    )
    await until_logged(audit, genuine.event_id)
    assert not await logged(audit, forged.event_id)
    ig = audit.headers("ig_officer")
    assert (await audit.client.get("/audit/gaps", headers=ig)).json()["gaps"] == {}
    ready = await audit.client.get("/readyz")
    assert ready.json()["checks"]["gaps"] == {"ok": True, "open": {}}, ready.json()

    # The entry keeps the signature it came with: a third party, given the pinned public keys, checks
    # that the allocation service published exactly these logged bytes on that topic.
    row = await audit.runtime.pool.fetchrow(
        "SELECT envelope, event_signature, event_key_id, event_topic FROM audit_log WHERE event_id = $1",
        genuine.event_id,
    )
    assert row is not None
    assert row["event_key_id"] == signer("allocation").key_id and row["event_topic"] == topic
    stored = {signing.SIGNATURE_HEADER: row["event_signature"], signing.KEY_ID_HEADER: row["event_key_id"]}
    EventVerifier(PinnedKeys.from_env(), topic_prefix).check(
        row["event_topic"], row["envelope"].encode(), stored
    )
    history = await audit.client.get(f"/audit/cases/{case_id}/history", headers=ig)
    [entry] = history.json()["entries"]
    assert (entry["signature"], entry["signing_key_id"], entry["signed_topic"]) == (
        row["event_signature"],
        row["event_key_id"],
        topic,
    )
    # The case's export, what a third party is given, carries it beside the entry's inclusion proof.
    exported = await audit.client.get(f"/audit/cases/{case_id}/export", headers=ig)
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        lines = archive.read(f"{case_id}.jsonl").decode().splitlines()
    [line] = [record for record in map(json.loads, lines) if record["envelope"] == row["envelope"]]
    assert line["event_signature"] == {
        "algorithm": "Ed25519",
        "signature": row["event_signature"],
        "key_id": row["event_key_id"],
        "topic": topic,
    }


@pytest.fixture
def rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Signer, Signer]:
    """The allocation service's key was rotated: the new one (the session's) signs now, the older one
    is still pinned (for what it signed), and a key retired before it is no longer pinned."""
    pinned = tmp_path / "public-keys.json"
    pinned.write_text(Path(os.environ[signing.PUBLIC_KEYS_ENV]).read_text())
    older = Signer("allocation", Ed25519PrivateKey.generate())
    retired = Signer("allocation", Ed25519PrivateKey.generate())
    signing.add_to_key_set(pinned, "allocation", older.private_key.public_key())
    monkeypatch.setenv(signing.PUBLIC_KEYS_ENV, str(pinned))
    return older, retired


async def test_rotation_a_record_signed_with_an_older_pinned_key_verifies_and_one_no_longer_pinned_is_refused(
    rotated: tuple[Signer, Signer], database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    older, retired = rotated
    topic = service_topic("allocation", topic_prefix)
    by = {"older": older, "current": signer("allocation"), "retired": retired}
    sent = {
        name: envelope("allocation", f"reviewer-{uuid4()}", registered(n), 1, None, n + 1)
        for n, name in enumerate(by)
    }
    async with running_service(audit_service, database_url, kafka_bootstrap, topic_prefix) as audit:
        for name, key in by.items():
            message = sent[name]
            value = message.canonical()
            await publish_raw(
                kafka_bootstrap, topic, [(message.kafka_key, value)], headers=key.headers(topic, value)
            )
        for name in ("older", "current"):
            await until_logged(audit, sent[name].event_id)
        [dead] = await dead_letters(
            kafka_bootstrap, topic, [f"{topic_prefix}leder.audit.allocation-events"], ["unknown_signing_key"]
        )
        assert dead.value == sent["retired"].canonical()
        assert not await logged(audit, sent["retired"].event_id)
        kept = await audit.runtime.pool.fetchval(
            "SELECT event_key_id FROM audit_log WHERE event_id = $1", sent["older"].event_id
        )
        assert kept == older.key_id
