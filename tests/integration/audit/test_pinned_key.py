"""The two findings of issue 16 against the audit log, now failing to do harm. A forged one-entry proof
(an altered event, its own leaf hash as the root) is refused by `leder audit verify-proof`, with or
without a checkpoint its forger signed. A log rewritten with the database owner's rights (a personal
details view given to another user, every hash recomputed, re-signed with a new key written into the
database) is reported by /audit/verification and `leder audit verify --public-key`: the first bad
entry named, and the published checkpoint disagreeing."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import Actor, Envelope
from infra.db import Connection
from services.audit import log, merkle
from services.audit.app import definition
from services.audit.cli import _verify_proof
from tests.support.service import RunningService, running_service

ROOT = Path(__file__).parents[3]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LAC = Actor(kind="user", id="lena.lac", role="lac")
VIEWED = "notification.PersonalDetailsViewed"


def envelope(sequence: int, event_type: str, case_id: UUID, **data: Any) -> Envelope:
    at = START + timedelta(hours=sequence)
    return Envelope(
        event_id=uuid4(), event_type=event_type, schema_version=1, stream_id=f"case-{case_id}",
        case_id=case_id, stream_version=sequence, source="notification", source_sequence=sequence,
        occurred_at=at, recorded_at=at, actor=LAC, correlation_id="pinned",
        data={"case_id": str(case_id), **data},
    )  # fmt: skip


async def append(conn: Connection, *envelopes: Envelope) -> None:
    for e in envelopes:
        async with conn.transaction():
            await log.append(conn, e.canonical(), e)


def leder(*args: str, database_url: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leder.cli", "audit", *args],
        env={**os.environ, "LEDER_AUDIT_DATABASE_URL": database_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def verify_proof(proof: Path, checkpoint: Path | None, public_key: str) -> int:
    named = {
        "file": str(proof),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "public_key": public_key,
    }
    return _verify_proof(type("Args", (), named)(), None)


async def test_a_forged_one_entry_proof_is_refused_by_verify_proof(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    case_id = uuid4()
    viewed = envelope(1, VIEWED, case_id, reason="to contact the family")
    async with (
        running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit,
        audit.runtime.pool.acquire() as conn,
    ):
        await append(conn, envelope(2, "notification.CaseOpened", case_id), viewed)
        checkpoint = await log.sign_checkpoint(conn)
        genuine = await log.inclusion_proof(conn, 1, checkpoint.tree_size)
    assert genuine is not None
    public_key = os.environ["LEDER_AUDIT_PUBLIC_KEY_FILE"]
    signed = tmp_path / "checkpoint.json"
    signed.write_text(json.dumps(checkpoint.as_json()))
    good = tmp_path / "genuine.json"
    good.write_text(json.dumps(genuine.as_json() | {"envelope": viewed.canonical().decode()}))
    assert verify_proof(good, signed, public_key) == 0  # the control: a genuine proof verifies

    # The forgery of the finding: the view given to someone else, a tree of one, its own leaf the root.
    altered = viewed.canonical().decode().replace("lena.lac", "mallory")
    leaf = merkle.leaf_hash(altered.encode()).hex()
    forged = tmp_path / "forged.json"
    forged.write_text(
        json.dumps(
            {
                "leaf_index": 0,
                "tree_size": 1,
                "leaf_hash": leaf,
                "proof": [],
                "root_hash": leaf,
                "envelope": altered,
            }
        )
    )
    assert verify_proof(forged, None, public_key) == 2  # no signed checkpoint: refused
    assert verify_proof(forged, signed, public_key) == 1  # it does not lead to the checkpoint's root
    # A checkpoint the forger signs for it, naming the forger's key: not the pinned key's signature.
    mallory = Ed25519PrivateKey.generate()
    at = datetime.now(UTC).replace(microsecond=0)
    their_own = log.Checkpoint(
        1, bytes.fromhex(leaf), at, mallory.sign(log.checkpoint_message(1, bytes.fromhex(leaf), at)),
        log.public_bytes(mallory),
    )  # fmt: skip
    assert their_own.signature_valid(their_own.public_key)  # it would pass a check with its own key
    forged_checkpoint = tmp_path / "forged-checkpoint.json"
    forged_checkpoint.write_text(json.dumps(their_own.as_json()))
    assert verify_proof(forged, forged_checkpoint, public_key) == 1
    # And as a third party runs it, by the command line, with the pinned key in a file.
    for checkpoint_file, code in ((None, 2), (forged_checkpoint, 1), (signed, 1)):
        more = ["--checkpoint", str(checkpoint_file)] if checkpoint_file else []
        done = await asyncio.to_thread(
            leder, "verify-proof", "--file", str(forged), "--public-key", public_key, *more
        )
        assert done.returncode == code, done
        assert "proof verifies" not in done.stdout and "Traceback" not in done.stderr
    done = await asyncio.to_thread(
        leder, "verify-proof", "--file", str(good), "--checkpoint", str(signed), "--public-key", public_key
    )
    assert done.returncode == 0 and "proof verifies" in done.stdout, done


async def rewrite_and_resign(conn: Connection, position: int) -> None:
    """What the database's owner can do: give the personal-details view at `position` to another user,
    recompute every hash from there on and the tree's right edge, and sign a new checkpoint with a key
    of their own, written into the database."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")  # past the append-only triggers
        rows = await conn.fetch("SELECT position, envelope FROM audit_log ORDER BY position")
        envelopes = [r["envelope"] for r in rows]
        envelopes[position] = envelopes[position].replace('"lena.lac"', '"mallory"')
        frontier: list[tuple[int, bytes]] = []
        for at, text in enumerate(envelopes):
            raw = text.encode()
            frontier = merkle.push(frontier, merkle.leaf_hash(raw))
            if at >= position:
                await conn.execute(
                    "UPDATE audit_log SET envelope = $2, actor_id = $3, content_hash = $4, leaf_hash = $5,"
                    " root_after = $6 WHERE position = $1",
                    at, text, json.loads(text)["actor"]["id"], hashlib.sha256(raw).digest(),
                    merkle.leaf_hash(raw), merkle.frontier_root(frontier),
                )  # fmt: skip
        await conn.execute(
            "UPDATE log_frontier SET hashes = $1, sizes = $2",
            [h for _, h in frontier],
            [n for n, _ in frontier],
        )
        theirs = Ed25519PrivateKey.generate()
        await conn.execute("CREATE TABLE signing_key (private_key bytea NOT NULL)")
        await conn.execute(
            "INSERT INTO signing_key VALUES ($1)",
            theirs.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            ),
        )
        root = merkle.root([merkle.leaf_hash(t.encode()) for t in envelopes])
        at_time = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
        await conn.execute(
            "INSERT INTO checkpoints VALUES ($1, $2, $3, $4, $5)",
            len(envelopes), root, at_time, theirs.sign(log.checkpoint_message(len(envelopes), root, at_time)),
            log.public_bytes(theirs),
        )  # fmt: skip


