"""Reports as JSON, CSV and a self-contained HTML page with inline SVG charts (nothing is loaded
from the network: the page works offline and in a locked-down browser)."""

import csv
import html
import io
from dataclasses import dataclass
from typing import Any

PALETTE = ("#005eb8", "#009639", "#ed8b00", "#7c2855", "#00a9ce", "#ae2573")


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
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["figure", "value"])
    for name, value in flatten(report):
        writer.writerow([name, ", ".join(map(str, value)) if isinstance(value, list) else value])
    return out.getvalue()


# The fragment's own classes: leder-report, and leder-report__figure and chart inside it; the rest are
# the NHS design system's (nhsuk-table, nhsuk-details, ...). Without this stylesheet the charts still
# read well: each SVG has its size and colours.
FRAGMENT_CSS = """
.leder-report__figure { margin: 0 0 32px; }
.leder-report .chart { display: block; max-width: 100%; height: auto; background: #f0f4f5; }
"""


@dataclass(frozen=True)
class Chart:
    title: str
    labels: list[str]
    series: dict[str, list[Any]]
    unit: str = ""


def bar_chart(
    title: str, labels: list[str], series: dict[str, list[Any]], unit: str = "", chart_id: str = "chart"
) -> str:
    """Grouped bars, one group per label. None (no data) or a suppressed count draws no bar. The SVG is
    an image named by its <title>; its data are in `chart_table`."""
    width, height, left, bottom, top = 760, 260, 48, 40, 30
    values = [v for vs in series.values() for v in vs if isinstance(v, int | float)]
    peak = max(values, default=0) or 1
    group = (width - left - 10) / max(len(labels), 1)
    bar = max(group / (len(series) + 1), 2)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="{chart_id}-title" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{html.escape(title)}</title>',
        f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" '
        'stroke="#425563"/>',
    ]
    for i, label in enumerate(labels):
        x0 = left + i * group
        for j, (_name, vs) in enumerate(series.items()):
            value = vs[i] if i < len(vs) else None
            if not isinstance(value, int | float):
                continue
            h = (height - bottom - top) * value / peak
            parts.append(
                f'<rect class="bar" x="{x0 + j * bar + bar / 2:.1f}" y="{height - bottom - h:.1f}" '
                f'width="{bar * 0.9:.1f}" height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{html.escape(label)}: {value}{unit}</title></rect>"
            )
        # Labels that would touch (18 months of a long period) alternate between two rows.
        row = 12 if i % 2 and group < 6 * max(map(len, labels)) else 0
        parts.append(
            f'<text x="{x0 + group / 2:.1f}" y="{height - bottom + 14 + row}" font-size="10" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    for j, name in enumerate(series):
        parts.append(
            f'<rect x="{width - 200}" y="{8 + j * 14}" width="10" height="10" fill="{PALETTE[j]}"/>'
            f'<text x="{width - 185}" y="{17 + j * 14}" font-size="11">{html.escape(name)}</text>'
        )
    parts.append(f'<text x="4" y="{top + 4}" font-size="10">{peak:g}{unit}</text></svg>')
    return "".join(parts)


def _cell(value: Any, unit: str = "") -> str:
    if value is None:
        return "no data"
    if isinstance(value, list):
        return html.escape(", ".join(map(str, value)))
    return html.escape(f"{value}{unit}" if isinstance(value, int | float) else str(value))


def chart_table(chart: Chart) -> str:
    """The chart's data as a table: what the SVG shows, for those who cannot see it."""
    head = "".join(
        f'<th scope="col" class="nhsuk-table__header">{html.escape(h)}</th>' for h in ["", *chart.series]
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


def _figures_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(
        f'<tr class="nhsuk-table__row"><th scope="row">{html.escape(k)}</th><td>{_cell(v)}</td></tr>'
        for k, v in rows
    )
    return (
        '<table class="nhsuk-table"><caption class="nhsuk-table__caption">Every figure of the report'
        '</caption><thead class="nhsuk-table__head"><tr class="nhsuk-table__row">'
        '<th scope="col" class="nhsuk-table__header">Figure</th>'
        '<th scope="col" class="nhsuk-table__header">Value</th></tr></thead>'
        f'<tbody class="nhsuk-table__body">{body}</tbody></table>'
    )


def charts(report: dict[str, Any]) -> list[Chart]:
    """The charts a report has: monthly series, backlog by age, themes over time."""
    found = []
    series = report.get("monthly", [])
    if series:
        months = [m["month"] for m in series]
        found += [
            Chart(
                "Cases notified, allocated and completed per month",
                months,
                {
                    "notified": [m["notified"] for m in series],
                    "allocated": [m["allocated"] for m in series],
                    "completed": [m["completed"] for m in series],
                },
            ),
            Chart(
                "Median days from notification to allocation",
                months,
                {"median days": [m["median_days_notification_to_allocation"] for m in series]},
                " days",
            ),
            Chart(
                "Per cent completed within six months",
                months,
                {
                    "counting paused time": [m["per_cent_completed_within_six_months"] for m in series],
                    "not counting paused time": [
                        m["per_cent_completed_within_six_months_excluding_paused_time"] for m in series
                    ],
                },
                "%",
            ),
        ]
    if "backlog_by_age" in report:
        backlog = report["backlog_by_age"]
        found.append(Chart("Backlog by age", list(backlog), {"open cases": list(backlog.values())}))
    if report.get("themes_over_time"):
        over = report["themes_over_time"]
        names = sorted({t for period in over for t in period["learning_themes"]})[:6]
        found.append(
            Chart(
                "Learning themes over time",
                [p["period"] for p in over],
                {n: [p["learning_themes"].get(n, 0) for p in over] for n in names},
            )
        )
    return found


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
            f"{bar_chart(chart.title, chart.labels, chart.series, chart.unit, chart_id)}"
            '<details class="nhsuk-details"><summary class="nhsuk-details__summary">'
            f'<span class="nhsuk-details__summary-text">Data: {html.escape(chart.title)}</span></summary>'
            f'<div class="nhsuk-details__text">{chart_table(chart)}</div></details></figure>'
        )
    rest = flatten({k: v for k, v in report.items() if k not in ("monthly", "themes_over_time")})
    return (
        f'<div class="leder-report" id="{id_prefix}">'
        f"<h{level}>{html.escape(title)}</h{level}>"
        "<p>Computed from events only. Groups smaller than 5 are shown as &lt;5.</p>"
        f"{''.join(figures)}"
        f"<h{level + 1}>Figures</h{level + 1}>{_figures_table(rest)}</div>"
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
