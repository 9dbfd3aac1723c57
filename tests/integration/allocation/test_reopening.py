"""A reopened case (governance.CaseReopened) through the allocation service's real consumers: the
allocation its closure ended is restored to the reviewers who had it, if they can still take it, and
counts in their caseloads again; otherwise the case is back at the front of the queue, saying why."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope, EventPayload
from events.governance import CaseClosed, CaseReopened
from events.review import ReviewCompleted
from events.topics import service_topic
from services.allocation.app import definition
from tests.integration.allocation.test_allocation_service import allocate, open_cases, queue, register
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: NOW
        yield running


def envelope(source: str, payload: EventPayload, case_id: str, version: int) -> Envelope:
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=1,
        stream_id=case_id,
        case_id=UUID(case_id),
        stream_version=version,
        source=source,
        source_sequence=version,
        occurred_at=NOW,
        recorded_at=NOW,
        actor=Actor.system(source),
        correlation_id="c",
        data=payload.model_dump(mode="json"),
    )


async def publish(bootstrap: str, prefix: str, *envelopes: Envelope) -> None:
    for e in envelopes:
        await publish_raw(bootstrap, service_topic(e.source, prefix), [(e.kafka_key, e.canonical())])


async def reviewers(svc: RunningService) -> dict[str, dict[str, Any]]:
    response = await svc.client.get("/reviewers", headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["reviewers"]}


async def test_a_reopened_case_goes_back_to_its_reviewers_if_they_can_take_it_or_else_to_the_queue(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    kept, lost = await open_cases(svc, kafka_bootstrap, topic_prefix, 20, 10)
    rae, tia = await register(svc, "Rae"), await register(svc, "Tia")
    sam = await register(svc, "Sam", senior=True)
    assert (await allocate(svc, kept, rae, sam)).status_code == 201
    assert (await allocate(svc, lost, tia, sam)).status_code == 201

    # The QA panel approves both reviews: the review completes and the case closes (either may reach
    # the allocation service first), and each allocation ends. The completion of the first is late:
    # it arrives after the case is reopened.
    late = envelope("review", ReviewCompleted(case_id=UUID(kept), completed_on=NOW.date()), kept, 1)
    await publish(
        kafka_bootstrap,
        topic_prefix,
        envelope("governance", CaseClosed(case_id=UUID(kept), closed_on=NOW.date()), kept, 1),
        envelope("governance", CaseClosed(case_id=UUID(lost), closed_on=NOW.date()), lost, 1),
        envelope("review", ReviewCompleted(case_id=UUID(lost), completed_on=NOW.date()), lost, 1),
    )

    async def ended() -> bool:
        found = await reviewers(svc)
        return (found["Rae"]["caseload"], found["Tia"]["caseload"], found["Sam"]["supporting"]) == (0, 0, 0)

    await eventually(ended, timeout=60)
    # Tia leaves; Rae and Sam can still take a case.
    gone = await svc.client.post(
        f"/reviewers/{tia}/deactivation", headers=svc.headers("lac"), json={"reason": "left the team"}
    )
    assert gone.status_code == 200, gone.text

    reopen_kept = envelope("governance", CaseReopened(case_id=UUID(kept), reason="new evidence"), kept, 2)
    reopen_lost = envelope("governance", CaseReopened(case_id=UUID(lost), reason="new evidence"), lost, 2)
    await publish(kafka_bootstrap, topic_prefix, reopen_kept, reopen_lost)

    async def back() -> list[dict[str, Any]]:
        return [c for c in await queue(svc) if c["case_id"] == lost]

    [returned] = await eventually(back, timeout=60)
    assert returned["returned_to_queue"] is True
    assert returned["returned_because"] == (
        "the case was reopened (new evidence) and cannot go back to Tia and Sam: Tia is inactive"
    )

    async def restored() -> dict[str, dict[str, Any]]:
        found = await reviewers(svc)
        return found if found["Rae"]["caseload"] == 1 else {}

    found = await eventually(restored, timeout=60)
    assert (found["Rae"]["caseload"], found["Tia"]["caseload"], found["Sam"]["supporting"]) == (1, 0, 1)
    assert [c["case_id"] for c in await queue(svc)] == [lost]
    page = (await svc.client.get(f"/reviewers/{rae}", headers=svc.headers("lac"))).json()
    assert [(c["case_id"], c["role"], c["allocated_on"]) for c in page["cases"]] == [
        (kept, "reviewer", NOW.date().isoformat())
    ]
    sams = (await svc.client.get(f"/reviewers/{sam}", headers=svc.headers("lac"))).json()
    assert [(c["case_id"], c["role"]) for c in sams["cases"]] == [(kept, "senior_reviewer")]

    # Told again (a redelivery, or a second reopening of a case already reopened): nothing more. The
    # late completion of the review before the reopening does not end the restored allocation.
    again = envelope("governance", CaseReopened(case_id=UUID(kept), reason="again"), kept, 3)
    await publish(kafka_bootstrap, topic_prefix, reopen_kept, again, late)

    async def handled() -> bool:
        return bool(
            await svc.runtime.pool.fetchval(
                "SELECT count(*) = 2 FROM inbox WHERE message_id = ANY($1::text[])",
                [str(again.event_id), str(late.event_id)],
            )
        )

    await eventually(handled, timeout=60)
    # Three cases' worth of events before, then: kept restored, lost returned; the marker is a new case.
    [marker] = await open_cases(svc, kafka_bootstrap, topic_prefix, 1)
    records = await read_topic(kafka_bootstrap, service_topic("allocation", topic_prefix), at_least=1)
    published = [Envelope.from_bytes(r.value) for r in records]
    while not any(e.case_id == UUID(marker) for e in published):
        records = await read_topic(
            kafka_bootstrap, service_topic("allocation", topic_prefix), at_least=len(records) + 1
        )
        published = [Envelope.from_bytes(r.value) for r in records]
    after_closing = [
        (str(e.case_id), e.event_type, e.data.get("reviewer_user_id"), e.data.get("senior_reviewer_user_id"))
        for e in published
        if e.event_type in ("allocation.AllocationRestored", "allocation.CaseReturnedToQueue")
    ]
    assert after_closing == [
        (kept, "allocation.AllocationRestored", "rae", "sam"),
        (lost, "allocation.CaseReturnedToQueue", None, None),
    ] or after_closing == [
        (lost, "allocation.CaseReturnedToQueue", None, None),
        (kept, "allocation.AllocationRestored", "rae", "sam"),
    ]
    assert (await reviewers(svc))["Rae"]["caseload"] == 1

    # The LAC allocates the returned case as any other: to reviewers who can take it.
    assert (await allocate(svc, lost, rae, sam)).status_code == 201
    found = await reviewers(svc)
    assert (found["Rae"]["caseload"], found["Tia"]["caseload"], found["Sam"]["supporting"]) == (2, 0, 2)
