"""Reports as JSON, CSV and a self-contained HTML page with inline SVG charts (nothing is loaded
from the network: the page works offline and in a locked-down browser)."""

import csv
import html
import io
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


def bar_chart(title: str, labels: list[str], series: dict[str, list[float | None]], unit: str = "") -> str:
    """Grouped bars, one group per label. None (no data or suppressed) draws no bar."""
    width, height, left, bottom, top = 760, 260, 48, 40, 30
    values = [v for vs in series.values() for v in vs if isinstance(v, int | float)]
    peak = max(values, default=0) or 1
    group = (width - left - 10) / max(len(labels), 1)
    bar = max(group / (len(series) + 1), 2)
    parts = [
        f'<svg class="chart" role="img" aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
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


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def to_html(title: str, report: dict[str, Any]) -> str:
    charts = []
    series = report.get("monthly", [])
    if series:
        months = [m["month"] for m in series]
        charts.append(
            bar_chart(
                "Cases notified, allocated and completed per month",
                months,
                {
                    "notified": [m["notified"] for m in series],
                    "allocated": [m["allocated"] for m in series],
                    "completed": [m["completed"] for m in series],
                },
            )
        )
        charts.append(
            bar_chart(
                "Median days from notification to allocation",
                months,
                {"median days": [m["median_days_notification_to_allocation"] for m in series]},
                " days",
            )
        )
        charts.append(
            bar_chart(
                "Per cent completed within six months",
                months,
                {
                    "counting paused time": [m["per_cent_completed_within_six_months"] for m in series],
                    "not counting paused time": [
                        m["per_cent_completed_within_six_months_excluding_paused_time"] for m in series
                    ],
                },
                "%",
            )
        )
    if "backlog_by_age" in report:
        backlog = report["backlog_by_age"]
        charts.append(bar_chart("Backlog by age", list(backlog), {"open cases": list(backlog.values())}))
    if report.get("themes_over_time"):
        over = report["themes_over_time"]
        names = sorted({t for period in over for t in period["learning_themes"]})[:6]
        charts.append(
            bar_chart(
                "Learning themes over time",
                [p["period"] for p in over],
                {
                    n: [
                        p["learning_themes"].get(n) if isinstance(p["learning_themes"].get(n), int) else None
                        for p in over
                    ]
                    for n in names
                },
            )
        )
    figures = [
        (k, v)
        for k, v in flatten({k: v for k, v in report.items() if k not in ("monthly", "themes_over_time")})
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>
body {{ font-family: Arial, sans-serif; margin: 2em; color: #212b32; }}
h1 {{ color: #005eb8; }} .chart {{ display: block; margin: 1.5em 0; background: #f0f4f5; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #d8dde0; padding: 4px 10px; text-align: left; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Computed from events only. Groups smaller than 5 are shown as &lt;5.</p>
{"".join(charts)}
<h2>Figures</h2>{_table(figures)}
</body></html>
"""
