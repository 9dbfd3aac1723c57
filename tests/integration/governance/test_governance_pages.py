"""What the web app's pages read from the governance service in one call each: the QA queue and panel
agendas with case references and reviewers' names, panels upcoming first, actions with their due-date
flag and history, and reports as an HTML fragment to embed."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor
from infra.eventstore import Context
from services.governance import domain, handlers
from services.governance.app import definition
from tests.integration.governance.test_governance_service import _caseload, _observe
from tests.support.service import RunningService, running_service

MIGRATIONS = Path(definition.migrations or ".")
Facts = list[tuple[str, UUID | None, date, dict[str, Any]]]
FACTS = {"age_at_death": 60, "sex": "female", "ethnicity": "A", "place_of_death": "hospital"}


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def _case(case_id: UUID, reference: str | None, on: date) -> Facts:
    opened: dict[str, Any] = {"review_type": "initial", "facts": FACTS}
    if reference:
        opened["reference"] = reference
    return [
        ("notification.CaseOpened", case_id, on, opened),
        (
            "allocation.ReviewerAllocated",
            case_id,
            on + timedelta(days=3),
            {"reviewer_user_id": "rev-1", "senior_reviewer_user_id": "sen-1", "review_type": "initial"},
        ),
    ]


REVIEWERS: Facts = [
    ("allocation.ReviewerRegistered", None, date(2026, 1, 1), {"user_id": "rev-1", "name": "Asha Patel"}),
    ("allocation.ReviewerRegistered", None, date(2026, 1, 1), {"user_id": "sen-1", "name": "Sam Jones"}),
]


async def _submit(gov: RunningService, case_id: UUID, on: date) -> None:
    store = gov.runtime.store
    async with store.transaction() as conn:
        await handlers.on_submission(store, conn, case_id, on, Context(Actor.system("test")))


async def _get(gov: RunningService, path: str, role: str, **params: Any) -> Any:
    response = await gov.client.get(path, params=params, headers=gov.headers(role))
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_qa_queue_and_panel_agendas_name_cases_reviewers_and_decisions(gov: RunningService) -> None:
    a, b = uuid4(), uuid4()
    await _observe(
        gov,
        REVIEWERS
        + _case(a, "LDR-2026-00042", date(2026, 2, 1))
        + _case(b, None, date(2026, 2, 2))  # opened before cases had references
        + [("notification.CaseEscalatedToFocused", a, date(2026, 3, 1), {"reasons": ["learning"]})],
    )
    await _submit(gov, a, date(2026, 6, 1))
    await _submit(gov, b, date(2026, 6, 2))
    queue = (await _get(gov, "/qa/awaiting", "qa_panel"))["reviews"]
    assert queue == [
        {
            "case_id": str(a),
            "reference": "LDR-2026-00042",
            "review_type": "focused",
            "reviewer": "rev-1",
            "reviewer_name": "Asha Patel",
            "senior_reviewer": "sen-1",
            "senior_reviewer_name": "Sam Jones",
            "submitted_on": "2026-06-01",
            "times_returned": 0,
        },
        {
            "case_id": str(b),
            "reference": None,
            "review_type": "initial",
            "reviewer": "rev-1",
            "reviewer_name": "Asha Patel",
            "senior_reviewer": "sen-1",
            "senior_reviewer_name": "Sam Jones",
            "submitted_on": "2026-06-02",
            "times_returned": 0,
        },
    ]

    today = gov.runtime.today()
    panel_ids = {}
    for name, held_on in (
        ("past", today - timedelta(days=14)),
        ("next", today),
        ("later", today + timedelta(14)),
    ):
        made = await gov.client.post(
            "/qa-panels", json={"held_on": held_on.isoformat()}, headers=gov.headers("lac")
        )
        panel_ids[name] = made.json()["panel_id"]
    for panel, case in (("past", a), ("past", b)):
        added = await gov.client.post(
            f"/qa-panels/{panel_ids[panel]}/agenda", json={"case_id": str(case)}, headers=gov.headers("lac")
        )
        assert added.status_code == 201, added.text
    returned = await gov.client.post(
        f"/qa-panels/{panel_ids['past']}/decisions",
        headers=gov.headers("qa_panel", sub="panel-chair"),
        json={"case_id": str(a), "decision": "returned", "comments": "Say more about the GP."},
    )
    assert returned.status_code == 201, returned.text
    await _submit(gov, a, date(2026, 7, 1))
    assert [
        (r["case_id"], r["times_returned"]) for r in (await _get(gov, "/qa/awaiting", "lac"))["reviews"]
    ] == [(str(a), 1)]
    await gov.client.post(
        f"/qa-panels/{panel_ids['next']}/agenda", json={"case_id": str(a)}, headers=gov.headers("lac")
    )
    approved = await gov.client.post(
        f"/qa-panels/{panel_ids['next']}/decisions",
        headers=gov.headers("qa_panel", sub="panel-chair"),
        json={"case_id": str(a), "decision": "approved", "quality_rating": 4, "themes": ["sepsis"]},
    )
    assert approved.status_code == 201, approved.text

    listed = (await _get(gov, "/qa-panels", "governance"))["panels"]
    assert [(p["panel_id"], p["upcoming"], p["agenda_size"], p["decided"]) for p in listed] == [
        (panel_ids["next"], True, 1, 1),
        (panel_ids["later"], True, 0, 0),
        (panel_ids["past"], False, 2, 1),
    ]
    past = await _get(gov, f"/qa-panels/{panel_ids['past']}", "lac")
    assert past["held_on"] == (today - timedelta(days=14)).isoformat() and past["upcoming"] is False
    by_case = {item["case_id"]: item for item in past["agenda"]}
    item_a = by_case[str(a)]
    assert (item_a["reference"], item_a["review_type"], item_a["reviewer_name"], item_a["submitted_on"]) == (
        "LDR-2026-00042",
        "focused",
        "Asha Patel",
        "2026-06-01",
    )
    assert {k: v for k, v in item_a["decision"].items() if k != "decided_at"} == {
        "outcome": "returned",
        "comments": "Say more about the GP.",
        "decided_by": "panel-chair",
    }
    assert by_case[str(b)]["decision"] is None and by_case[str(b)]["reference"] is None
    following = await _get(gov, f"/qa-panels/{panel_ids['next']}", "qa_panel")
    [item] = following["agenda"]
    assert item["submitted_on"] == "2026-07-01"
    assert {k: v for k, v in item["decision"].items() if k != "decided_at"} == {
        "outcome": "approved",
        "quality_rating": 4,
        "themes": ["sepsis"],
        "decided_by": "panel-chair",
    }
    for role in ("reviewer", "governance"):
        forbidden = await gov.client.get(f"/qa-panels/{panel_ids['next']}", headers=gov.headers(role))
        assert forbidden.status_code == 403
    missing = await gov.client.get(f"/qa-panels/{uuid4()}", headers=gov.headers("lac"))
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    malformed = await gov.client.get("/qa-panels/not-a-panel", headers=gov.headers("lac"))
    assert malformed.status_code == 422


async def test_the_agenda_read_model_rebuilt_from_events_equals_the_live_one(gov: RunningService) -> None:
    from infra.projections import rebuild

    case, waiting = uuid4(), uuid4()
    decisions: list[dict[str, Any]] = [
        {"decision": "returned", "comments": "More on the GP."},
        {"decision": "approved", "quality_rating": 3, "themes": ["sepsis", "constipation"]},
    ]
    for n, decision in enumerate(decisions):
        await _submit(gov, case, date(2026, 6 + n, 1))
        await _submit(gov, waiting, date(2026, 6, 2))
        made = await gov.client.post(
            "/qa-panels", json={"held_on": f"2026-1{n}-01"}, headers=gov.headers("lac")
        )
        panel = made.json()["panel_id"]
        for c in {case, waiting}:
            await gov.client.post(
                f"/qa-panels/{panel}/agenda", json={"case_id": str(c)}, headers=gov.headers("lac")
            )
        decided = await gov.client.post(
            f"/qa-panels/{panel}/decisions",
            headers=gov.headers("qa_panel"),
            json={"case_id": str(case), **decision},
        )
        assert decided.status_code == 201, decided.text
    pool = gov.runtime.pool
    query = "SELECT * FROM qa_agenda ORDER BY panel_id, case_id"
    live = [dict(r) for r in await pool.fetch(query)]
    cases = [dict(r) for r in await pool.fetch("SELECT * FROM qa_cases ORDER BY case_id")]
    await rebuild(gov.runtime.store)
    assert [dict(r) for r in await pool.fetch(query)] == live
    assert sorted((r["decision"] or "") for r in live) == ["", "approved", "returned"]
    assert [dict(r) for r in await pool.fetch("SELECT * FROM qa_cases ORDER BY case_id")] == cases
    # The migration that brought the agenda fills it from the events recorded before it, alike.
    migration = (MIGRATIONS / "002_case_details_and_panel_agendas.sql").read_text()
    await pool.execute("TRUNCATE qa_agenda; UPDATE qa_cases SET times_returned = 0")
    await pool.execute(migration[migration.index("UPDATE qa_cases") : migration.index("-- Each panel")])
    await pool.execute(migration[migration.index("INSERT INTO qa_agenda") :])
    assert [dict(r) for r in await pool.fetch(query)] == live
    assert [dict(r) for r in await pool.fetch("SELECT * FROM qa_cases ORDER BY case_id")] == cases


async def test_actions_carry_their_due_date_flag_linked_references_and_history(gov: RunningService) -> None:
    linked = uuid4()
    await _observe(gov, _case(linked, "LDR-2026-00007", date(2026, 2, 1)))
    today = gov.runtime.today()

    async def agree(what: str, due_in: int, case_ids: list[UUID]) -> str:
        made = await gov.client.post(
            "/actions",
            headers=gov.headers("governance", sub="gg-chair"),
            json={
                "what": what,
                "organisation": "North Bristol NHS Trust",
                "lead": "Ward manager",
                "due_on": (today + timedelta(days=due_in)).isoformat(),
                "case_ids": [str(c) for c in case_ids],
            },
        )
        assert made.status_code == 201, made.text
        return made.json()["action_id"]  # type: ignore[no-any-return]

    clock = gov.runtime.clock
    gov.runtime.clock = lambda: clock() - timedelta(days=2)  # agreed before it fell due (never due past)
    late = await agree("Late", -1, [])
    gov.runtime.clock = clock
    soon = await agree("Soon", domain.DUE_SOON_DAYS, [linked])
    later = await agree("Later", domain.DUE_SOON_DAYS + 1, [])
    done = await agree("Done", 3, [linked])
    progressed = await gov.client.post(
        f"/actions/{done}/progress",
        headers=gov.headers("governance", sub="gg-member"),
        json={"update": "half"},
    )
    assert progressed.status_code == 200, progressed.text
    await gov.client.post(
        f"/actions/{done}/completion", headers=gov.headers("governance"), json={"evidence": "audit: 96%"}
    )

    listed = (await _get(gov, "/actions", "lac"))["actions"]
    assert [(a["what"], a["status"], a["due_flag"]) for a in listed] == [
        ("Late", "overdue", "overdue"),
        ("Done", "completed", None),
        ("Soon", "open", "due_soon"),
        ("Later", "open", None),
    ]
    by_id = {a["action_id"]: a for a in listed}
    assert by_id[soon]["cases"] == [{"case_id": str(linked), "reference": "LDR-2026-00007"}]
    assert [
        a["action_id"] for a in (await _get(gov, "/actions", "governance", status="open"))["actions"]
    ] == [
        late,
        soon,
        later,
    ]
    assert (await _get(gov, "/actions", "governance", organisation="nowhere"))["actions"] == []

    detail = await _get(gov, f"/actions/{done}", "governance")
    assert (detail["status"], detail["due_flag"], detail["evidence"]) == ("completed", None, "audit: 96%")
    assert detail["cases"] == [{"case_id": str(linked), "reference": "LDR-2026-00007"}]
    history = [{k: v for k, v in h.items() if k != "at"} for h in detail["history"]]
    assert history == [
        {
            "event": "agreed",
            "by": {"id": "gg-chair", "role": "governance", "kind": "user"},
            "due_on": (today + timedelta(days=3)).isoformat(),
        },
        {
            "event": "progress",
            "by": {"id": "gg-member", "role": "governance", "kind": "user"},
            "update": "half",
        },
        {
            "event": "completed",
            "by": {"id": "alice", "role": "governance", "kind": "user"},
            "evidence": "audit: 96%",
            "completed_on": today.isoformat(),
        },
    ]
    assert all(datetime.fromisoformat(h["at"]).tzinfo is not None for h in detail["history"])
    assert (await _get(gov, f"/actions/{late}", "lac"))["history"][0]["event"] == "agreed"
    assert (await gov.client.get(f"/actions/{done}", headers=gov.headers("reviewer"))).status_code == 403
    assert (await gov.client.get(f"/actions/{uuid4()}", headers=gov.headers("lac"))).status_code == 404


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/reports/kpis", {"month": "2026-02"}),
        ("/reports/activity", {"from": "2026-01-01", "to": "2026-06-30"}),
        ("/reports/governance", {"quarter": "2026-Q1"}),
        ("/reports/annual", {"year": 2026}),
    ],
)
async def test_each_report_comes_as_a_fragment_to_embed_for_each_reader(
    gov: RunningService, path: str, params: dict[str, Any]
) -> None:
    await _observe(gov, _caseload(6, "female", date(2026, 2, 3)))
    for role in ("lac", "governance", "qa_panel"):
        response = await gov.client.get(
            path, params={**params, "format": "fragment"}, headers=gov.headers(role)
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/html")
        fragment = response.text
        assert (
            fragment.startswith('<div class="leder-report"') and "<h2>" in fragment and "<h1" not in fragment
        )
        assert not any(tag in fragment for tag in ("<html", "<head", "<body", "<style", "style="))
        assert 'role="img"' in fragment and "<caption" in fragment and 'scope="row"' in fragment
    for role in ("reviewer", "senior_reviewer", "partner_system", "ig_officer"):
        assert (await gov.client.get(path, params=params, headers=gov.headers(role))).status_code == 403
    bad = await gov.client.get(path, params={**params, "format": "pdf"}, headers=gov.headers("lac"))
    assert bad.status_code == 422


HOST_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Reports</title></head>
<body><header><p>NHS LeDeR</p></header><main><h1>Reports</h1>{fragment}</main></body></html>"""


