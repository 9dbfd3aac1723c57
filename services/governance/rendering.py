"""Reports as JSON, CSV and a self-contained HTML page with inline SVG charts (nothing is loaded
from the network: the page works offline and in a locked-down browser).

The HTML is for a governance group: every label is in words (the NHS data dictionary's ethnic
categories, the review's learning themes, each figure named as people say it), never a developer key,
a code or a Python list. Each chart has a zero baseline, labelled gridlines and each bar's value on
it; its legend sits above the plot, clear of the data."""

import html
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from events.calendar import add_months
from events.partner import ETHNIC_CATEGORY_NAMES
from infra.csvcells import csv_text
from services.governance.reports import SUPPRESSED

PALETTE = ("#005eb8", "#009639", "#ed8b00", "#7c2855", "#00a9ce", "#ae2573")

# The NHS data dictionary's ethnic categories, in its order.
ETHNIC_CATEGORIES = ETHNIC_CATEGORY_NAMES
AGE_BANDS = {
    "under 18": "Under 18",
    "18-24": "18 to 24",
    "25-34": "25 to 34",
    "35-44": "35 to 44",
    "45-54": "45 to 54",
    "55-64": "55 to 64",
    "65-74": "65 to 74",
    "75-84": "75 to 84",
    "85+": "85 and over",
}
LEARNING_DISABILITY_LEVELS = {
    "mild": "Mild",
    "moderate": "Moderate",
    "severe": "Severe",
    "profound": "Profound",
    "unknown": "Not known",
}
SEXES = {"female": "Female", "male": "Male", "other": "Other", "unknown": "Not known"}
PLACES_OF_DEATH = {
    "hospital": "Hospital",
    "home": "Home",
    "care_home": "Care home",
    "hospice": "Hospice",
    "other": "Somewhere else",
}
AVOIDABLE = {"avoidable": "Avoidable", "not_avoidable": "Not avoidable", "not_recorded": "Not recorded"}
BACKLOG_AGES = {
    "0-3 months": "Under 3 months",
    "3-6 months": "3 to 6 months",
    "6-12 months": "6 to 12 months",
    "over 12 months": "Over 12 months",
}
# The review service's learning themes (vocabulary 2026.1) as it labels them; a theme not here is
# written out from its key.
THEMES = {
    "diagnostic_overshadowing": "Diagnostic overshadowing",
    "mental_capacity_act_not_followed": "Mental Capacity Act not followed",
    "dnacpr_process_not_followed": "DNACPR process not followed",
    "delays_in_care": "Delays in care",
    "reasonable_adjustments_missing": "Reasonable adjustments missing",
    "annual_health_check": "Annual health check",
    "epilepsy_care": "Epilepsy care",
    "aspiration_pneumonia": "Aspiration pneumonia",
    "constipation": "Constipation",
    "sepsis": "Sepsis",
    "communication": "Communication",
    "care_coordination": "Care coordination",
    "family_involvement": "Family involvement",
    "end_of_life_care": "End of life care",
    "medication": "Medication",
    "access_to_services": "Access to services",
}
# Each grouping of the annual report: what it is called and its groups' names, in their order.
GROUPS: dict[str, tuple[str, Mapping[str, str]]] = {
    "ethnicity": ("ethnic category", ETHNIC_CATEGORIES),
    "age_band": ("age at death", AGE_BANDS),
    "sex": ("sex", SEXES),
    "learning_disability_level": ("level of learning disability", LEARNING_DISABILITY_LEVELS),
    "place_of_death": ("place of death", PLACES_OF_DEATH),
    "avoidable": ("whether the death was avoidable", AVOIDABLE),
}
CHARTED_GROUPS = ("ethnicity", "age_band", "learning_disability_level")
FIGURES = {
    "notified": "Deaths notified",
    "eligible": "Deaths eligible for review (cases opened)",
    "allocated": "Cases allocated to a reviewer",
    "in_progress": "Reviews in progress at the end of the period",
    "completed": "Reviews completed",
    "not_yet_allocated": "Cases waiting for a reviewer at the end of the period",
    "completed_within_six_months": "Reviews completed within six months of notification",
    "completed_within_six_months_excluding_paused_time": (
        "Reviews completed within six months, not counting time paused"
    ),
    "per_cent_completed_within_six_months": "Completed reviews done within six months",
    "per_cent_completed_within_six_months_excluding_paused_time": (
        "Completed reviews done within six months, not counting time paused"
    ),
    "median_days_notification_to_allocation": "Median time from notification to allocation",
    "median_days_notification_to_completion": "Median time from notification to completion",
    "lapses_in_care": "Lapses in care recorded",
    "recommendations": "Recommendations made",
    "emerging_themes": "Emerging learning themes",
    "emerging_rule": "A learning theme is emerging when it is recorded",
    "emerging_note": "How emerging themes were judged",
    "actions.opened": "Actions agreed in the period",
    "actions.overdue_at_end": "Actions overdue at the end of the period",
    "actions.completed": "Actions completed in the period",
}
NOT_RECORDED = "Not recorded"


