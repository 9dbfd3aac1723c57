"""The audit log's tamper evidence, proofs, catch-up, gaps and reconciliation."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from events.topics import service_topic
from infra import db
from infra.db import Connection
from infra.settings import database_url_for
from services.audit import log, merkle
from services.audit.app import definition
from services.audit.cli import _verify_proof
from services.audit.reconcile import reconcile
from services.notification.app import definition as notification_service
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

ROOT = Path(__file__).parents[3]


@pytest.fixture
async def source(pg_server_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[RunningService, str]]:
    """A real notification service on topics of its own, to take events from."""
    url = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(url)
    prefix = f"s{uuid4().hex[:8]}."
    async with running_service(notification_service, url, kafka_bootstrap, prefix) as svc:
        yield svc, prefix
    await db.drop_database(url)


async def source_events(
    svc: RunningService, bootstrap: str, prefix: str, n: int
) -> list[tuple[bytes, bytes]]:
    for i in range(n):
        await svc.client.post(
            "/notifications",
            json=notification(**{"person.nhs_number": None, "person.family_name": f"Person{i}"}),
            headers=svc.headers("lac"),
        )
    records = await read_topic(bootstrap, service_topic("notification", prefix), at_least=n)
    ordered = sorted(records, key=lambda r: json.loads(r.value)["source_sequence"])
    return [(r.key or b"", r.value) for r in ordered]


async def logged(audit: RunningService) -> list[int]:
    rows = await audit.runtime.pool.fetch(
        "SELECT source_sequence FROM audit_log WHERE source = 'notification' ORDER BY source_sequence"
    )
    return [r["source_sequence"] for r in rows]


async def test_a_stopped_audit_service_catches_up_a_dropped_event_shows_as_a_gap_and_reconcile_fills_it(
    source: tuple[RunningService, str], database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    svc, source_prefix = source
    events = await source_events(svc, kafka_bootstrap, source_prefix, 8)
    topic = service_topic("notification", topic_prefix)
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        await publish_raw(kafka_bootstrap, topic, events[:3])
        assert await eventually(lambda: _at_least(audit, 3), timeout=60) == [1, 2, 3]
    # The audit service is down while events 4..8 are published, without event 5 (dropped).
    await publish_raw(kafka_bootstrap, topic, events[3:4] + events[5:])
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        assert await eventually(lambda: _at_least(audit, 7), timeout=60) == [1, 2, 3, 4, 6, 7, 8]
        gaps = (await audit.client.get("/audit/gaps", headers=audit.headers("ig_officer"))).json()["gaps"]
        assert [(g["first"], g["last"]) for g in gaps["notification"]] == [(5, 5)]

        async def fetch(src: str, after: int, limit: int) -> tuple[list[str], int]:
            response = await svc.client.get(
                "/events", params={"after": after, "limit": limit}, headers=svc.headers("system")
            )
            body = response.json()
            return body["events"], body["last_sequence"]

        assert (await svc.client.get("/events", headers=svc.headers("lac"))).status_code == 403
        filled = await reconcile(audit.runtime.store, ["notification"], fetch, batch=3)
        assert filled == {"notification": 1}
        assert await logged(audit) == [1, 2, 3, 4, 5, 6, 7, 8]
        assert (await audit.client.get("/audit/gaps", headers=audit.headers("ig_officer"))).json()[
            "gaps"
        ] == {}
        # Redelivered, the events change nothing.
        await publish_raw(kafka_bootstrap, topic, events)
        async with audit.runtime.pool.acquire() as conn:
            assert (await log.verify(conn, log.configured_trust())).ok
        assert await audit.runtime.pool.fetchval("SELECT count(*) FROM audit_log") == 8


async def _at_least(audit: RunningService, n: int) -> list[int]:
    found = await logged(audit)
    return found if len(found) >= n else []


async def filled_log(
    audit: RunningService,
    kafka_bootstrap: str,
    topic_prefix: str,
    source: tuple[RunningService, str],
    n: int = 10,
) -> None:
    svc, source_prefix = source
    events = await source_events(svc, kafka_bootstrap, source_prefix, n)
    await publish_raw(kafka_bootstrap, service_topic("notification", topic_prefix), events)
    await eventually(lambda: _at_least(audit, n), timeout=60)


@pytest.mark.parametrize("tamper", ["change_a_byte", "delete_an_entry", "insert_an_entry", "rewrite_history"])
async def test_verify_fails_and_names_the_first_bad_entry_when_the_log_is_tampered_with(
    source: tuple[RunningService, str],
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tamper: str,
) -> None:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        await filled_log(audit, kafka_bootstrap, topic_prefix, source)
        async with audit.runtime.pool.acquire() as conn:
            await log.sign_checkpoint(conn)
            assert (await log.verify(conn, log.configured_trust())).ok
            tx = conn.transaction()
            await tx.start()
            try:
                # As a database superuser, bypassing the append-only triggers.
                await conn.execute("SET LOCAL session_replication_role = replica")
                if tamper == "change_a_byte":
                    await conn.execute(
                        "UPDATE audit_log SET envelope = replace(envelope, '\"lac\"', '\"lad\"')"
                        " WHERE position = 6"
                    )
                elif tamper == "delete_an_entry":
                    await conn.execute("DELETE FROM audit_log WHERE position = 4")
                elif tamper == "insert_an_entry":
                    # A forged entry at position 3, its own hashes right, the later entries moved along.
                    await conn.execute("UPDATE audit_log SET position = -position - 1 WHERE position >= 3")
                    await conn.execute("UPDATE audit_log SET position = -position WHERE position < 0")
                    await _insert_forged(conn, 3)
                else:
                    # Entry 2 replaced wholesale, hashes and all: only the tree can tell.
                    await conn.execute("DELETE FROM audit_log WHERE position = 2")
                    await _insert_forged(conn, 2)
                result = await log.verify(conn, log.configured_trust())
            finally:
                await tx.rollback()
        expected = {"change_a_byte": 6, "delete_an_entry": 4, "insert_an_entry": 3, "rewrite_history": 2}[
            tamper
        ]
        assert not result.ok
        assert result.first_bad_position == expected, result
        async with audit.runtime.pool.acquire() as conn:
            assert (await log.verify(conn, log.configured_trust())).ok  # and, untouched, it verifies again


async def _insert_forged(conn: Connection, position: int) -> None:
    forged = b'{"forged": "an event that never happened"}'
    # The forger keeps the tree head stored at that place: recomputing every later one is the attack
    # only a signed checkpoint answers.
    root_after = await conn.fetchval("SELECT root_after FROM audit_log WHERE position = $1", position + 1)
    await conn.execute(
        "INSERT INTO audit_log (position, event_id, source, source_sequence, event_type, stream_id,"
        " occurred_at, actor_id, envelope, content_hash, leaf_hash, root_after) VALUES ($1, $2,"
        " 'notification', 999, 'notification.CaseOpened', 'x', now(), 'mallory', $3, $4, $5, $6)",
        position,
        uuid4(),
        forged.decode(),
        hashlib.sha256(forged).digest(),
        merkle.leaf_hash(forged),
        root_after,
    )


async def test_inclusion_and_consistency_proofs_verify_with_the_standalone_verifier_and_fail_when_tampered(
    source: tuple[RunningService, str],
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        await filled_log(audit, kafka_bootstrap, topic_prefix, source, n=9)
        ig = audit.headers("ig_officer")
        event_id = await audit.runtime.pool.fetchval("SELECT event_id FROM audit_log WHERE position = 4")
        inclusion = (
            await audit.client.get("/audit/proofs/inclusion", params={"event_id": str(event_id)}, headers=ig)
        ).json()
        consistency = (
            await audit.client.get("/audit/proofs/consistency", params={"from": 3, "to": 9}, headers=ig)
        ).json()
        signed = (await audit.client.post("/audit/checkpoints", headers=ig)).json()
        assert signed["root_hash"] == inclusion["root_hash"] == consistency["second_root"]
        assert (
            await audit.client.get(
                "/audit/proofs/inclusion",
                params={"event_id": str(event_id)},
                headers=audit.headers("reviewer"),
            )
        ).status_code == 403
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps(signed))
    for name, proof in (("inclusion", inclusion), ("consistency", consistency)):
        good = tmp_path / f"{name}.json"
        good.write_text(json.dumps(proof))
        assert _verify_proof(args(good, checkpoint), None) == 0
        bad = dict(proof, proof=[*proof["proof"][:-1], "00" * 32])
        good.write_text(json.dumps(bad))
        assert _verify_proof(args(good, checkpoint), None) == 1


def args(proof: Path, checkpoint: Path) -> object:
    """verify-proof's arguments: the public key is the configured one (LEDER_AUDIT_PUBLIC_KEY_FILE)."""
    return type("Args", (), {"file": str(proof), "checkpoint": str(checkpoint)})()