def _axe_violations(page_html: str) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.2 AA violations of the page in Debian's Chromium, every details element open."""
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=args)
        try:
            page = browser.new_page()
            page.set_content(page_html)
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
            results = Axe().run(page, options={"runOnly": {"type": "tag", "values": tags}})
            violations: list[dict[str, Any]] = results.response.get("violations", [])
            return violations
        finally:
            browser.close()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
async def test_every_report_fragment_inside_a_host_page_passes_axe_wcag_2_2_aa(gov: RunningService) -> None:
    await _observe(gov, _caseload(6, "female", date(2026, 2, 3)) + _caseload(2, "male", date(2026, 3, 3)))
    fragments = []
    for path, params in (
        ("/reports/kpis", {"month": "2026-03"}),
        ("/reports/activity", {"from": "2026-01-01", "to": "2026-06-30"}),
        ("/reports/governance", {"quarter": "2026-Q1"}),
        ("/reports/annual", {"year": 2026}),
    ):
        response = await gov.client.get(
            path, params={**params, "format": "fragment"}, headers=gov.headers("lac")
        )
        fragments.append(response.text)
    # All four on one page: their ids do not collide either.
    violations = await asyncio.to_thread(_axe_violations, HOST_PAGE.format(fragment="".join(fragments)))
    assert not violations, "\n".join(
        f"{v['id']}: {v['help']} {[n.get('target') for n in v['nodes'][:3]]}" for v in violations
    )
