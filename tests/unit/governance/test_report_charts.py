"""Charts a governance group reads: a zero baseline, labelled gridlines and each bar's value; legends
clear of the data; the commonest themes; every label in words (no developer key, Python list or code)."""

import re
from html.parser import HTMLParser
from typing import Any

from services.governance import rendering

MONTHLY = [
    {
        "month": f"2026-{m:02d}",
        "notified": 10 + m,
        "allocated": "<5" if m == 2 else 8,
        "completed": m,
        "median_days_notification_to_allocation": None if m == 2 else 10,
        "per_cent_completed_within_six_months": 50.0,
        "per_cent_completed_within_six_months_excluding_paused_time": 75.0,
    }
    for m in range(1, 13)
]
THEMES = {
    "learning_themes": {"sepsis": 6, "constipation": "<5"},
    "good_practice_themes": {"communication": 7},
    "lapses_in_care": 9,
    "recommendations": "<5",
    "emerging_themes": ["sepsis", "mental_capacity_act_not_followed"],
    "emerging_rule": "at least 5 in the period and more than 1.5 times the average of the 3 periods before",
    "emerging_compared_with_periods": 3,
    "emerging_note": "Compared with the 3 periods of the same length before this one.",
}
COUNTS = {"A": 40, "H": 7, "J": "<5", "Z": 6, "99": "<5"}
ANNUAL: dict[str, Any] = {
    "period": {"from": "2026-01-01", "to": "2026-12-31"},
    "notified": 80,
    "eligible": 70,
    "allocated": 66,
    "in_progress": 20,
    "completed": 60,
    "not_yet_allocated": "<5",
    "completed_within_six_months": 40,
    "completed_within_six_months_excluding_paused_time": 50,
    "per_cent_completed_within_six_months": 66.7,
    "per_cent_completed_within_six_months_excluding_paused_time": 83.3,
    "median_days_notification_to_allocation": 12,
    "median_days_notification_to_completion": "<5",
    "completed_reviews_by_group": {
        "ethnicity": COUNTS,
        "age_band": {"25-34": 6, "55-64": 30, "under 18": "<5", "85+": 5},
        "sex": {"female": 30, "male": 30},
        "learning_disability_level": {"mild": 20, "moderate": 20, "severe": 10, "profound": "<5"},
        "place_of_death": {"care_home": 20, "hospital": 40},
        "avoidable": {"avoidable": 6, "not_avoidable": 50, "not_recorded": "<5"},
    },
    "median_age_at_death": {"overall": 61, "sex": {"female": 60, "male": 62}, "ethnicity": {"A": 61}},
    "themes": THEMES,
    "monthly": MONTHLY,
}
GOVERNANCE: dict[str, Any] = {
    "period": {"from": "2026-01-01", "to": "2026-03-31"},
    "notified": 30,
    "completed": 12,
    "themes": THEMES,
    "actions": {"opened": 3, "overdue_at_end": 1, "completed": 2},
    "backlog_by_age": {"0-3 months": 7, "3-6 months": "<5", "6-12 months": 0, "over 12 months": 0},
    "monthly": MONTHLY[:3],
    "themes_over_time": [
        {
            "period": period,
            "learning_themes": {
                "access_to_services": "<5",
                "annual_health_check": 0 if period < "2026" else "<5",
                "sepsis": 9,
                "constipation": 12,
                "delays_in_care": 20,
                "diagnostic_overshadowing": 15,
                "epilepsy_care": 8,
                "medication": 30,
            },
        }
        for period in ("2025-04", "2025-07", "2025-10", "2026-01")
    ],
}


