"""The governance service through its real doors: a review through QA with the review service
following on the broker, actions flagged overdue once, and reports (JSON, CSV, HTML in Chromium)."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.topics import service_topic
from infra import db
from infra.eventstore import Context
from infra.settings import database_url_for
from services.governance.app import definition
from services.governance.handlers import flag_overdue_actions
from services.review.app import definition as review_service
from tests.integration.review.test_review_service import MINIMUM, allocate, post
from tests.support.browser import NHS_BLUE, NHS_GREEN, chromium_missing, screenshot
from tests.support.payloads import complete
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, read_topic


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


async def test_a_review_returned_resubmitted_and_approved_closes_the_case_with_the_review_service_following(
    pg_server_url: str, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    review_db = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(review_db)
    try:
        async with (
            running_service(review_service, review_db, kafka_bootstrap, topic_prefix) as review,
            running_service(definition, database_url, kafka_bootstrap, topic_prefix) as gov,
        ):
            case_id = uuid4()
            await allocate(review, kafka_bootstrap, topic_prefix, case_id)
            for path, body in MINIMUM:
                assert (await post(review, case_id, path, body)).status_code == 201
            assert (await post(review, case_id, "submission")).status_code == 201

            async def awaiting() -> list[str]:
                response = await gov.client.get("/qa/awaiting", headers=gov.headers("lac"))
                return [r["case_id"] for r in response.json()["reviews"]]

            assert await eventually(awaiting, timeout=60) == [str(case_id)]
            panel = (
                await gov.client.post(
                    "/qa-panels",
                    json={"held_on": (gov.runtime.today() - timedelta(days=7)).isoformat()},
                    headers=gov.headers("lac"),
                )
            ).json()["panel_id"]
            agenda = await gov.client.post(
                f"/qa-panels/{panel}/agenda", json={"case_id": str(case_id)}, headers=gov.headers("lac")
            )
            assert agenda.status_code == 201, agenda.text
            not_panel = await gov.client.post(
                f"/qa-panels/{panel}/decisions",
                headers=gov.headers("lac"),
                json={"case_id": str(case_id), "decision": "returned", "comments": "x"},
            )
            assert not_panel.status_code == 403
            returned = await gov.client.post(
                f"/qa-panels/{panel}/decisions",
                headers=gov.headers("qa_panel"),
                json={
                    "case_id": str(case_id),
                    "decision": "returned",
                    "comments": "Say more about the GP's reasonable adjustments.",
                },
            )
            assert returned.json()["events"] == ["governance.ReviewReturnedByQA"]

            async def review_status() -> str:
                response = await review.client.get(f"/reviews/{case_id}", headers=review.headers("lac"))
                return response.json()["status"]  # type: ignore[no-any-return]

            async def back_in_progress() -> bool:
                return await review_status() == "in_progress"

            await eventually(back_in_progress, timeout=60)
            assert (await post(review, case_id, "notes", {"text": "added GP detail"})).status_code == 201
            assert (await post(review, case_id, "submission")).status_code == 201
            assert await eventually(awaiting, timeout=60) == [str(case_id)]
            panel2 = (
                await gov.client.post(
                    "/qa-panels",
                    json={"held_on": gov.runtime.today().isoformat()},
                    headers=gov.headers("lac"),
                )
            ).json()["panel_id"]
            await gov.client.post(
                f"/qa-panels/{panel2}/agenda", json={"case_id": str(case_id)}, headers=gov.headers("lac")
            )
            approved = await gov.client.post(
                f"/qa-panels/{panel2}/decisions",
                headers=gov.headers("qa_panel"),
                json={
                    "case_id": str(case_id),
                    "decision": "approved",
                    "quality_rating": 4,
                    "themes": ["sepsis"],
                },
            )
            assert approved.json()["events"] == ["governance.ReviewApprovedByQA", "governance.CaseClosed"]

            async def completed() -> bool:
                return await review_status() == "completed"

            await eventually(completed, timeout=60)
            records = await read_topic(kafka_bootstrap, service_topic("governance", topic_prefix), at_least=7)
            flow = [
                Envelope.from_bytes(r.value).event_type
                for r in records
                if Envelope.from_bytes(r.value).case_id == case_id
            ]
            assert flow == [
                "governance.ReviewAwaitingQA",
                "governance.ReviewAddedToPanelAgenda",
                "governance.ReviewReturnedByQA",
                "governance.ReviewAwaitingQA",
                "governance.ReviewAddedToPanelAgenda",
                "governance.ReviewApprovedByQA",
                "governance.CaseClosed",
            ]
            reopened = await gov.client.post(
                f"/cases/{case_id}/reopening",
                json={"reason": "family raised new concern"},
                headers=gov.headers("lac"),
            )
            assert reopened.json()["events"] == ["governance.CaseReopened"]

            # The review is back with its reviewer, who writes again and resubmits: QA again.
            await eventually(back_in_progress, timeout=60)
            got = await review.client.get(f"/reviews/{case_id}", headers=review.headers("reviewer", "rae"))
            assert got.json()["reopened_reason"] == "family raised new concern"
            assert (
                await post(review, case_id, "pen-portrait", {"text": "the family's concern"})
            ).status_code == 201
            assert (await post(review, case_id, "submission")).status_code == 201
            assert await eventually(awaiting, timeout=60) == [str(case_id)]
            again = await gov.client.post(
                f"/cases/{case_id}/reopening", json={"reason": "again"}, headers=gov.headers("lac")
            )
            assert again.status_code == 409 and again.json()["code"] == "case_not_closed"
    finally:
        await db.drop_database(review_db)


async def test_an_overdue_action_is_flagged_once_also_across_a_restart(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    ctx = Context(Actor.system("test"))
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as gov:
        made = await gov.client.post(
            "/actions",
            headers=gov.headers("governance"),
            json={
                "what": "Sepsis screening on ward 4",
                "organisation": "North Bristol NHS Trust",
                "lead": "Ward manager",
                "due_on": (date.today() + timedelta(days=30)).isoformat(),
                "themes": ["sepsis"],
            },
        )
        assert made.status_code == 201, made.text
        action_id = made.json()["action_id"]
        gov.runtime.clock = lambda: datetime.now(UTC) + timedelta(days=45)
        assert await flag_overdue_actions(gov.runtime.store, gov.runtime.today(), ctx) == 1
        assert await flag_overdue_actions(gov.runtime.store, gov.runtime.today(), ctx) == 0
        overdue = (
            await gov.client.get("/actions", params={"status": "overdue"}, headers=gov.headers("lac"))
        ).json()["actions"]
        assert [a["action_id"] for a in overdue] == [action_id]
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as restarted:
        later = (datetime.now(UTC) + timedelta(days=60)).date()
        assert await flag_overdue_actions(restarted.runtime.store, later, ctx) == 0
        stream = await restarted.runtime.store.read_stream(f"action-{action_id}")
        assert [e.event_type for e in stream] == ["governance.ActionAgreed", "governance.ActionOverdue"]
        done = await restarted.client.post(
            f"/actions/{action_id}/completion",
            headers=restarted.headers("governance"),
            json={"evidence": "audit shows 96% screened"},
        )
        assert done.json()["status"] == "completed"


async def _observe(gov: RunningService, facts: list[tuple[str, UUID | None, date, dict[str, Any]]]) -> None:
    """Record events as observed from other services: each the data the test gives about it, and
    whatever else its type requires (the reports and pages read them as typed payloads)."""
    for event_type, case_id, on, given in facts:
        data = complete(event_type, given, case_id)
        await gov.runtime.pool.execute(
            "INSERT INTO observed_events (event_id, source, event_type, case_id, occurred_at, data)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            uuid4(),
            event_type.split(".")[0],
            event_type,
            case_id,
            datetime(on.year, on.month, on.day, 12, tzinfo=UTC),
            json.dumps(data),
        )


def _caseload(n: int, sex: str, notified: date) -> list[tuple[str, UUID | None, date, dict[str, Any]]]:
    rows: list[tuple[str, UUID | None, date, dict[str, Any]]] = []
    for i in range(n):
        case = uuid4()
        rows += [
            (
                "notification.CaseOpened",
                case,
                notified,
                {
                    "facts": {
                        "age_at_death": 55 + i,
                        "sex": sex,
                        "ethnicity": "A",
                        "learning_disability_level": "moderate",
                        "place_of_death": "hospital",
                    }
                },
            ),
            ("allocation.ReviewerAllocated", case, notified + timedelta(days=12), {}),
            ("review.LearningRecorded", case, notified + timedelta(days=60), {"themes": ["sepsis"]}),
            ("review.ReviewCompleted", case, notified + timedelta(days=150), {}),
        ]
    return rows


async def test_reports_suppress_small_numbers_and_come_as_json_csv_and_html(gov: RunningService) -> None:
    await _observe(gov, _caseload(6, "female", date(2026, 2, 3)) + _caseload(2, "male", date(2026, 2, 10)))
    annual = (
        await gov.client.get("/reports/annual", params={"year": 2026}, headers=gov.headers("lac"))
    ).json()
    assert annual["completed_reviews_by_group"]["sex"] == {"female": 6, "male": "<5"}
    assert annual["median_age_at_death"]["sex"] == {"female": 57.5, "male": "<5"}
    kpis = (
        await gov.client.get("/reports/kpis", params={"month": "2026-02"}, headers=gov.headers("governance"))
    ).json()
    assert (kpis["notified"], kpis["allocated"], kpis["median_days_notification_to_allocation"]) == (8, 8, 12)
    csv = await gov.client.get(
        "/reports/kpis", params={"month": "2026-02", "format": "csv"}, headers=gov.headers("lac")
    )
    assert csv.headers["content-type"].startswith("text/csv") and "notified,8" in csv.text
    assert (
        await gov.client.get("/reports/kpis", params={"month": "2026-02"}, headers=gov.headers("reviewer"))
    ).status_code == 403
    quarter = (
        await gov.client.get("/reports/governance", params={"quarter": "2026-Q3"}, headers=gov.headers("lac"))
    ).json()
    assert quarter["completed"] == 8 and quarter["actions"] == {
        "opened": 0,
        "overdue_at_end": 0,
        "completed": 0,
    }


@pytest.mark.skipif(chromium_missing(), reason="Debian's chromium is not installed (.ci/run installs it)")
async def test_the_html_report_opens_in_a_real_headless_browser_and_its_charts_render(
    gov: RunningService, tmp_path: Path
) -> None:
    await _observe(gov, _caseload(7, "female", date(2026, 3, 3)) + _caseload(5, "male", date(2026, 5, 10)))
    page = await gov.client.get(
        "/reports/activity",
        params={"from": "2026-01-01", "to": "2026-12-31", "format": "html"},
        headers=gov.headers("lac"),
    )
    assert page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # loads nothing
    report = tmp_path / "activity.html"
    report.write_text(page.text)
    colours = await screenshot(report, tmp_path)
    nhs_blue, nhs_green = colours.get(NHS_BLUE, 0), colours.get(NHS_GREEN, 0)
    assert nhs_blue > 2000, "the bars of the charts did not render"
    assert nhs_green > 500, "the second series did not render"


async def test_leder_report_writes_the_kpi_report_as_html_from_the_command_line(
    gov: RunningService, database_url: str, tmp_path: Path
) -> None:
    await _observe(gov, _caseload(6, "female", date(2026, 10, 5)))
    out = tmp_path / "kpis.html"
    env = {**os.environ, "LEDER_GOVERNANCE_DATABASE_URL": database_url}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "leder.cli", "report", "kpis", "--month", "2026-10", "--html", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "LeDeR key performance indicators, 2026-10" in page and page.count('class="chart"') >= 4
    assert '<th scope="row">Deaths notified</th><td>6</td>' in page