def flatten(report: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, item in enumerate(value):
                rows += flatten(item, f"{name}[{i}].")
        else:
            rows.append((name, value))
    return rows


def to_csv(report: dict[str, Any]) -> str:
    rows = [
        (name, ", ".join(map(str, value)) if isinstance(value, list) else value)
        for name, value in flatten(report)
    ]
    return csv_text([("figure", "value"), *rows])


# The fragment's own classes: leder-report, and leder-report__figure and chart inside it; the rest are
# the NHS design system's (nhsuk-table, nhsuk-details, ...). Without this stylesheet the charts still
# read well: each SVG has its size and colours.
FRAGMENT_CSS = """
.leder-report__figure { margin: 0 0 32px; }
.leder-report .chart { display: block; max-width: 100%; height: auto; background: #f0f4f5; }
"""


# Words for codes -------------------------------------------------------------------------------------


def humanise(key: str) -> str:
    """Words for a key nobody labelled: 'care_home' -> 'Care home'."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def theme(key: str) -> str:
    return THEMES.get(key, humanise(key))


def group_label(grouping: str, key: str) -> str:
    if key in ("None", ""):
        return NOT_RECORDED
    names = GROUPS[grouping][1] if grouping in GROUPS else {}
    return names.get(key, humanise(key))


def _in_order(grouping: str, counts: Mapping[str, Any]) -> list[str]:
    """A grouping's keys in its vocabulary's order (the unknown and the unrecorded last)."""
    order = list(GROUPS[grouping][1]) if grouping in GROUPS else []
    return sorted(counts, key=lambda k: (order.index(k) if k in order else len(order), k))


def month_label(month: str) -> str:
    """'2026-01' -> 'Jan 2026'."""
    year, number = (int(p) for p in month.split("-"))
    return f"{date(year, number, 1):%b %Y}"


def quarter_label(start: str) -> str:
    """'2026-01' (a quarter's first month) -> 'Jan to Mar 2026'."""
    year, number = (int(p) for p in start.split("-"))
    first = date(year, number, 1)
    last = add_months(first, 2)
    return f"{first:%b} to {last:%b %Y}" if first.year == last.year else f"{first:%b %Y} to {last:%b %Y}"


def day_label(iso: str) -> str:
    day = date.fromisoformat(iso)
    return f"{day.day} {day:%B %Y}"


# Charts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    title: str
    labels: list[str]
    series: dict[str, list[Any]]
    unit: str = ""
    horizontal: bool = False
    label_heading: str = ""


def _axis(peak: float, unit: str = "") -> list[float]:
    """Ticks from zero to a round number at or above `peak`, three to six of them (percentages up
    to 100)."""
    if unit == "%" and peak <= 100:
        return [0, 20, 40, 60, 80, 100]
    if peak <= 0:
        return [0, 1, 2]
    rough = peak / 4
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    step = max(step, 1)
    return [step * k for k in range(math.ceil(peak / step - 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:,.0f}"


def _value_text(value: Any, unit: str) -> str | None:
    """What is written on a bar: its value (rounded for a percentage), <5 for a suppressed figure,
    nothing for no data."""
    if value == SUPPRESSED:
        return SUPPRESSED
    if not isinstance(value, int | float):
        return None
    if unit == "%":
        return f"{value:.0f}%"
    return _number(round(value, 1))


def _tick_text(value: float, unit: str) -> str:
    return _number(value) + ("%" if unit == "%" else "")


def _text_width(text: str, size: float) -> float:
    """About how wide Arial draws `text` at `size` px (0.6 em a character, generously)."""
    return len(text) * size * 0.6


def _legend(names: list[str], left: float, right: float, top: float) -> tuple[list[str], float]:
    """The series' names with their colours, in rows above the plot; returns the parts and the bottom."""
    parts = ['<g class="legend">']
    x, y = left, top
    for j, name in enumerate(names):
        width = 18 + _text_width(name, 12) + 18
        if x > left and x + width > right:
            x, y = left, y + 20
        parts.append(
            f'<rect class="legend-key" x="{x:.1f}" y="{y:.1f}" width="12" height="12" '
            f'fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text x="{x + 18:.1f}" y="{y + 11:.1f}" font-size="12">{html.escape(name)}</text>'
        )
        x += width
    parts.append("</g>")
    return parts, y + 16


def _open_svg(chart_id: str, title: str, width: float, height: float) -> list[str]:
    return [
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-title" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{html.escape(title)}</title>',
        f'<text x="8" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
    ]


def _bar_title(label: str, name: str, value: Any, unit: str, several: bool) -> str:
    shown = _value_text(value, unit)
    return f"<title>{html.escape(label)}{', ' + html.escape(name) if several else ''}: {shown}</title>"


def _vertical(chart: Chart, chart_id: str) -> str:
    labels, series, unit = chart.labels, chart.series, chart.unit
    names = list(series)
    texts = [t for vs in series.values() for v in vs if (t := _value_text(v, unit))]
    need = max([_text_width(t, 10) + 4 for t in texts] + [14.0])  # each bar as wide as its value
    left, right = 56.0, 16.0
    group_need = max(len(names) * need / 0.8, _text_width(max(labels, key=len, default=""), 11) / 2)
    width = max(760.0, left + right + group_need * max(len(labels), 1))
    group = (width - left - right) / max(len(labels), 1)
    bar = min(group * 0.8 / max(len(names), 1), 56.0)
    legend: list[str] = []
    legend_bottom = 28.0
    if len(names) > 1:
        legend, legend_bottom = _legend(names, left, width - right, 34)
    plot_top = legend_bottom + 22  # room for the value over the tallest bar
    plot_height = 190.0
    base = plot_top + plot_height
    values = [v for vs in series.values() for v in vs if isinstance(v, int | float)]
    ticks = _axis(max(values, default=0), unit)
    top_value = ticks[-1]
    crowded = any(_text_width(label, 11) + 6 > group for label in labels)
    height = base + 24 + (14 if crowded else 0) + 8

    def y_of(value: float) -> float:
        return base - plot_height * value / top_value

    parts = _open_svg(chart_id, chart.title, width, height)
    parts += legend
    parts.append('<g class="axis">')
    for tick in ticks:
        y = y_of(tick)
        colour = "#425563" if tick == 0 else "#aeb7bd"
        parts.append(
            f'<line class="gridline" x1="{left:.1f}" y1="{y:.1f}" x2="{width - right:.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="1"/>'
            f'<text class="tick" x="{left - 6:.1f}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_tick_text(tick, unit)}</text>"
        )
    parts.append("</g>")
    for i, label in enumerate(labels):
        x0 = left + i * group + (group - bar * len(names)) / 2
        for j, (name, vs) in enumerate(series.items()):
            value = vs[i] if i < len(vs) else None
            text = _value_text(value, unit)
            cx = x0 + j * bar + bar / 2
            if isinstance(value, int | float):
                top = y_of(value)
                parts.append(
                    f'<rect class="bar" x="{x0 + j * bar + bar * 0.05:.1f}" y="{top:.1f}" '
                    f'width="{bar * 0.9:.1f}" height="{base - top:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                    f"{_bar_title(label, name, value, unit, len(names) > 1)}</rect>"
                )
            else:
                top = base
            if text:
                parts.append(
                    f'<text class="value" x="{cx:.1f}" y="{top - 4:.1f}" font-size="10" '
                    f'text-anchor="middle">{html.escape(text)}</text>'
                )
        row = 14 if crowded and i % 2 else 0
        parts.append(
            f'<text x="{left + i * group + group / 2:.1f}" y="{base + 16 + row:.1f}" font-size="11" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _horizontal(chart: Chart, chart_id: str) -> str:
    """One row a group, its bars across: room for long names (the ethnic categories) on the left."""
    labels, series, unit = chart.labels, chart.series, chart.unit
    names = list(series)
    texts = [t for vs in series.values() for v in vs if (t := _value_text(v, unit))]
    width = 760.0
    left = min(max([_text_width(label, 12) for label in labels] + [40.0]) + 16, 380.0)
    right = max([_text_width(t, 11) for t in texts] + [20.0]) + 20
    legend: list[str] = []
    legend_bottom = 28.0
    if len(names) > 1:
        legend, legend_bottom = _legend(names, left, width - right, 34)
    plot_top = legend_bottom + 10
    band = 16.0
    row_height = band * len(names) + 10
    base = plot_top + row_height * len(labels)
    plot_width = width - left - right
    values = [v for vs in series.values() for v in vs if isinstance(v, int | float)]
    ticks = _axis(max(values, default=0), unit)
    top_value = ticks[-1]
    height = base + 30

    def x_of(value: float) -> float:
        return left + plot_width * value / top_value

    parts = _open_svg(chart_id, chart.title, width, height)
    parts += legend
    parts.append('<g class="axis">')
    for tick in ticks:
        x = x_of(tick)
        colour = "#425563" if tick == 0 else "#aeb7bd"
        parts.append(
            f'<line class="gridline" x1="{x:.1f}" y1="{plot_top:.1f}" x2="{x:.1f}" y2="{base:.1f}" '
            f'stroke="{colour}" stroke-width="1"/>'
            f'<text class="tick" x="{x:.1f}" y="{base + 16:.1f}" font-size="11" text-anchor="middle">'
            f"{_tick_text(tick, unit)}</text>"
        )
    parts.append("</g>")
    for i, label in enumerate(labels):
        y0 = plot_top + i * row_height + 5
        parts.append(
            f'<text x="{left - 8:.1f}" y="{y0 + row_height / 2:.1f}" font-size="12" '
            f'text-anchor="end">{html.escape(label)}</text>'
        )
        for j, (name, vs) in enumerate(series.items()):
            value = vs[i] if i < len(vs) else None
            text = _value_text(value, unit)
            y = y0 + j * band
            end = left
            if isinstance(value, int | float):
                end = x_of(value)
                parts.append(
                    f'<rect class="bar" x="{left:.1f}" y="{y:.1f}" width="{end - left:.1f}" '
                    f'height="{band - 2:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                    f"{_bar_title(label, name, value, unit, len(names) > 1)}</rect>"
                )
            if text:
                parts.append(
                    f'<text class="value" x="{end + 4:.1f}" y="{y + band - 4:.1f}" font-size="11">'
                    f"{html.escape(text)}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    labels: list[str],
    series: dict[str, list[Any]],
    unit: str = "",
    chart_id: str = "chart",
    horizontal: bool = False,
) -> str:
    """Grouped bars, one group per label, on an axis from zero with labelled gridlines; each bar's
    value on it (a suppressed figure's <5 where its bar would be; no data draws nothing); the legend,
    when there are several series, above the plot. The SVG is an image named by its <title>; its data
    are in `chart_table`."""
    chart = Chart(title, labels, series, unit, horizontal)
    return _horizontal(chart, chart_id) if horizontal else _vertical(chart, chart_id)


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "no data"
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value)) or "none")
    return html.escape(f"{_number(value)}{unit}" if isinstance(value, int | float) else str(value))


def chart_table(chart: Chart) -> str:
    """The chart's data as a table: what the SVG shows, for those who cannot see it."""
    head = "".join(
        f'<th scope="col" class="nhsuk-table__header">{html.escape(h)}</th>'
        for h in [chart.label_heading, *chart.series]
    )
    rows = "".join(
        f'<tr class="nhsuk-table__row"><th scope="row" class="nhsuk-table__header">{html.escape(label)}</th>'
        + "".join(
            f'<td class="nhsuk-table__cell">{_cell(vs[i] if i < len(vs) else None, chart.unit)}</td>'
            for vs in chart.series.values()
        )
        + "</tr>"
        for i, label in enumerate(chart.labels)
    )
    return (
        f'<table class="nhsuk-table"><caption class="nhsuk-table__caption">{html.escape(chart.title)}'
        f'</caption><thead class="nhsuk-table__head"><tr class="nhsuk-table__row">{head}</tr></thead>'
        f'<tbody class="nhsuk-table__body">{rows}</tbody></table>'
    )


def _rank(count: Any) -> float:
    """A count for ordering: a suppressed one is between 1 and 4."""
    return 2.5 if count == SUPPRESSED else float(count) if isinstance(count, int | float) else 0.0


def commonest_themes(periods: list[dict[str, Any]], how_many: int = 6) -> list[str]:
    """The themes recorded most over the periods, commonest first (ties by name)."""
    totals: dict[str, float] = {}
    for period in periods:
        for key, count in period.get("learning_themes", {}).items():
            totals[key] = totals.get(key, 0.0) + _rank(count)
    ranked = sorted((k for k, total in totals.items() if total > 0), key=lambda k: (-totals[k], theme(k)))
    return ranked[:how_many]


def charts(report: dict[str, Any]) -> list[Chart]:
    """The charts a report has: monthly series, backlog by age, themes over time, and the annual
    report's completed reviews by ethnic category, age at death and level of learning disability."""
    found = []
    series = report.get("monthly", [])
    if series:
        months = [month_label(m["month"]) for m in series]
        found += [
            Chart(
                "Cases notified, allocated and completed per month",
                months,
                {
                    "Deaths notified": [m["notified"] for m in series],
                    "Cases allocated": [m["allocated"] for m in series],
                    "Reviews completed": [m["completed"] for m in series],
                },
                label_heading="Month",
            ),
            Chart(
                "Median days from notification to allocation",
                months,
                {"Median days": [m["median_days_notification_to_allocation"] for m in series]},
                " days",
                label_heading="Month",
            ),
            Chart(
                "Per cent completed within six months",
                months,
                {
                    "Counting time paused": [m["per_cent_completed_within_six_months"] for m in series],
                    "Not counting time paused": [
                        m["per_cent_completed_within_six_months_excluding_paused_time"] for m in series
                    ],
                },
                "%",
                label_heading="Month",
            ),
        ]
    if "backlog_by_age" in report:
        backlog = report["backlog_by_age"]
        found.append(
            Chart(
                "Backlog by age",
                [BACKLOG_AGES.get(k, humanise(k)) for k in backlog],
                {"Open cases": list(backlog.values())},
                label_heading="Time since notification",
            )
        )
    if report.get("themes_over_time"):
        over = report["themes_over_time"]
        found.append(
            Chart(
                "Learning themes over time",
                [quarter_label(p["period"]) for p in over],
                {theme(n): [p["learning_themes"].get(n, 0) for p in over] for n in commonest_themes(over)},
                label_heading="Quarter",
            )
        )
    by_group = report.get("completed_reviews_by_group", {})
    for grouping in CHARTED_GROUPS:
        counts = by_group.get(grouping)
        if counts:
            keys = _in_order(grouping, counts)
            name = GROUPS[grouping][0]
            found.append(
                Chart(
                    f"Completed reviews by {name}",
                    [group_label(grouping, k) for k in keys],
                    {"Completed reviews": [counts[k] for k in keys]},
                    horizontal=True,
                    label_heading=name[:1].upper() + name[1:],
                )
            )
    return found


# Every figure, in words --------------------------------------------------------------------------------


def _unit(key: str) -> str:
    if key.startswith("per_cent"):
        return "%"
    if key.startswith("median_days"):
        return " days"
    return ""


def _grouped_rows(prefix: str, grouping: str, counts: Mapping[str, Any], unit: str) -> list[tuple[str, str]]:
    return [
        (f"{prefix}: {group_label(grouping, k)}", _cell(counts[k], unit)) for k in _in_order(grouping, counts)
    ]


def _theme_rows(themes: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in themes.items():
        if key in ("learning_themes", "good_practice_themes"):
            kind = "Learning theme" if key == "learning_themes" else "Good practice theme"
            rows += [
                (f"{kind}: {theme(t)}", _cell(n)) for t, n in sorted(value.items(), key=lambda i: theme(i[0]))
            ]
        elif key == "emerging_themes":
            cannot_say = themes.get("emerging_compared_with_periods") == 0
            words = ", ".join(theme(t) for t in value) or (
                "not enough history to say" if cannot_say else "none"
            )
            rows.append((FIGURES[key], html.escape(words)))
        elif key == "emerging_compared_with_periods":
            continue  # the note says it in words
        else:
            rows.append((FIGURES.get(key, humanise(key)), _cell(value)))
    return rows


def figure_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Every figure of the report not charted over time, as (words, escaped value) rows."""
    rows: list[tuple[str, str]] = []
    handlers: dict[str, Callable[[Any], list[tuple[str, str]]]] = {
        "period": lambda p: [
            ("Start of the period", html.escape(day_label(p["from"]))),
            ("End of the period", html.escape(day_label(p["to"]))),
        ],
        "themes": _theme_rows,
        "backlog_by_age": lambda b: [
            (f"Open cases notified {BACKLOG_AGES.get(k, humanise(k)).lower()} ago", _cell(v))
            for k, v in b.items()
        ],
        "actions": lambda a: [(FIGURES.get(f"actions.{k}", humanise(k)), _cell(v)) for k, v in a.items()],
        "completed_reviews_by_group": lambda g: [
            row
            for grouping, counts in g.items()
            for row in _grouped_rows(
                f"Completed reviews by {GROUPS.get(grouping, (humanise(grouping).lower(), {}))[0]}",
                grouping,
                counts,
                "",
            )
        ],
        "median_age_at_death": lambda m: [
            row
            for grouping, ages in m.items()
            for row in (
                [("Median age at death", _cell(ages, " years"))]
                if grouping == "overall"
                else _grouped_rows(
                    f"Median age at death by {GROUPS.get(grouping, (humanise(grouping).lower(), {}))[0]}",
                    grouping,
                    ages,
                    " years",
                )
            )
        ],
    }
    for key, value in report.items():
        if key in ("monthly", "themes_over_time"):
            continue
        if key in handlers and isinstance(value, dict):
            rows += handlers[key](value)
        elif isinstance(value, dict):
            rows += [(f"{humanise(key)}: {humanise(k)}", _cell(v)) for k, v in flatten(value)]
        else:
            rows.append((FIGURES.get(key, humanise(key)), _cell(value, _unit(key))))
    return rows


def _figures_table(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f'<tr class="nhsuk-table__row"><th scope="row">{html.escape(k)}</th><td>{v}</td></tr>'
        for k, v in rows
    )
    return (
        '<table class="nhsuk-table"><caption class="nhsuk-table__caption">Every figure of the report'
        '</caption><thead class="nhsuk-table__head"><tr class="nhsuk-table__row">'
        '<th scope="col" class="nhsuk-table__header">Figure</th>'
        '<th scope="col" class="nhsuk-table__header">Value</th></tr></thead>'
        f'<tbody class="nhsuk-table__body">{body}</tbody></table>'
    )


def to_fragment(title: str, report: dict[str, Any], id_prefix: str = "leder-report", level: int = 2) -> str:
    """The report to embed in another page: no <html>, <head>, <body> or <style>; headings from
    h`level`; each chart an SVG image named by its <title>, with its data in a table beside it (in an
    NHS details component); then every figure in a table. Classes: the NHS design system's and
    FRAGMENT_CSS's. Ids start with `id_prefix`, to be unique in the host page."""
    figures = []
    for n, chart in enumerate(charts(report), start=1):
        chart_id = f"{id_prefix}-chart-{n}"
        figures.append(
            f'<figure class="leder-report__figure">'
            f"{bar_chart(chart.title, chart.labels, chart.series, chart.unit, chart_id, chart.horizontal)}"
            '<details class="nhsuk-details"><summary class="nhsuk-details__summary">'
            f'<span class="nhsuk-details__summary-text">Data: {html.escape(chart.title)}</span></summary>'
            f'<div class="nhsuk-details__text">{chart_table(chart)}</div></details></figure>'
        )
    return (
        f'<div class="leder-report" id="{id_prefix}">'
        f"<h{level}>{html.escape(title)}</h{level}>"
        "<p>Computed from events only. Small numbers can identify people: counts from 1 to 4, and "
        "percentages and medians of fewer than 5 cases, are shown as &lt;5.</p>"
        f"{''.join(figures)}"
        f"<h{level + 1}>Figures</h{level + 1}>{_figures_table(figure_rows(report))}</div>"
    )


def to_html(title: str, report: dict[str, Any]) -> str:
    """A self-contained page: the fragment, with a stylesheet of its own."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body {{ font-family: Arial, sans-serif; margin: 2em; color: #212b32; }}
h1 {{ color: #005eb8; }} .chart {{ margin: 1.5em 0; }}
table {{ border-collapse: collapse; }} caption {{ text-align: left; font-weight: bold; }}
th, td {{ border-bottom: 1px solid #d8dde0; padding: 4px 10px; text-align: left; }}
{FRAGMENT_CSS}</style></head><body>
{to_fragment(title, report, level=1)}
</body></html>
"""