class Svg(HTMLParser):
    """Each chart's shapes: bars, legend keys, tick labels, value labels (by their classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict[str, list[dict[str, Any]]]] = []
        self.stack: list[str] = []
        self.text_target: dict[str, Any] | None = None
        self.all_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.charts.append({"bar": [], "legend": [], "tick": [], "value": []})
        if tag == "g":
            self.stack.append(a.get("class", ""))
        if not self.charts:
            return
        chart = self.charts[-1]
        classes = a.get("class", "").split()
        if tag == "rect" and "bar" in classes:
            chart["bar"].append(a)
        if tag in ("rect", "text") and "legend" in self.stack:
            chart["legend"].append(a)
        if tag == "text" and "tick" in classes:
            chart["tick"].append(a)
            self.text_target = a
        if tag == "text" and "value" in classes:
            chart["value"].append(a)
            self.text_target = a

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self.stack:
            self.stack.pop()
        if tag == "text":
            self.text_target = None

    def handle_data(self, data: str) -> None:
        if self.text_target is not None:
            self.text_target["text"] = self.text_target.get("text", "") + data
        self.all_text.append(data)


def shapes(fragment: str) -> Svg:
    svg = Svg()
    svg.feed(fragment)
    return svg


def test_every_chart_has_a_zero_baseline_labelled_gridlines_and_each_bars_value() -> None:
    for report in (ANNUAL, GOVERNANCE):
        charts = shapes(rendering.to_fragment("Report", report)).charts
        assert charts
        for chart in charts:
            ticks = [t["text"] for t in chart["tick"]]
            assert ticks[0] in ("0", "0%"), ticks
            assert len(ticks) >= 3, ticks
            assert chart["bar"], "a chart with no bars"
            values = [v["text"] for v in chart["value"]]
            # Every bar has its value; a suppressed count has its "<5" where its bar would be.
            assert len(values) >= len(chart["bar"])


def test_the_monthly_chart_labels_each_bar_with_its_value_and_suppressed_months_say_so() -> None:
    [counts, *_] = shapes(rendering.to_fragment("Report", ANNUAL)).charts
    values = [v["text"] for v in counts["value"]]
    assert "11" in values and "<5" in values  # January's notified; February's allocated


def _box(a: dict[str, Any]) -> tuple[float, float, float, float]:
    x, y = float(a.get("x", 0)), float(a.get("y", 0))
    if "width" in a:
        return x, y, x + float(a["width"]), y + float(a["height"])
    return x, y - 11, x + 7 * len(a.get("text", "x")), y  # a legend's text: its baseline and size


def test_no_legend_sits_on_the_data() -> None:
    for report in (ANNUAL, GOVERNANCE):
        charts = shapes(rendering.to_fragment("Report", report)).charts
        assert any(chart["legend"] for chart in charts), "charts of several series have a legend"
        for chart in charts:
            for legend in chart["legend"]:
                lx0, ly0, lx1, ly1 = _box(legend)
                for bar in chart["bar"]:
                    bx0, by0, bx1, by1 = _box(bar)
                    assert lx1 <= bx0 or bx1 <= lx0 or ly1 <= by0 or by1 <= ly0, (legend, bar)
                for value in chart["value"]:
                    vy = float(value["y"])
                    assert vy - 10 >= ly1 or vy <= ly0 or lx1 <= float(value["x"]) - 20, (legend, value)


def test_learning_themes_over_time_charts_the_commonest_six() -> None:
    [over] = [c for c in rendering.charts(GOVERNANCE) if c.title == "Learning themes over time"]
    assert list(over.series) == [
        "Medication",
        "Delays in care",
        "Diagnostic overshadowing",
        "Constipation",
        "Sepsis",
        "Epilepsy care",
    ]


def test_the_annual_report_charts_ethnicity_age_band_and_learning_disability_level_in_words() -> None:
    by_title = {c.title: c for c in rendering.charts(ANNUAL)}
    ethnicity = by_title["Completed reviews by ethnic category"]
    assert ethnicity.labels == [
        "White: British",
        "Asian or Asian British: Indian",
        "Asian or Asian British: Pakistani",
        "Not stated",
        "Not known",
    ]
    assert by_title["Completed reviews by age at death"].labels == [
        "Under 18",
        "25 to 34",
        "55 to 64",
        "85 and over",
    ]
    assert by_title["Completed reviews by level of learning disability"].labels == [
        "Mild",
        "Moderate",
        "Severe",
        "Profound",
    ]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {k for k in value} | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)} | {v for v in value if isinstance(v, str)}
    return set()


def test_no_developer_key_python_list_or_ethnicity_code_is_in_the_page_text() -> None:
    for report in (ANNUAL, GOVERNANCE):
        svg = shapes(rendering.to_html("Report", report))
        text = " ".join(svg.all_text)
        developer = {k for k in _keys(report) if "_" in k} | {"learning_disability_level", "age_band"}
        assert not [k for k in developer if k in text]
        assert "['" not in text and "[]" not in text
        cells = [t.strip() for t in svg.all_text]
        assert not [code for code in COUNTS if code in cells], "an ethnicity code shown as a label"
        assert not re.search(r"\b(from|to)\b\s*$", text)


def test_a_report_says_when_there_is_not_enough_history_to_call_a_theme_emerging() -> None:
    report = {
        **GOVERNANCE,
        "themes": {
            **THEMES,
            "emerging_themes": [],
            "emerging_compared_with_periods": 0,
            "emerging_note": "Not enough history to say: the records begin on 1 May 2025.",
        },
    }
    fragment = rendering.to_fragment("Report", report)
    assert "Not enough history to say" in fragment
    assert "<td>none</td>" not in fragment.split("Emerging learning themes")[1][:200]
