"""Each report as Chromium draws it (Debian's chromium through Playwright): what can be measured on the
page. No legend box intersects a bar or a bar's value, every axis has a zero label, no month after the
period's end is charted, and no developer key, Python list or ethnicity code is in the page's text."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.governance.app import definition
from services.governance.rendering import ETHNIC_CATEGORIES
from tests.integration.governance.test_governance_service import _observe
from tests.support.service import RunningService, running_service
from tests.support.web import chromium

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")

Facts = list[tuple[str, Any, date, dict[str, Any]]]
THEMES = ["sepsis", "constipation", "delays_in_care", "mental_capacity_act_not_followed", "medication"]


def _caseload() -> Facts:
    """Cases over 2026 of several ethnic categories, ages and levels, some months with fewer than 5."""
    rows: Facts = []
    people = (
        [("A", 58, "mild")] * 7
        + [("H", 66, "moderate")] * 5
        + [("Z", 40, "severe")] * 2
        + [("99", 80, "profound")]
        + [("N", 23, "unknown")] * 5
    )
    for i, (ethnicity, age, level) in enumerate(people):
        case = uuid4()
        notified = date(2026, 1 + i % 8, 3 + i)
        rows += [
            (
                "notification.CaseOpened",
                case,
                notified,
                {
                    "facts": {
                        "age_at_death": age,
                        "sex": "female" if i % 2 else "male",
                        "ethnicity": ethnicity,
                        "learning_disability_level": level,
                        "place_of_death": "care_home" if i % 3 else "hospital",
                    }
                },
            ),
            ("allocation.ReviewerAllocated", case, notified + timedelta(days=9 + i), {}),
            (
                "review.LearningRecorded",
                case,
                notified + timedelta(days=40),
                {"themes": [THEMES[i % len(THEMES)], THEMES[(i + 2) % len(THEMES)]]},
            ),
            ("review.LapseInCareRecorded", case, notified + timedelta(days=45), {}),
        ]
        if i % 4:
            rows.append(("review.ReviewCompleted", case, notified + timedelta(days=100 + i), {}))
    return rows


@pytest.fixture
async def gov(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


REPORTS = (
    ("/reports/kpis", {"month": "2026-06"}, date(2026, 6, 30)),
    ("/reports/activity", {"from": "2026-01-01", "to": "2026-09-30"}, date(2026, 9, 30)),
    ("/reports/governance", {"quarter": "2026-Q2"}, date(2026, 6, 30)),
    ("/reports/annual", {"year": 2026}, date(2026, 12, 31)),
)

MEASURE = """() => [...document.querySelectorAll('svg.chart')].map(svg => {
  const boxes = selector => [...svg.querySelectorAll(selector)].map(e => {
    const r = e.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, text: e.textContent};
  });
  return {
    title: svg.querySelector('title').textContent,
    legend: boxes('.legend rect, .legend text'),
    bars: boxes('rect.bar'),
    values: boxes('text.value'),
    ticks: [...svg.querySelectorAll('text.tick')].map(t => t.textContent),
  };
})"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def _measure(pages: list[str]) -> list[tuple[list[dict[str, Any]], str, list[str]]]:
    measured = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        for html in pages:
            page.set_content(html)
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            charts = page.evaluate(MEASURE)
            text = page.inner_text("body")
            headers = page.eval_on_selector_all("th", "cells => cells.map(c => c.textContent.trim())")
            measured.append((charts, text, headers))
    return measured


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)} | {v for v in value if isinstance(v, str)}
    return set()


async def test_each_report_in_chromium_has_zero_baselines_legends_clear_of_bars_and_only_words(
    gov: RunningService,
) -> None:
    await _observe(gov, _caseload())
    today = gov.runtime.today()
    pages, reports = [], []
    for path, params, _ in REPORTS:
        html = await gov.client.get(path, params={**params, "format": "html"}, headers=gov.headers("lac"))
        assert html.status_code == 200, html.text
        pages.append(html.text)
        reports.append((await gov.client.get(path, params=params, headers=gov.headers("lac"))).json())

    measured = await asyncio.to_thread(_measure, pages)
    for (path, _, end), report, (charts, text, headers) in zip(REPORTS, reports, measured, strict=True):
        assert charts, f"{path}: no chart"
        for chart in charts:
            where = f"{path}: {chart['title']}"
            assert chart["ticks"] and chart["ticks"][0] in ("0", "0%"), f"{where}: no zero on the axis"
            assert len(chart["ticks"]) >= 3, f"{where}: too few gridlines"
            assert chart["values"], f"{where}: no values on the bars"
            for legend in chart["legend"]:
                for shape in chart["bars"] + chart["values"]:
                    assert not _overlap(legend, shape), f"{where}: legend {legend} on {shape}"
        legends = [c for c in charts if c["legend"]]
        assert legends, f"{path}: no legend"

        developer = {k for k in _keys(report) if "_" in k}
        assert not [k for k in developer if k in text], f"{path}: developer keys in the page"
        assert "['" not in text and "[]" not in text
        codes = set(ETHNIC_CATEGORIES)
        assert not [h for h in headers if h in codes], f"{path}: an ethnicity code as a label"

        last_month = min(end, today)
        months = [m["month"] for m in report.get("monthly", [])]
        assert months and months[-1] == f"{last_month:%Y-%m}", f"{path}: months after the period's end"

    annual_charts = [c["title"] for c in measured[-1][0]]
    assert {
        "Completed reviews by ethnic category",
        "Completed reviews by age at death",
        "Completed reviews by level of learning disability",
    } <= set(annual_charts)
    annual_text = measured[-1][1]
    assert "White: British" in annual_text and "Black or Black British: African" in annual_text
    governance = reports[2]
    assert governance["themes"]["emerging_note"]
    assert (
        governance["backlog_by_age"]["0-3 months"] in ("<5", 0)
        or governance["backlog_by_age"]["0-3 months"] >= 5
    )
