"""The report as an HTML fragment for the web app's pages: what WCAG 2.2 AA asks of it inside a host
page (named images with their data in tables, captioned tables with scoped headers, headings from h2,
unique ids) and nothing a host page cannot hold (no html, head, body or style)."""

from datetime import date, timedelta
from html.parser import HTMLParser
from itertools import pairwise
from typing import Any

from services.governance import domain, rendering

REPORT: dict[str, Any] = {
    "period": {"from": "2026-01-01", "to": "2026-03-31"},
    "notified": 12,
    "median_days_notification_to_allocation": None,
    "themes": {"learning_themes": {"sepsis": 6, "constipation": "<5"}, "emerging_themes": ["sepsis"]},
    "backlog_by_age": {"0-3 months": 7, "3-6 months": "<5", "6-12 months": 0, "over 12 months": 0},
    "monthly": [
        {
            "month": f"2026-0{m}",
            "notified": 4,
            "allocated": 3,
            "completed": m,
            "median_days_notification_to_allocation": None if m == 2 else 10,
            "per_cent_completed_within_six_months": 50.0,
            "per_cent_completed_within_six_months_excluding_paused_time": 75.0,
        }
        for m in (1, 2, 3)
    ],
    "themes_over_time": [
        {"period": "2025-10", "learning_themes": {"sepsis": "<5"}},
        {"period": "2026-01", "learning_themes": {"sepsis": 6}},
    ],
}


class Elements(HTMLParser):
    """Every start tag with its attributes and the text inside it, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[tuple[str, list[str]]] = []
        self.text: dict[int, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.text[len(self.tags) - 1] = []
        self.open.append((tag, self.text[len(self.tags) - 1]))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _, text in self.open:
            text.append(data)

    def texts(self, tag: str) -> list[str]:
        return ["".join(self.text[i]) for i, (t, _) in enumerate(self.tags) if t == tag and i in self.text]


def parsed(fragment: str) -> Elements:
    elements = Elements()
    elements.feed(fragment)
    return elements


FRAGMENT = rendering.to_fragment("LeDeR governance report, 2026-Q1", REPORT, id_prefix="report-governance")


def test_the_fragment_holds_nothing_a_host_page_cannot() -> None:
    tags = {t for t, _ in parsed(FRAGMENT).tags}
    assert not tags & {"html", "head", "body", "style", "script", "link", "meta"}
    assert "style=" not in FRAGMENT and "<style" not in FRAGMENT and "<!doctype" not in FRAGMENT.lower()
    assert not any(a.startswith("on") for _, attrs in parsed(FRAGMENT).tags for a in attrs)
    assert "http://" not in FRAGMENT.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_each_chart_is_an_image_named_by_its_title_with_its_data_in_a_table() -> None:
    elements = parsed(FRAGMENT)
    ids = [attrs["id"] for _, attrs in elements.tags if "id" in attrs]
    assert len(ids) == len(set(ids)), "ids must be unique in the host page"
    svgs = [attrs for tag, attrs in elements.tags if tag == "svg"]
    assert len(svgs) == 5  # three monthly charts, backlog by age, themes over time
    chart_titles = [c.title for c in rendering.charts(REPORT)]
    for svg, title in zip(svgs, chart_titles, strict=True):
        assert svg["role"] == "img"
        label = svg["aria-labelledby"]
        assert label in ids
        assert f'<title id="{label}">{title}</title>' in FRAGMENT
    captions = elements.texts("caption")
    assert captions == [*chart_titles, "Every figure of the report"]


def test_tables_have_captions_and_every_header_cell_a_scope() -> None:
    elements = parsed(FRAGMENT)
    headers = [attrs for tag, attrs in elements.tags if tag == "th"]
    assert headers and all(attrs.get("scope") in ("row", "col") for attrs in headers)
    assert FRAGMENT.count("<table") == FRAGMENT.count("<caption")
    # The data the bars cannot show are in the tables: suppressed counts and months without data.
    assert '<td class="nhsuk-table__cell">&lt;5</td>' in FRAGMENT
    assert '<td class="nhsuk-table__cell">no data</td>' in FRAGMENT
    assert '<th scope="row">Deaths notified</th><td>12</td>' in FRAGMENT


def test_headings_start_at_h2_and_skip_no_level_and_a_page_can_start_them_at_h1() -> None:
    levels = [int(tag[1]) for tag, _ in parsed(FRAGMENT).tags if tag in ("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels[0] == 2 and min(levels) == 2
    assert all(b - a <= 1 for a, b in pairwise(levels))
    page = rendering.to_html("LeDeR governance report, 2026-Q1", REPORT)
    assert page.count("<h1>") == 1 and 'role="img"' in page and "<style>" in page


def test_a_report_without_series_has_only_its_figures_table() -> None:
    fragment = rendering.to_fragment("KPIs", {"notified": 3})
    assert "<svg" not in fragment and fragment.count("<table") == 1


def test_the_due_date_flag_of_an_action() -> None:
    today = date(2026, 11, 30)
    soon = today + timedelta(days=domain.DUE_SOON_DAYS)
    assert domain.due_flag(False, today - timedelta(days=1), today) == "overdue"
    assert domain.due_flag(False, today, today) == "due_soon"
    assert domain.due_flag(False, soon, today) == "due_soon"
    assert domain.due_flag(False, soon + timedelta(days=1), today) is None
    assert domain.due_flag(True, today - timedelta(days=100), today) is None
    assert domain.action_status(False, today - timedelta(days=1), today) == "overdue"
    assert domain.action_status(False, today, today) == "open"
    assert domain.action_status(True, today - timedelta(days=1), today) == "completed"
