"""The governance service's answers on wrong states and impossible dates: 409 with a code naming the
state for what exists in the wrong state, 404 only for what does not exist, 422 naming the field and
the rule for a date that cannot be true."""

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor
from infra.eventstore import Context
from services.governance import handlers
from services.governance.app import definition
from tests.integration.governance.test_governance_service import _observe
from tests.support.service import RunningService, running_service

TODAY = date(2026, 11, 26)


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        running.runtime.clock = lambda: datetime(2026, 11, 26, 10, tzinfo=UTC)
        yield running


async def _known_case(gov: RunningService) -> UUID:
    """A case the service has heard of (opened and allocated) whose review was never submitted."""
    case_id = uuid4()
    await _observe(gov, [("notification.CaseOpened", case_id, TODAY, {"reference": "LDR-2026-00009"})])
    return case_id


async def _submitted(gov: RunningService, case_id: UUID) -> None:
    store = gov.runtime.store
    async with store.transaction() as conn:
        await handlers.on_submission(store, conn, case_id, TODAY, Context(Actor.system("test")))


async def _post(gov: RunningService, path: str, body: dict[str, Any], role: str = "lac") -> Any:
    return await gov.client.post(path, json=body, headers=gov.headers(role))


async def _panel(gov: RunningService, held_on: date) -> str:
    made = await _post(gov, "/qa-panels", {"held_on": held_on.isoformat()})
    assert made.status_code == 201, made.text
    return str(made.json()["panel_id"])


def _problem(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["code"]


async def test_reopening_an_open_case_is_409_case_not_closed_and_an_unknown_case_404(
    gov: RunningService,
) -> None:
    never_submitted = await _known_case(gov)
    awaiting = await _known_case(gov)
    await _submitted(gov, awaiting)
    for case_id in (never_submitted, awaiting):
        answer = await _post(gov, f"/cases/{case_id}/reopening", {"reason": "new information"})
        assert _problem(answer) == (409, "case_not_closed"), answer.text
    unknown = await _post(gov, f"/cases/{uuid4()}/reopening", {"reason": "new information"})
    assert _problem(unknown) == (404, "not_found")


async def test_an_unsubmitted_review_on_an_agenda_is_409_review_not_submitted(gov: RunningService) -> None:
    panel = await _panel(gov, TODAY)
    never_submitted = await _known_case(gov)
    answer = await _post(gov, f"/qa-panels/{panel}/agenda", {"case_id": str(never_submitted)})
    assert _problem(answer) == (409, "review_not_submitted"), answer.text
    unknown = await _post(gov, f"/qa-panels/{panel}/agenda", {"case_id": str(uuid4())})
    assert _problem(unknown) == (404, "not_found")
    no_panel = await _post(gov, f"/qa-panels/{uuid4()}/agenda", {"case_id": str(never_submitted)})
    assert _problem(no_panel) == (404, "not_found")
    decision = {"case_id": str(never_submitted), "decision": "returned", "comments": "more"}
    undecidable = await _post(gov, f"/qa-panels/{panel}/decisions", decision, role="qa_panel")
    assert _problem(undecidable) == (409, "review_not_submitted"), undecidable.text
    no_panel_decision = await _post(gov, f"/qa-panels/{uuid4()}/decisions", decision, role="qa_panel")
    assert _problem(no_panel_decision) == (404, "not_found"), no_panel_decision.text


async def test_a_decision_before_the_panels_date_is_422_naming_the_rule(gov: RunningService) -> None:
    case_id = await _known_case(gov)
    await _submitted(gov, case_id)
    panel = await _panel(gov, TODAY + timedelta(days=7))
    assert (await _post(gov, f"/qa-panels/{panel}/agenda", {"case_id": str(case_id)})).status_code == 201
    decision = {"case_id": str(case_id), "decision": "approved", "quality_rating": 4}
    early = await _post(gov, f"/qa-panels/{panel}/decisions", decision, role="qa_panel")
    assert _problem(early) == (422, "decided_before_panel"), early.text
    assert [e["field"] for e in early.json()["errors"]] == ["panel_id"]
    # The panel's page says so before anyone tries: its decisions open on the day it meets.
    before = await gov.client.get(f"/qa-panels/{panel}", headers=gov.headers("qa_panel"))
    assert before.json()["decisions_open"] is False
    gov.runtime.clock = lambda: datetime(2026, 12, 3, 10, tzinfo=UTC)
    after = await gov.client.get(f"/qa-panels/{panel}", headers=gov.headers("qa_panel"))
    assert after.json()["decisions_open"] is True
    on_the_day = await _post(gov, f"/qa-panels/{panel}/decisions", decision, role="qa_panel")
    assert on_the_day.status_code == 201, on_the_day.text


async def test_an_action_completed_before_it_was_agreed_or_in_the_future_is_422(gov: RunningService) -> None:
    made = await _post(
        gov,
        "/actions",
        {"what": "Sepsis screening", "organisation": "NBT", "lead": "Ward manager", "due_on": "2027-01-31"},
        role="governance",
    )
    assert made.status_code == 201, made.text
    action = made.json()
    assert action["agreed_on"] == TODAY.isoformat()
    path = f"/actions/{action['action_id']}/completion"
    for completed_on, code in (("2026-11-25", "completed_before_agreed"), ("2026-11-27", "date_in_future")):
        refused = await _post(
            gov, path, {"evidence": "audit", "completed_on": completed_on}, role="governance"
        )
        assert _problem(refused) == (422, code), refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["completed_on"]
    done = await _post(gov, path, {"evidence": "audit", "completed_on": "2026-11-26"}, role="governance")
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["completed_on"]) == ("completed", "2026-11-26")
    again = await _post(gov, path, {"evidence": "audit"}, role="governance")
    assert _problem(again) == (409, "action_completed")