async def verification(audit: RunningService) -> dict[str, Any]:
    response = await audit.client.get("/audit/verification", headers=audit.headers("ig_officer", "iggy"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_log_rewritten_and_resigned_by_its_owner_is_reported_against_the_published_checkpoints(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    opened = [envelope(1, "notification.CaseOpened", case_id)]
    before = [envelope(n, "notification.CaseNoted", case_id, note=f"note {n}") for n in (2, 3)]
    viewed = envelope(4, VIEWED, case_id, reason="to contact the family")  # position 3
    after = [envelope(n, "notification.CaseNoted", case_id, note=f"note {n}") for n in (5, 6)]
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as audit:
        async with audit.runtime.pool.acquire() as conn:
            # Checkpoints signed as the log grows, each published outside the database as it is signed.
            await append(conn, *opened, *before)
            await log.sign_checkpoint(conn)
            await append(conn, viewed)
            await log.sign_checkpoint(conn)
            await append(conn, *after)
            await log.sign_checkpoint(conn)
        assert (await verification(audit))["ok"] is True  # the control: untouched, it verifies
        async with audit.runtime.pool.acquire() as conn:
            await rewrite_and_resign(conn, 3)
            assert await conn.fetchval("SELECT actor_id FROM audit_log WHERE position = 3") == "mallory"
        found = await verification(audit)
    assert found["ok"] is False, found
    assert found["first_bad_position"] == 3, found
    assert "published checkpoint of tree size 4" in found["problem"] and "disagrees" in found["problem"], (
        found
    )
    assert "not signed by the pinned key" in found["problem"], found

    public_key = os.environ["LEDER_AUDIT_PUBLIC_KEY_FILE"]
    done = await asyncio.to_thread(
        leder, "verify", "--public-key", public_key, "--as", "iggy", database_url=database_url
    )
    assert done.returncode == 1, done
    result = json.loads(done.stdout)
    assert result["ok"] is False and result["first_bad_position"] == 3, result
    assert "published checkpoint of tree size 4" in result["problem"], result
    # Without the published checkpoints, the pinned key alone still refuses the owner's new signature.
    alone = await asyncio.to_thread(
        leder, "verify", "--public-key", public_key, "--checkpoint-log", os.devnull, "--as", "iggy",
        database_url=database_url,
    )  # fmt: skip
    assert alone.returncode == 1 and "not signed by the pinned key" in json.loads(alone.stdout)["problem"]
