"""Every look at a case is attributable (issue 15, item 6), governance side: a person reading an action
agreed for cases leaves a governance.CaseRead, with who, in which role and what, on each case's reads
stream, where the audit service files it under the case."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.topics import service_topic
from services.governance.app import definition
from tests.integration.governance.test_action_links_and_ratings import ACTION, TODAY
from tests.integration.governance.test_governance_service import _observe
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: datetime(2026, 11, 26, 10, tzinfo=UTC)
        yield running


async def _reads(gov: RunningService, case_id: UUID) -> list[Envelope]:
    return await gov.runtime.store.read_stream(f"reads-{case_id}")


async def test_reading_an_action_records_a_read_of_each_case_it_was_agreed_for(gov: RunningService) -> None:
    first, second, untouched = uuid4(), uuid4(), uuid4()
    await _observe(
        gov,
        [
            ("notification.CaseOpened", first, TODAY, {"reference": "LDR-2026-00042"}),
            ("notification.CaseOpened", second, TODAY, {"reference": "LDR-2026-00057"}),
        ],
    )
    made = await gov.client.post(
        "/actions",
        json=ACTION | {"case_ids": [str(first)], "case_references": ["LDR-2026-00057"]},
        headers=gov.headers("governance", "gov.sam"),
    )
    assert made.status_code == 201, made.text
    action_id = made.json()["action_id"]
    assert await _reads(gov, first) == []  # agreeing is a write, recorded as such, not a read

    page = await gov.client.get(f"/actions/{action_id}", headers=gov.headers("lac", "lac.alex"))
    assert page.status_code == 200, page.text
    for case_id in (first, second):
        [read] = await _reads(gov, case_id)
        assert read.event_type == "governance.CaseRead"
        assert read.case_id == case_id and read.stream_id == f"reads-{case_id}"
        assert (read.actor.id, read.actor.role) == ("lac.alex", "lac")
        assert read.data == {
            "case_id": str(case_id),
            "reader": "lac.alex",
            "role": "lac",
            "what": "action",
            "action_id": action_id,
        }
    # The case's own stream is untouched: a read never conflicts with a write to the case.
    assert await gov.runtime.store.read_stream(str(first)) == []

    # Many people at once: each read is recorded, none refused.
    answers = await asyncio.gather(
        *(
            gov.client.get(f"/actions/{action_id}", headers=gov.headers("governance", f"gov.{n}"))
            for n in range(6)
        )
    )
    assert [a.status_code for a in answers] == [200] * 6
    readers = [e.actor.id for e in await _reads(gov, second)]
    assert sorted(readers) == sorted(["lac.alex", *(f"gov.{n}" for n in range(6))])

    # Nothing shown, nothing recorded: an unknown action, a role that may not read actions.
    assert (await gov.client.get(f"/actions/{uuid4()}", headers=gov.headers("lac"))).status_code == 404
    refused = await gov.client.get(f"/actions/{action_id}", headers=gov.headers("reviewer", "rae"))
    assert refused.status_code == 403
    assert len(await _reads(gov, first)) == 7 and await _reads(gov, untouched) == []


async def test_another_services_reads_are_no_facts_for_the_reports(
    gov: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    at = datetime(2026, 11, 26, 9, tzinfo=UTC)

    def review_event(event_type: str, stream_id: str, sequence: int, data: dict[str, str]) -> Envelope:
        return Envelope(
            event_id=uuid4(),
            event_type=event_type,
            schema_version=1,
            stream_id=stream_id,
            case_id=case_id,
            stream_version=1,
            source="review",
            source_sequence=sequence,
            occurred_at=at,
            recorded_at=at,
            actor=Actor(kind="user", id="sam", role="senior_reviewer"),
            correlation_id="reads",
            data={"case_id": str(case_id), **data},
        )

    read = review_event(
        "review.ReviewRead", f"reads-{case_id}", 1, {"reader": "sam", "role": "senior_reviewer"}
    )
    resumed = review_event("review.ReviewResumed", str(case_id), 2, {"resumed_on": "2026-11-26"})
    # One key, one partition: the read is consumed before the write that follows it.
    await publish_raw(
        kafka_bootstrap,
        service_topic("review", topic_prefix),
        [(str(case_id).encode(), e.canonical()) for e in (read, resumed)],
    )

    async def observed() -> list[str]:
        rows = await gov.runtime.pool.fetch(
            "SELECT event_type FROM observed_events WHERE case_id = $1", case_id
        )
        return [r["event_type"] for r in rows]

    async def the_write_observed() -> bool:
        return "review.ReviewResumed" in await observed()

    await eventually(the_write_observed, timeout=60)
    assert await observed() == ["review.ReviewResumed"]
