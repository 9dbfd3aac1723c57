"""A fork is an alarm, never a duplicate (issue 20, third part).

A source that publishes two different events at one place of its history (a store restored from a
backup reusing its sequence numbers, or its signing key in other hands) once had every consumer drop
the second as a duplicate, and the audit service retry it forever against its unique source sequence.
Here a different event is published, signed as the allocation service, at a stream version and a
source sequence the consumers hold: the review service and the audit service each dead-letter it as a
fork naming both events, say so on /readyz until an operator acknowledges it, the audit service lists
it on /audit/forks and `leder audit forks`, later events are applied, and the same event delivered
again is still a quiet duplicate. Reconciliation compares by hash: a feed that says something else at
a logged sequence is reported as a fork."""

import argparse
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from aiokafka import ConsumerRecord

from events import Actor, Envelope
from events.allocation import ReviewerRegistered
from events.topics import dlq, service_topic
from infra import db
from infra.inbox import content_hash
from infra.settings import database_url_for
from services.audit import cli
from services.audit.app import definition as audit_service
from services.audit.reconcile import BadRecord, reconcile
from services.review.app import definition as review_service
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

SOURCE = "allocation"


def registration(
    stream: str, version: int, sequence: int, name: str, event_id: UUID | None = None, user_id: str = "rae"
) -> Envelope:
    """An allocation service's ReviewerRegistered (of the user `rae` unless told), as its store would
    number it."""
    now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    payload = ReviewerRegistered(
        reviewer_id=UUID(int=1),
        user_id=user_id,
        name=name,
        organisations=["Sirona Care"],
        senior=False,
        capacity=5,
    )
    return Envelope(
        event_id=event_id or uuid4(),
        event_type=payload.event_type,
        schema_version=payload.schema_version,
        stream_id=stream,
        case_id=None,
        stream_version=version,
        source=SOURCE,
        source_sequence=sequence,
        occurred_at=now,
        recorded_at=now,
        actor=Actor.system(SOURCE),
        correlation_id=str(uuid4()),
        data=payload.model_dump(mode="json"),
    )


