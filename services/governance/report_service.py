"""Assembles each report from the facts in the governance database, for any past period.

The facts are read on the event loop (the database); everything computed from them (parsing, every
figure) runs in a worker thread, so that a long period never keeps the service from answering anything
else meanwhile (/healthz, other callers). The API caps a period at MAX_REPORT_YEARS (infra.params)."""

import asyncio
import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from events.calendar import add_months
from infra.eventstore import EventStore
from services.governance import reports
from services.governance.reports import Fact


async def load_facts(store: EventStore, until: date) -> list[Fact]:
    """Every event observed from other services and every governance event, up to `until`."""
    before = datetime.combine(until + timedelta(days=1), time(), UTC)
    observed = await store.pool.fetch(
        "SELECT event_type, schema_version, case_id, occurred_at, data::text AS data FROM observed_events"
        " WHERE occurred_at < $1::date + 1",
        until,
    )
    own = await store.read_occurred_before(before)

    def parsed() -> list[Fact]:
        facts = [
            Fact(
                r["event_type"],
                r["case_id"],
                r["occurred_at"].date(),
                json.loads(r["data"]),
                r["schema_version"],
            )
            for r in observed
        ]
        moments = [r["occurred_at"] for r in observed]
        for recorded in own:
            envelope = json.loads(recorded.envelope)
            case_id = envelope["case_id"]
            facts.append(
                Fact(
                    recorded.event_type,
                    UUID(case_id) if case_id is not None else None,
                    (occurred := datetime.fromisoformat(envelope["occurred_at"])).astimezone(UTC).date(),
                    envelope["data"],
                    envelope["schema_version"],
                )
            )
            moments.append(occurred)
        # In the order they occurred, the observed first of any that occurred at the same moment.
        order = sorted(range(len(facts)), key=moments.__getitem__)
        return [facts[i] for i in order]

    return await asyncio.to_thread(parsed)


def month_bounds(month: str) -> tuple[date, date]:
    year, number = (int(p) for p in month.split("-"))
    start = date(year, number, 1)
    return start, add_months(start, 1) - timedelta(days=1)


def quarter_bounds(quarter: str) -> tuple[date, date]:
    year, q = quarter.upper().split("-Q")
    start = date(int(year), 3 * (int(q) - 1) + 1, 1)
    return start, add_months(start, 3) - timedelta(days=1)


def _today(store: EventStore) -> date:
    """The service's today (the demo's simulated one under `leder demo`): no month after it is charted."""
    return store.clock().date()


def _figures(facts: list[Fact], start: date, end: date) -> dict[str, Any]:
    return reports.publishable(reports.kpis(facts, start, end))


async def kpi_report(store: EventStore, start: date, end: date) -> dict[str, Any]:
    facts, today = await load_facts(store, end), _today(store)

    def compose() -> dict[str, Any]:
        return {
            **_figures(facts, start, end),
            "backlog_by_age": reports.backlog_by_age(facts, end),
            "monthly": reports.monthly_series(facts, add_months(start, -11), end, today),
        }

    return await asyncio.to_thread(compose)


async def activity_report(store: EventStore, start: date, end: date) -> dict[str, Any]:
    facts, today = await load_facts(store, end), _today(store)

    def compose() -> dict[str, Any]:
        return {
            **_figures(facts, start, end),
            "themes": reports.themes(facts, start, end),
            "backlog_by_age": reports.backlog_by_age(facts, end),
            "monthly": reports.monthly_series(facts, start, end, today),
        }

    return await asyncio.to_thread(compose)


async def governance_report(store: EventStore, start: date, end: date) -> dict[str, Any]:
    facts, today = await load_facts(store, end), _today(store)
    actions = await store.pool.fetch("SELECT * FROM actions")
    quarters = [
        (add_months(start, -3 * k), add_months(start, -3 * k + 3) - timedelta(days=1))
        for k in range(3, -1, -1)
    ]

    def compose() -> dict[str, Any]:
        return {
            **_figures(facts, start, end),
            "themes": reports.themes(facts, start, end),
            "actions": {
                "opened": sum(1 for a in actions if start <= a["agreed_on"] <= end),
                "overdue_at_end": sum(
                    1
                    for a in actions
                    if a["due_on"] < end and (a["completed_on"] is None or a["completed_on"] > end)
                ),
                "completed": sum(
                    1 for a in actions if a["completed_on"] and start <= a["completed_on"] <= end
                ),
            },
            "backlog_by_age": reports.backlog_by_age(facts, end),
            "monthly": reports.monthly_series(facts, start, end, today),
            "themes_over_time": [
                {"period": f"{s:%Y-%m}", **reports.themes(facts, s, e)} for s, e in quarters
            ],
        }

    return await asyncio.to_thread(compose)


async def annual_report(store: EventStore, year: int) -> dict[str, Any]:
    start, end = date(year, 1, 1), date(year, 12, 31)
    facts, today = await load_facts(store, end), _today(store)

    def compose() -> dict[str, Any]:
        completed = [
            c
            for c in reports.cases_as_of(facts, end).values()
            if c.completed_on and start <= c.completed_on <= end
        ]
        return {
            **_figures(facts, start, end),
            "completed_reviews_by_group": reports.grouped(completed),
            "median_age_at_death": reports.median_age(completed),
            "themes": reports.themes(facts, start, end),
            "monthly": reports.monthly_series(facts, start, end, today),
        }

    return await asyncio.to_thread(compose)
