"""`leder audit …` as the IG officer runs it, on a real audit log: a replay as of a moment lists only
what had happened by then, every read names its reader, a case the log has never seen is said to be
unknown (and no read of it is logged), and an export's files verify as they were written."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.topics import SERVICES
from infra.eventstore import EventStore
from infra.service import open_store
from infra.settings import Settings
from services.audit import log
from services.audit.app import definition
from tests.support.payloads import complete

ROOT = Path(__file__).parents[3]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAC = Actor(kind="user", id="lena.lac", role="lac")


def envelope(sequence: int, event_type: str, data: dict[str, Any], case_id: UUID, days: int) -> Envelope:
    at = START + timedelta(days=days)
    return Envelope(
        event_id=uuid4(),
        event_type=event_type,
        schema_version=1,
        stream_id=f"case-{case_id}",
        case_id=case_id,
        stream_version=sequence,
        source="notification" if event_type.startswith("notification") else "allocation",
        source_sequence=sequence,
        occurred_at=at,
        recorded_at=at,
        actor=LAC,
        correlation_id="cli",
        # A valid payload around what the test is about: the replay reads each event as its type.
        data=complete(event_type, {"case_id": str(case_id), **data}),
    )


@pytest.fixture
async def audit_log(database_url: str) -> AsyncIterator[EventStore]:
    settings = Settings(
        service="audit",
        database_url=database_url,
        kafka_bootstrap="",
        topic_prefix="",
        http_port=0,
    )
    s = await open_store(definition, settings)
    yield s
    await s.pool.close()


async def a_case(s: EventStore) -> UUID:
    """Opened on 2 March, awaiting allocation on 3 March, allocated on 10 March."""
    case_id = uuid4()
    entries = [
        envelope(
            1,
            "notification.CaseOpened",
            {"reference": "LDR-2026-00007", "review_type": "initial", "focused_reasons": []},
            case_id,
            0,
        ),
        envelope(1, "allocation.CaseAwaitingAllocation", {"deadline": "2026-03-30"}, case_id, 1),
        envelope(
            2,
            "allocation.ReviewerAllocated",
            {"reviewer_user_id": "rae", "senior_reviewer_user_id": "sam"},
            case_id,
            8,
        ),
    ]
    for e in entries:
        async with s.transaction() as conn:
            await log.append(conn, e.canonical(), e)
    return case_id


def leder(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leder.cli", "audit", *args],
        env={**os.environ, "LEDER_AUDIT_DATABASE_URL": database_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def readers(s: EventStore) -> list[tuple[str, str | None]]:
    rows = await s.pool.fetch(
        "SELECT actor_id, envelope::jsonb->'data'->>'what' AS what FROM audit_log"
        " WHERE event_type = 'audit.AuditLogRead' ORDER BY position"
    )
    return [(r["actor_id"], r["what"]) for r in rows]


async def test_a_replay_as_of_a_moment_lists_only_what_the_log_held_then(
    audit_log: EventStore, database_url: str
) -> None:
    case_id = await a_case(audit_log)
    done = await asyncio.to_thread(
        leder, database_url, "replay", str(case_id), "--as-of", "2026-03-05T12:00", "--reader", "ig.jo"
    )
    assert done.returncode == 0, done.stderr
    listed = [line for line in done.stdout.splitlines() if line[:8].strip().isdigit()]
    assert [line.split()[5] for line in listed] == [
        "notification.CaseOpened",
        "allocation.CaseAwaitingAllocation",
    ], done.stdout
    state = json.loads(done.stdout[done.stdout.index("{") :])
    assert (state["status"], state["reviewer"], state["events_seen"]) == ("awaiting_allocation", None, 2)
    assert state["reference"] == "LDR-2026-00007"
    everything = await asyncio.to_thread(leder, database_url, "replay", str(case_id), "--reader", "ig.jo")
    assert "allocation.ReviewerAllocated" in everything.stdout
    assert await readers(audit_log) == [("ig.jo", "cli replay"), ("ig.jo", "cli replay")]


async def test_a_read_names_its_reader_and_an_unknown_case_is_said_to_be_unknown(
    audit_log: EventStore, database_url: str
) -> None:
    case_id = await a_case(audit_log)
    unnamed = await asyncio.to_thread(leder, database_url, "replay", str(case_id))
    assert unnamed.returncode == 2 and "--reader" in unnamed.stderr, unnamed.stderr
    accessed = await asyncio.to_thread(
        leder, database_url, "access", "--case", str(case_id), "--reader", "ig.jo"
    )
    assert accessed.returncode == 0, accessed.stderr
    assert await readers(audit_log) == [("ig.jo", "cli access")]
    nobody = str(uuid4())
    for command in (["replay", nobody], ["access", "--case", nobody]):
        done = await asyncio.to_thread(leder, database_url, *command, "--reader", "ig.jo")
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == f"leder audit {command[0]}: the audit log has no case {nobody}"
        assert "unknown" not in done.stdout and done.stdout == ""
    assert await readers(audit_log) == [("ig.jo", "cli access")]  # nothing was read, nothing logged


async def test_verify_proof_checks_the_files_an_export_writes(
    audit_log: EventStore, database_url: str, tmp_path: Path
) -> None:
    case_id = await a_case(audit_log)
    exported = await asyncio.to_thread(
        leder, database_url, "export", str(case_id), "--out", str(tmp_path), "--reader", "ig.jo"
    )
    assert exported.returncode == 0, exported.stderr
    jsonl = tmp_path / f"{case_id}.jsonl"
    checkpoint = tmp_path / f"{case_id}.checkpoint.json"
    verified = await asyncio.to_thread(leder, database_url, "verify-proof", "--file", str(jsonl))
    assert verified.returncode == 0, verified.stderr
    assert "4 events" in verified.stdout and json.loads(checkpoint.read_text())["key_fingerprint"] in (
        verified.stdout
    ), verified.stdout  # three of the case's and the export's own read

    good_lines, good_checkpoint = jsonl.read_text(), checkpoint.read_text()
    jsonl.write_text(good_lines.replace("rae", "eve", 1))  # an event changed
    changed = await asyncio.to_thread(leder, database_url, "verify-proof", "--file", str(jsonl))
    assert changed.returncode == 1 and "DOES NOT VERIFY" in changed.stdout, changed

    jsonl.write_text(good_lines)
    forged = json.loads(good_checkpoint) | {"signed_at": "2020-01-01T00:00:00+00:00"}
    checkpoint.write_text(json.dumps(forged))  # the checkpoint's signature no longer holds
    resigned = await asyncio.to_thread(leder, database_url, "verify-proof", "--file", str(jsonl))
    assert resigned.returncode == 1 and "signature" in resigned.stdout, resigned

    checkpoint.unlink()
    alone = await asyncio.to_thread(leder, database_url, "verify-proof", "--file", str(jsonl))
    assert alone.returncode == 2 and "checkpoint" in alone.stderr, alone
    assert len(alone.stderr.strip().splitlines()) == 1 and "Traceback" not in alone.stderr


async def test_reconcile_with_no_service_to_ask_says_so_in_a_line(
    audit_log: EventStore, database_url: str
) -> None:
    nowhere = {f"LEDER_{s.upper()}_URL": "http://127.0.0.1:1" for s in SERVICES}

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leder.cli", "audit", "reconcile", "--reader", "ig.jo"],
            env={
                **os.environ,
                **nowhere,
                "LEDER_AUDIT_DATABASE_URL": database_url,
            },  # the system token key: the session's (tests/conftest.py), as `leder up` names its own
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = await asyncio.to_thread(run)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("leder audit reconcile: cannot fetch the notification service's events")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
