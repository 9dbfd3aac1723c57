"""The Governance Group links an action to cases by the references people name them by (the service
resolves each from the cases it has seen opened), never agrees one due in the past, and the web app
reads the quality ratings' words from the service."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.governance.app import definition
from tests.integration.governance.test_governance_service import _observe
from tests.support.service import RunningService, running_service

TODAY = date(2026, 11, 26)
ACTION = {"what": "Sepsis screening", "organisation": "NBT", "lead": "Ward manager", "due_on": "2027-01-31"}


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: datetime(2026, 11, 26, 10, tzinfo=UTC)
        yield running


async def _opened(gov: RunningService, reference: str) -> UUID:
    case_id = uuid4()
    await _observe(gov, [("notification.CaseOpened", case_id, TODAY, {"reference": reference})])
    return case_id


async def _agree(gov: RunningService, **changes: Any) -> Any:
    return await gov.client.post("/actions", json=ACTION | changes, headers=gov.headers("governance"))


async def _nothing_written(gov: RunningService) -> None:
    listed = await gov.client.get("/actions", headers=gov.headers("governance"))
    assert listed.json()["actions"] == []
    assert await gov.runtime.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_an_action_links_cases_by_their_references_as_well_as_by_their_ids(gov: RunningService) -> None:
    first = await _opened(gov, "LDR-2026-00042")
    second = await _opened(gov, "LDR-2026-00057")
    by_id = await _opened(gov, "LDR-2026-00060")
    made = await _agree(
        gov, case_ids=[str(by_id)], case_references=["LDR-2026-00042", "ldr-2026-00057", "LDR-2026-00042"]
    )
    assert made.status_code == 201, made.text
    assert made.json()["cases"] == [
        {"case_id": str(by_id), "reference": "LDR-2026-00060"},
        {"case_id": str(first), "reference": "LDR-2026-00042"},
        {"case_id": str(second), "reference": "LDR-2026-00057"},
    ]


async def test_an_unknown_or_malformed_reference_is_422_on_case_references_and_writes_nothing(
    gov: RunningService,
) -> None:
    await _opened(gov, "LDR-2026-00042")
    refused = await _agree(gov, case_references=["LDR-2026-00042", "LDR-2026-99999"])
    assert (refused.status_code, refused.json()["code"]) == (422, "unknown_case_reference"), refused.text
    assert [(e["field"], e["message"]) for e in refused.json()["errors"]] == [
        ("case_references", "no case LDR-2026-99999")
    ]
    malformed = await _agree(gov, case_references=["42"])
    assert malformed.status_code == 422, malformed.text
    [error] = malformed.json()["errors"]
    assert error["field"] == "case_references" and error["message"].startswith("no case 42")
    await _nothing_written(gov)


async def test_a_due_date_in_the_past_is_422_on_due_on_and_writes_nothing(gov: RunningService) -> None:
    refused = await _agree(gov, due_on="2026-11-25")
    assert (refused.status_code, refused.json()["code"]) == (422, "date_in_past"), refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["due_on"]
    both = await _agree(gov, due_on="2026-11-25", case_references=["LDR-2026-99999"])
    assert [e["field"] for e in both.json()["errors"]] == ["due_on", "case_references"]
    await _nothing_written(gov)
    due_today = await _agree(gov, due_on=TODAY.isoformat())
    assert due_today.status_code == 201, due_today.text


async def test_the_quality_ratings_words_are_the_services_to_give(gov: RunningService) -> None:
    expected = [
        {"code": 1, "label": "Poor"},
        {"code": 2, "label": "Fair"},
        {"code": 3, "label": "Good"},
        {"code": 4, "label": "Very good"},
        {"code": 5, "label": "Excellent"},
    ]
    vocabulary = await gov.client.get("/qa/vocabulary", headers=gov.headers("qa_panel"))
    assert vocabulary.status_code == 200, vocabulary.text
    ratings = vocabulary.json()["quality_ratings"]
    assert ratings["values"] == expected
    assert "configurable" in ratings["description"]
    made = await gov.client.post("/qa-panels", json={"held_on": "2026-12-03"}, headers=gov.headers("lac"))
    panel = await gov.client.get(f"/qa-panels/{made.json()['panel_id']}", headers=gov.headers("qa_panel"))
    assert panel.json()["quality_ratings"] == expected
