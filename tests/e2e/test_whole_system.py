"""The whole system end to end: each service its own process (`leder up` on the embedded stack), driven
only through the public HTTP APIs and topics with real tokens, the way the world drives a case."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.topics import SERVICES, partner_topic
from infra.auth import mint_token
from infra.embedded import free_port
from tests.e2e.test_leder_up import five_free_ports, read_until
from tests.integration.audit.test_audit_lifecycle import drive_a_case
from tests.support.waiting import eventually, publish_raw

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@dataclass
class Remote:
    """A service in its own process, reached over HTTP with tokens signed by the stack's secret."""

    client: httpx.AsyncClient
    secret: str

    def headers(self, role: str, sub: str = "alice", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.secret, sub, role)}", **extra}


@dataclass
class Stack:
    home: Path
    base_port: int
    secret: str
    bootstrap: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack") / ".leder"
    base = five_free_ports()
    env = {k: v for k, v in os.environ.items() if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP")}
    env |= {
        "LEDER_HOME": str(home),
        "LEDER_BASE_PORT": str(base),
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        read_until(up, "The LeDeR system is running", timeout=180)
        local = dict(line.split("=", 1) for line in (home / "env").read_text().splitlines())
        yield Stack(home, base, (home / "jwt-secret").read_text().strip(), local["LEDER_KAFKA_BOOTSTRAP"])
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()


@pytest.fixture
async def services(stack: Stack) -> AsyncIterator[dict[str, Remote]]:
    clients = {
        name: httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.base_port + i}", timeout=30)
        for i, name in enumerate(SERVICES)
    }
    try:
        yield {name: Remote(client, stack.secret) for name, client in clients.items()}
    finally:
        for client in clients.values():
            await client.aclose()


async def test_a_case_from_a_partners_notification_to_an_ig_officers_verified_replay(
    stack: Stack, services: dict[str, Remote], tmp_path: Path
) -> None:
    async def publish_notification(_: Any, body: dict[str, Any]) -> None:
        # A partner system (a hospital) publishes the death to the partner topic.
        await publish_raw(
            stack.bootstrap, partner_topic(), [(body["notification_id"].encode(), json.dumps(body).encode())]
        )

    moments = await drive_a_case(services, notify=publish_notification)
    case_id = moments["case_id"]
    g = services["governance"]
    action = await g.client.post(
        "/actions",
        headers=g.headers("governance", "gina"),
        json={
            "what": "Sepsis screening tool on every ward",
            "organisation": "North Bristol NHS Trust",
            "lead": "Director of Nursing",
            "due_on": (date.today() + timedelta(days=90)).isoformat(),
            "case_ids": [case_id],
            "themes": ["sepsis"],
        },
    )
    assert action.status_code == 201, action.text
    done = await g.client.post(
        f"/actions/{action.json()['action_id']}/completion",
        headers=g.headers("governance", "gina"),
        json={"evidence": "audit: 97% screened"},
    )
    assert done.json()["status"] == "completed"

    audit = services["audit"]
    ig = audit.headers("ig_officer", "iggy")

    async def full_history() -> list[dict[str, Any]]:
        entries = (await audit.client.get(f"/audit/cases/{case_id}/history", headers=ig)).json()["entries"]
        seen = {e["what"] for e in entries}
        # Each service's events reach the audit service on their own topic, in their own time.
        wanted = {
            "notification.CaseOpened",
            "allocation.ReviewerAllocated",
            "review.ReviewSubmittedForQA",
            "governance.CaseClosed",
        }
        return entries if wanted <= seen else []

    history = await eventually(full_history, timeout=90)
    steps = [(e["source"], e["what"], e["who"]) for e in history]
    assert steps[0][:2] == ("notification", "notification.CaseOpened")
    for expected in [
        ("allocation", "allocation.ReviewerAllocated", "alice"),
        ("review", "review.ReviewPaused", "rae"),
        ("review", "review.ReviewSubmittedForQA", "rae"),
        ("governance", "governance.ReviewApprovedByQA", "alice"),
        ("governance", "governance.CaseClosed", "alice"),
    ]:
        assert expected in steps, expected
    whens = [e["when"] for e in history]
    assert whens == sorted(whens)  # in order

    states = []
    for moment in ("notified", "allocated", "submitted"):
        response = await audit.client.get(
            f"/audit/cases/{case_id}/state", params={"as_of": moments[moment].isoformat()}, headers=ig
        )
        states.append((response.json()["status"], response.json()["reviewer"]))
    assert states == [
        ("awaiting_allocation", None),
        ("review_in_progress", "rae"),
        ("submitted_for_qa", "rae"),
    ]

    assert (await audit.client.post("/audit/checkpoints", headers=ig)).status_code == 201
    verification = (await audit.client.get("/audit/verification", headers=ig)).json()
    assert verification["ok"] is True, verification
    proof = (
        await audit.client.get(
            "/audit/proofs/inclusion", params={"event_id": history[0]["event_id"]}, headers=ig
        )
    ).json()
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(json.dumps(proof))
    checked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "infra.cli", "audit", "verify-proof", "--file", str(proof_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and "proof verifies" in checked.stdout
