"""Deactivating a reviewer ends every allocation they hold, as reviewer or as supporting senior
reviewer: each such case goes back to the front of the queue, saying why, in the same transaction."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from events.allocation import CaseReturnedToQueue, ReviewerDeactivated
from services.allocation.app import definition
from tests.integration.allocation.test_allocation_service import allocate, open_cases, queue, register
from tests.support.service import RunningService, running_service

NOW = datetime(2026, 11, 26, 10, tzinfo=UTC)


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: NOW
        yield running


async def reviewers(svc: RunningService) -> dict[str, dict[str, Any]]:
    response = await svc.client.get("/reviewers", headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    return {r["name"]: r for r in response.json()["reviewers"]}


async def test_deactivating_a_reviewer_returns_every_case_they_hold_as_reviewer_or_senior_to_the_queue(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # Oldest first: theirs, supported, untouched, and one still waiting in the queue.
    theirs, supported, untouched, waiting = await open_cases(
        svc, kafka_bootstrap, topic_prefix, 40, 30, 20, 10
    )
    rae, tia = await register(svc, "Rae"), await register(svc, "Tia")
    sam, sue = await register(svc, "Sam", senior=True), await register(svc, "Sue", senior=True)
    assert (await allocate(svc, theirs, rae, sue)).status_code == 201
    assert (await allocate(svc, supported, tia, sam)).status_code == 201
    assert (await allocate(svc, untouched, tia, sue)).status_code == 201
    sequence_before = await svc.runtime.store.last_sequence()

    # Rae leaves: the case she reviews goes back. Sam leaves: the case he supports goes back.
    for who, why in ((rae, "left the team"), (sam, "long-term leave")):
        gone = await svc.client.post(
            f"/reviewers/{who}/deactivation", headers=svc.headers("lac"), json={"reason": why}
        )
        assert gone.status_code == 200, gone.text
        assert gone.json()["active"] is False

    # One transaction each: the deactivation, then the case it returns, and nothing else.
    recorded = [e.payload() for e in await svc.runtime.store.read_all(sequence_before)]
    assert [type(e) for e in recorded] == [
        ReviewerDeactivated,
        CaseReturnedToQueue,
        ReviewerDeactivated,
        CaseReturnedToQueue,
    ]
    returned = [e for e in recorded if isinstance(e, CaseReturnedToQueue)]
    assert [(str(e.case_id), str(e.reviewer_id)) for e in returned] == [(theirs, rae), (supported, tia)]

    # At the front of the queue, saying why, before the case that was waiting all along.
    front = await queue(svc)
    assert [c["case_id"] for c in front][:2] == [supported, theirs]
    assert {c["case_id"] for c in front} == {theirs, supported, waiting}
    because = {c["case_id"]: c["returned_because"] for c in front if c["returned_to_queue"]}
    assert because == {
        theirs: "the reviewer Rae was deactivated (left the team)",
        supported: "the senior reviewer Sam was deactivated (long-term leave)",
    }
    # Caseloads and support follow: Tia keeps only the case Sue supports.
    found = await reviewers(svc)
    assert (found["Rae"]["caseload"], found["Tia"]["caseload"]) == (0, 1)
    assert (found["Sam"]["supporting"], found["Sue"]["supporting"]) == (0, 1)

    # Deactivated again: nothing more is written.
    sequence = await svc.runtime.store.last_sequence()
    again = await svc.client.post(
        f"/reviewers/{rae}/deactivation", headers=svc.headers("lac"), json={"reason": "again"}
    )
    assert again.status_code == 200
    assert await svc.runtime.store.last_sequence() == sequence