async def test_the_ig_officers_command_line_verifies_exports_and_is_itself_on_record(
    source: tuple[RunningService, str],
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        await filled_log(audit, kafka_bootstrap, topic_prefix, source, n=3)
        case_id = await audit.runtime.pool.fetchval(
            "SELECT case_id FROM audit_log WHERE case_id IS NOT NULL LIMIT 1"
        )
        env = {**os.environ, "LEDER_AUDIT_DATABASE_URL": database_url}

        def leder(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "leder.cli", "audit", *args],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )

        verified = await asyncio.to_thread(leder, "verify", "--as", "iggy")
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["ok"] is True
        exported = await asyncio.to_thread(
            leder, "export", str(case_id), "--out", str(tmp_path), "--as", "iggy"
        )
        assert exported.returncode == 0, exported.stderr
        line = json.loads((tmp_path / f"{case_id}.jsonl").read_text().splitlines()[0])
        proof, checkpoint = tmp_path / "one.json", tmp_path / f"{case_id}.checkpoint.json"
        proof.write_text(json.dumps(line))
        assert _verify_proof(args(proof, checkpoint), None) == 0
        line["envelope"] = line["envelope"].replace("notification", "notificatioN", 1)
        proof.write_text(json.dumps(line))
        assert _verify_proof(args(proof, checkpoint), None) == 1  # the event itself changed
        readers = await audit.runtime.pool.fetch(
            "SELECT envelope::jsonb->'data'->>'what' AS what FROM audit_log WHERE actor_id = 'iggy'"
            " ORDER BY position"
        )
        assert [r["what"] for r in readers] == ["cli verify", "cli export"]