@pytest.fixture
async def review_and_audit(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[tuple[RunningService, RunningService]]:
    urls = [database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}") for _ in range(2)]
    for url in urls:
        await db.ensure_database(url)
    try:
        async with (
            running_service(review_service, urls[0], kafka_bootstrap, topic_prefix) as review,
            running_service(audit_service, urls[1], kafka_bootstrap, topic_prefix) as audit,
        ):
            yield review, audit
    finally:
        for url in urls:
            await db.drop_database(url)


async def publish(bootstrap: str, topic: str, *envelopes: Envelope) -> None:
    """Signed with the allocation service's key, as its relay would (tests/support/signing.py)."""
    await publish_raw(bootstrap, topic, [(e.kafka_key, e.canonical()) for e in envelopes])


def fork_reasons(records: list[ConsumerRecord]) -> list[tuple[str, str, str | None, str]]:
    """Each dead letter's (group, reason type, the held event id, the other event's hash)."""
    out = []
    for record in records:
        headers = {k: v.decode() for k, v in record.headers}
        [reason] = json.loads(headers["dlq_reason"])
        out.append(
            (headers["dlq_group"], reason["type"], reason.get("held_event_id"), reason.get("other_hash"))
        )
    return sorted(out, key=lambda r: (r[0], r[3]))


async def name_in_review(review: RunningService) -> str | None:
    name: str | None = await review.runtime.pool.fetchval(
        "SELECT name FROM reviewer_names WHERE user_id = 'rae'"
    )
    return name


async def logged(audit: RunningService) -> list[tuple[int, str]]:
    rows = await audit.runtime.pool.fetch(
        "SELECT source_sequence, event_id FROM audit_log WHERE source = $1 ORDER BY source_sequence", SOURCE
    )
    return [(r["source_sequence"], str(r["event_id"])) for r in rows]


async def test_a_different_event_at_a_held_version_and_sequence_is_an_alarm_in_every_consumer(
    review_and_audit: tuple[RunningService, RunningService], kafka_bootstrap: str, topic_prefix: str
) -> None:
    review, audit = review_and_audit
    topic = service_topic(SOURCE, topic_prefix)
    stream = f"reviewer-{uuid4()}"
    genuine = registration(stream, 1, 1, "Rae Original")
    await publish(kafka_bootstrap, topic, genuine)

    async def genuine_applied() -> bool:
        return await name_in_review(review) == "Rae Original" and await logged(audit) == [
            (1, str(genuine.event_id))
        ]

    await eventually(genuine_applied, timeout=60)
    for service in (review, audit):
        assert (await service.client.get("/readyz")).json()["checks"]["forks"] == {"ok": True, "open": []}

    # Three forks of the allocation service's history:
    # - another event (a new id) at the stream version and the source sequence held;
    # - the same event id with other bytes (the name edited, re-signed);
    # - another event at the source sequence held, of another stream (as a restored store numbers its
    #   new events): only the audit log, which keeps each source's sequence, can see that one.
    other_id = registration(stream, 1, 1, "Rae Forged")
    other_bytes = registration(stream, 1, 1, "Rae Edited", event_id=genuine.event_id)
    # (Another person: the review service applies it, from a partition of its own and so at any moment
    # relative to the others, and it must not rename rae.)
    other_stream = registration(f"reviewer-{uuid4()}", 1, 1, "Sam Elsewhere", user_id="sam")
    await publish(kafka_bootstrap, topic, other_id, other_bytes, other_stream)
    # The genuine event again (a redelivery), then the next genuine event of the stream: the partition
    # goes on past the forks, and the redelivery is a quiet duplicate.
    following = registration(stream, 2, 2, "Rae Later")
    await publish(kafka_bootstrap, topic, genuine, following)

    review_group = f"{topic_prefix}leder.review.allocation-events"
    audit_group = f"{topic_prefix}leder.audit.allocation-events"
    records = await read_topic(kafka_bootstrap, dlq(topic), at_least=5, timeout=60)
    held = str(genuine.event_id)
    hashes = {e.canonical(): content_hash(e.canonical()) for e in (other_id, other_bytes, other_stream)}
    assert fork_reasons(records) == sorted(
        [
            (audit_group, "fork", held, hashes[other_id.canonical()]),
            (audit_group, "fork", held, hashes[other_bytes.canonical()]),
            (audit_group, "fork", held, hashes[other_stream.canonical()]),
            (review_group, "fork", held, hashes[other_id.canonical()]),
            (review_group, "fork", held, hashes[other_bytes.canonical()]),
        ],
        key=lambda r: (r[0], r[3]),
    )
    assert {r.value for r in records} == {e.canonical() for e in (other_id, other_bytes, other_stream)}

    async def following_applied() -> bool:
        return await name_in_review(review) == "Rae Later" and len(await logged(audit)) == 2

    await eventually(following_applied, timeout=60)
    # The log holds the genuine events alone, once each; the forks are nowhere but in the DLQ.
    assert await logged(audit) == [(1, held), (2, str(following.event_id))]
    # Nothing more was dead-lettered: the redelivered genuine event was a duplicate, not a fork.
    assert len(await read_topic(kafka_bootstrap, dlq(topic), at_least=5, timeout=5)) == 5

    # /readyz is false in both, naming both events of each fork.
    review_ready = (await review.client.get("/readyz")).json()
    assert review_ready["checks"]["forks"]["ok"] is False
    review_forks = review_ready["checks"]["forks"]["open"]
    assert sorted(
        (f["logged_event_id"], f["other_event_id"], f["other_hash"]) for f in review_forks
    ) == sorted(
        [
            (held, str(other_id.event_id), hashes[other_id.canonical()]),
            (held, held, hashes[other_bytes.canonical()]),
        ]
    )
    assert {(f["stream"], f["stream_version"], f["source_sequence"]) for f in review_forks} == {
        (f"{SOURCE}/{stream}", 1, 1)
    }
    audit_ready = (await audit.client.get("/readyz")).json()
    assert audit_ready["checks"]["forks"]["ok"] is False and len(audit_ready["checks"]["forks"]["open"]) == 3

    # /audit/forks lists them: source, sequence, the logged event's id and hash, the other's, when.
    ig = audit.headers("ig_officer")
    assert (await audit.client.get("/audit/forks", headers=audit.headers("lac"))).status_code == 403
    listed = (await audit.client.get("/audit/forks", headers=ig)).json()
    assert listed["open"] == 3
    genuine_hash = content_hash(genuine.canonical())
    assert (
        sorted(
            (f["source"], f["source_sequence"], f["logged_event_id"], f["logged_hash"])
            for f in listed["forks"]
        )
        == [(SOURCE, 1, held, genuine_hash)] * 3
    )
    assert {(f["other_event_id"], f["other_hash"]) for f in listed["forks"]} == {
        (str(e.event_id), hashes[e.canonical()]) for e in (other_id, other_bytes, other_stream)
    }
    assert all(f["seen_at"] and f["cleared_at"] is None for f in listed["forks"])

    # Reconciliation compares by hash: a feed whose event at logged sequence 1 is another is a fork,
    # reported and kept, never logged; the genuine one at that number is the same, and passes.
    bad: list[BadRecord] = []

    async def feed(source: str, after: int, limit: int) -> tuple[list[str], int]:
        events = [e.canonical().decode() for e in (other_id, following)]
        return events[after:][:limit], 2

    assert await reconcile(audit.runtime.store, [SOURCE], feed, report=bad.append) == {SOURCE: 0}
    [reported] = bad
    assert (
        reported.source_sequence == 1
        and "fork" in reported.reason
        and str(other_id.event_id) == reported.event_id
    )
    assert await logged(audit) == [(1, held), (2, str(following.event_id))]
    listed = (await audit.client.get("/audit/forks", params={"open": "true"}, headers=ig)).json()
    assert [f["consumer"] for f in listed["forks"]].count("reconcile") == 1 and listed["open"] == 4

    # An operator acknowledges them (having dealt with the source): ready again. `leder audit forks`
    # lists them and exits 1 while one is open; --ack-all clears the audit service's.
    args = argparse.Namespace(reader="ig-officer-1", ack=None, ack_all=False, audit_command="forks")
    assert await cli._forks(args, audit.runtime.store) == 1
    args.ack_all = True
    assert await cli._forks(args, audit.runtime.store) == 0
    assert (await audit.client.get("/readyz")).json()["checks"]["forks"] == {"ok": True, "open": []}
    listed = (await audit.client.get("/audit/forks", headers=ig)).json()
    assert listed["open"] == 0 and all("ig-officer-1" in f["cleared_how"] for f in listed["forks"])

    refused = await review.client.post(
        f"/forks/{review_forks[0]['id']}/acknowledge", headers=review.headers("reviewer")
    )
    assert refused.status_code == 403
    for fork in review_forks:
        acked = await review.client.post(
            f"/forks/{fork['id']}/acknowledge", headers=review.headers("ig_officer")
        )
        assert acked.status_code == 200 and acked.json() == {"acknowledged": [fork["id"]]}
    again = await review.client.post(
        f"/forks/{review_forks[0]['id']}/acknowledge", headers=review.headers("ig_officer")
    )
    assert again.status_code == 404 and again.headers["content-type"] == "application/problem+json"
    assert (await review.client.get("/readyz")).json()["checks"]["forks"] == {"ok": True, "open": []}
