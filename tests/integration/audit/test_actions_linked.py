"""An action the Governance Group agrees for cases lives on its own stream (`action-…`, no case id):
the audit log links it, and everything that happens to it, to each case it names, so each linked
case's history and state show it. The log's entries themselves never change: the links are an index
beside them, which the migration fills from the entries logged before it."""

from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from events import Actor, Envelope
from services.audit.app import definition
from tests.integration.audit.test_audit_pages import publish
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually

START = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
GG = Actor(kind="user", id="gg-chair", role="governance")
PARTNER = Actor(kind="partner", id="southmead", role="partner_system")
MIGRATION = Path(definition.migrations or ".") / "004_action_case_links.sql"
_SEQUENCE = {"notification": count(1), "governance": count(1)}


def envelope(
    event_type: str, data: dict[str, Any], stream: str, version: int, case_id: UUID | None, days: int
) -> Envelope:
    source = event_type.split(".")[0]
    at = START + timedelta(days=days)
    return Envelope(
        event_id=uuid4(),
        event_type=event_type,
        schema_version=1,
        stream_id=stream,
        case_id=case_id,
        stream_version=version,
        source=source,
        source_sequence=next(_SEQUENCE[source]),
        occurred_at=at,
        recorded_at=at,
        actor=GG if source == "governance" else PARTNER,
        correlation_id="actions",
        data=data,
    )


def opened(case_id: UUID, reference: str) -> Envelope:
    data = {"case_id": str(case_id), "reference": reference, "review_type": "initial", "focused_reasons": []}
    return envelope("notification.CaseOpened", data, str(case_id), 1, case_id, 0)


def an_action(action_id: UUID, what: str, case_ids: list[UUID], completed: bool) -> list[Envelope]:
    stream = f"action-{action_id}"
    made = [
        envelope(
            "governance.ActionAgreed",
            {
                "action_id": str(action_id),
                "what": what,
                "organisation": "North Bristol NHS Trust",
                "lead": "Ward manager",
                "due_on": "2026-10-31",
                "case_ids": [str(c) for c in case_ids],
                "themes": ["sepsis"],
            },
            stream,
            1,
            None,
            10,
        ),
        envelope(
            "governance.ActionProgressUpdated",
            {"action_id": str(action_id), "update": "half the wards trained"},
            stream,
            2,
            None,
            20,
        ),
    ]
    if completed:
        made.append(
            envelope(
                "governance.ActionCompleted",
                {"action_id": str(action_id), "evidence": "audit: 96%", "completed_on": "2026-10-20"},
                stream,
                3,
                None,
                49,
            )
        )
    else:
        made.append(
            envelope(
                "governance.ActionOverdue",
                {"action_id": str(action_id), "due_on": "2026-10-31"},
                stream,
                3,
                None,
                61,
            )
        )
    return made


async def test_an_action_linked_to_cases_is_in_each_cases_history_and_state(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    first, second, elsewhere = uuid4(), uuid4(), uuid4()
    screening, training = uuid4(), uuid4()
    envelopes = [opened(first, "LDR-2026-00001"), opened(second, "LDR-2026-00002")]
    envelopes += [opened(elsewhere, "LDR-2026-00003")]
    envelopes += an_action(screening, "Sepsis screening on admission", [first, second], completed=True)
    envelopes += an_action(training, "Train staff in the Mental Capacity Act", [first], completed=False)
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        await publish(kafka_bootstrap, topic_prefix, envelopes)

        async def all_logged() -> bool:
            return bool(await audit.runtime.pool.fetchval("SELECT count(*) FROM audit_log") >= len(envelopes))

        await eventually(all_logged, timeout=60)
        await _shows_the_actions(audit, first, second, elsewhere, screening, training)

        # Entries logged before the index existed are linked by the migration, the same way.
        pool = audit.runtime.pool
        links = "SELECT * FROM audit_case_links ORDER BY case_id, position"
        live = [dict(r) for r in await pool.fetch(links)]
        assert live
        await pool.execute("DELETE FROM audit_case_links; DELETE FROM audit_action_cases")
        sql = MIGRATION.read_text()
        await pool.execute(sql[sql.index("-- Backfill") :])
        assert [dict(r) for r in await pool.fetch(links)] == live
        await _shows_the_actions(audit, first, second, elsewhere, screening, training)


async def _shows_the_actions(
    audit: RunningService, first: UUID, second: UUID, elsewhere: UUID, screening: UUID, training: UUID
) -> None:
    ig = audit.headers("ig_officer", "iggy")

    async def get(path: str, **params: str) -> Any:
        response = await audit.client.get(path, params=params, headers=ig)
        assert response.status_code == 200, response.text
        return response.json()

    async def kinds(case_id: UUID) -> list[str]:
        """What happened to the case (without the log's own reads of it)."""
        entries = (await get(f"/audit/cases/{case_id}/history"))["entries"]
        return [e["event_type"] for e in entries if not e["event_type"].startswith("audit.")]

    state = await get(f"/audit/cases/{first}/state")
    assert state["actions"] == ["Sepsis screening on admission", "Train staff in the Mental Capacity Act"]
    by_id = {a["action_id"]: a for a in state["linked_actions"]}
    assert by_id[str(screening)]["status"] == "completed"
    assert by_id[str(screening)]["organisation"] == "North Bristol NHS Trust"
    assert by_id[str(training)]["status"] == "overdue"
    earlier = await get(f"/audit/cases/{first}/state", as_of=(START + timedelta(days=15)).isoformat())
    assert [(a["what"], a["status"]) for a in earlier["linked_actions"]] == [
        ("Sepsis screening on admission", "open"),
        ("Train staff in the Mental Capacity Act", "open"),
    ]

    second_state = await get(f"/audit/cases/{second}/state")
    assert second_state["actions"] == ["Sepsis screening on admission"]
    assert (await get(f"/audit/cases/{elsewhere}/state"))["actions"] == []

    assert await kinds(second) == [
        "notification.CaseOpened",
        "governance.ActionAgreed",
        "governance.ActionProgressUpdated",
        "governance.ActionCompleted",
    ]
    first_history = await kinds(first)
    assert first_history.count("governance.ActionAgreed") == 2
    assert "governance.ActionOverdue" in first_history
    assert await kinds(elsewhere) == ["notification.CaseOpened"]
