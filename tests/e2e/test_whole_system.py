"""The whole system end to end: each service its own process (`leder up` on the embedded stack), driven
only through the public HTTP APIs and topics with real tokens, the way the world drives a case."""

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.calendar import add_months
from events.topics import SERVICES, partner_topic
from infra.embedded import free_port
from infra.tokens import TokenIssuer
from leder.demo.caseload import generate
from tests.e2e.test_leder_up import free_ports, read_until
from tests.integration.audit.test_audit_lifecycle import drive_a_case
from tests.support.browser import NHS_BLUE, chromium_missing, screenshot
from tests.support.notifications import NOTIFIER_ORGANISATION
from tests.support.tokens import issuer_of
from tests.support.waiting import eventually, publish_raw

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@dataclass
class Remote:
    """A service in its own process, reached over HTTP with tokens signed by the stack's people key."""

    client: httpx.AsyncClient
    issuer: TokenIssuer

    def headers(
        self, role: str, sub: str = "alice", *, organisation: str | None = None, **extra: str
    ) -> dict[str, str]:
        """A partner system's token names the test notification's notifier unless told another."""
        if organisation is None and role == "partner_system":
            organisation = NOTIFIER_ORGANISATION
        return {"Authorization": f"Bearer {self.issuer.mint(sub, role, organisation)}", **extra}


@dataclass
class Stack:
    home: Path
    base_port: int
    issuer: TokenIssuer
    bootstrap: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack") / ".leder"
    base = free_ports(6)
    env = {k: v for k, v in os.environ.items() if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP")}
    env |= {
        "LEDER_HOME": str(home),
        "LEDER_BASE_PORT": str(base),
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "leder.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        read_until(up, "The LeDeR system is running", timeout=180)
        local = dict(line.split("=", 1) for line in (home / "env").read_text().splitlines())
        yield Stack(home, base, issuer_of(home), local["LEDER_KAFKA_BOOTSTRAP"])
    finally:
        # SIGTERM, not SIGINT: a background job (`make test &`, a CI runner) starts it with SIGINT ignored.
        up.terminate()
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
        yield {name: Remote(client, stack.issuer) for name, client in clients.items()}
    finally:
        for client in clients.values():
            await client.aclose()


async def test_leder_demo_carries_a_seeded_caseload_through_simulated_months_and_its_reports_open(
    stack: Stack, services: dict[str, Remote], tmp_path: Path
) -> None:
    """First in this module: the demo needs an empty system. What it made is checked through the
    APIs against the caseload its seed generates, so a notification lost, doubled or decided
    otherwise fails here; its reports are opened in a real browser."""
    notifications, months, seed = 60, 12, 7
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDER_")} | {
        "LEDER_HOME": str(stack.home)
    }
    demo = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "leder.cli", "demo", "--notifications", str(notifications),
         "--months", str(months), "--seed", str(seed)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(demo.stdout)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "decided otherwise" not in demo.stdout
    assert not (stack.home / "clock").exists()  # back to real time

    today = date.today()
    caseload = generate(seed, notifications, add_months(today, -months), today)
    opened = [n for n in caseload.notices if n.expected == "case_opened"] + [
        n
        for n in caseload.notices
        if n.expected == "eligibility_to_confirm" and n.story and n.story.eligibility_confirmed
    ]
    n = services["notification"]
    # Every case the caseload opened is open or, approved by a QA panel, closed (the notification
    # service follows governance.CaseClosed): none lost, none counted twice.
    listed = {
        status: (
            await n.client.get("/cases", params={"status": status, "limit": 1000}, headers=n.headers("lac"))
        ).json()["cases"]
        for status in ("open", "closed")
    }
    assert len(listed["open"]) + len(listed["closed"]) == len(opened)
    assert listed["closed"], "the demo's QA panels approved reviews: their cases are closed"
    assert not {c["case_id"] for c in listed["open"]} & {c["case_id"] for c in listed["closed"]}
    for notice in caseload.notices:  # every notification once, with the outcome its person calls for
        answer = await n.client.get(
            f"/notifications/{notice.body['notification_id']}",
            headers=n.headers("partner_system", organisation=notice.body["notifier"]["organisation"]),
        )
        assert answer.json()["outcome"] == notice.expected, notice
    # The simulated months are in the events: the first case opened on its simulated day.
    first = min(n.day for n in opened if n.expected == "case_opened")
    assert min(date.fromisoformat(c["notified_at"][:10]) for c in listed["open"] + listed["closed"]) == first

    r, a = services["review"], services["allocation"]
    feed = (await r.client.get("/events", params={"limit": 5000}, headers=r.headers("ig_officer"))).json()
    events = [json.loads(e) for e in feed["events"]]  # the canonical envelopes, as text
    types = Counter(e["event_type"] for e in events)
    assert (
        types["review.ReviewPaused"] and types["review.ReviewResumed"] and types["review.LapseInCareRecorded"]
    )
    assert types["review.ReviewSubmittedForQA"] > types["review.ReviewCompleted"] > 0  # some returned by QA
    # The deadline scheduler ran on the simulated calendar: its milestones lie in the simulated months.
    milestones = [
        e for e in events if e["event_type"] in ("review.ReviewDeadlineApproaching", "review.ReviewOverdue")
    ]
    assert milestones and all(e["occurred_at"][:10] < today.isoformat() for e in milestones)
    queue = (await a.client.get("/allocation-queue", headers=a.headers("lac"))).json()["cases"]
    assert all(c["days_waiting"] >= 0 for c in queue)

    reports = sorted((stack.home / "demo").glob("*.html"))
    assert [p.name.split("-")[0] for p in reports] == ["activity", "governance", "kpis"]
    for report in reports:
        assert str(report.as_uri()) in demo.stdout  # the demo says where to look
    if not chromium_missing():
        colours = await screenshot(next(p for p in reports if p.name.startswith("activity")), tmp_path)
        assert colours.get(NHS_BLUE, 0) > 2000, "the activity report's charts did not render"


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

    signed = await audit.client.post("/audit/checkpoints", headers=ig)
    assert signed.status_code == 201
    verification = (await audit.client.get("/audit/verification", headers=ig)).json()
    assert verification["ok"] is True, verification
    proof = (
        await audit.client.get(
            "/audit/proofs/inclusion",
            params={"event_id": history[0]["event_id"], "tree_size": signed.json()["tree_size"]},
            headers=ig,
        )
    ).json()
    proof_file, checkpoint_file = tmp_path / "proof.json", tmp_path / "checkpoint.json"
    proof_file.write_text(json.dumps(proof))
    checkpoint_file.write_text(signed.text)
    # Checked as a third party would: against the signed checkpoint, with the key the stack publishes.
    public_key = stack.home / "audit-public-key.pem"
    checked = await asyncio.to_thread(
        subprocess.run,
        [
            *(sys.executable, "-m", "leder.cli", "audit", "verify-proof", "--file", str(proof_file)),
            "--checkpoint",
            str(checkpoint_file),
            "--public-key",
            str(public_key),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and "proof verifies" in checked.stdout


def _nhs_number(first_nine: str) -> str:
    total = sum(int(d) * (10 - i) for i, d in enumerate(first_nine))
    check = 11 - total % 11
    assert check != 10, "pick other digits"
    return first_nine + str(0 if check == 11 else check)


# Distinctive, so that finding one anywhere can only mean this case's personal data leaked.
NHS = _nhs_number("487215936")
PERSON = {
    "person.nhs_number": NHS,
    "person.given_name": "Ysoldewyn",
    "person.family_name": "Quarringtonvex",
    "person.date_of_birth": "1958-02-17",
    "person.postcode": "BS99 7QX",
    "notifier.name": "Wilhelmina Farquharstroud",
    "notifier.email": "wilhelmina.farquharstroud@example.nhs.uk",
    "notifier.phone": "0117 496 0777",
    "next_of_kin.name": "Octavianne Quarringtonvex",
    "next_of_kin.phone": "0117 496 0888",
    "death.cause_of_death": "Zebulonic aspiration pneumonitis",
    "circumstances.concerns_details": "carer Eustachia Blenkinsopp saw Ysoldewyn choke",
    "circumstances.concerns_about_care": True,
}
REVIEW_TEXTS = [
    ("pen-portrait", {"text": "Ysoldewyn adored the Pembertonvale lido and her cat Thistlewhisk."}),
    (
        "family-involvement",
        {
            "step": "comments_received",
            "on": date.today().isoformat(),
            "comments": "Octavianne says the Marrowgate ward ignored her",
        },
    ),
    (
        "care-judgements",
        {
            "phase": "final admission",
            "grade": 3,
            "rationale": "Nurse Corvinaldi missed the Glimmerford sepsis signs",
        },
    ),
    (
        "lapses-in-care",
        {
            "what": "No swallow plan after Corvinaldi's handover",
            "where": "Marrowgate ward",
            "organisation": "Southmead Hospital",
            "contribution": "contributed",
        },
    ),
    (
        "cause-of-death",
        {
            "cause": "Zebulonic aspiration pneumonitis at 14 Fennimore Row",
            "preventable_or_treatable": True,
            "age_at_death": 68,
        },
    ),
    (
        "safeguarding-referrals",
        {
            "to": "Bristol adult safeguarding",
            "on": date.today().isoformat(),
            "why": "neighbour Rudigerio Plumtree took her money",
        },
    ),
    ("notes", {"text": "call Octavianne on 07700 900461 after 5pm"}),
]
REVIEW_STRINGS = [
    "Pembertonvale", "Thistlewhisk", "Marrowgate", "Corvinaldi", "Glimmerford", "Fennimore Row",
    "Rudigerio Plumtree", "07700 900461",
]  # fmt: skip
PERSON_STRINGS = [
    NHS, f"{NHS[:3]} {NHS[3:6]} {NHS[6:]}", "Ysoldewyn", "Quarringtonvex", "BS99 7QX", "Farquharstroud",
    "0117 496 0777", "Octavianne", "0117 496 0888", "Zebulonic", "Eustachia Blenkinsopp",
]  # fmt: skip


async def test_when_retention_ends_the_person_is_found_nowhere_and_the_log_still_verifies(
    stack: Stack, services: dict[str, Remote]
) -> None:
    """Issue 15: a case with distinctive personal data in every field and in the review's free text; the
    retention sweep (the stack's clock moved past 20 years) destroys its keys in every service that holds
    them; then no database (by SQL, and raw data files and WAL), topic, dead-letter topic, log or API
    answer to any role holds any of it, nor the keys; and the audit log still verifies."""
    import asyncpg

    from infra.clock import set_simulated_now
    from infra.keys import LocalKeyFile
    from tests.e2e import shredding
    from tests.support.notifications import notification

    n, a, r, audit = (services[s] for s in ("notification", "allocation", "review", "audit"))
    body = notification(**PERSON)
    organisation = body["notifier"]["organisation"]
    partner = ("ward.clerk", organisation)
    sent = await n.client.post(
        "/notifications",
        json=body,
        headers={"Authorization": f"Bearer {stack.issuer.mint(partner[0], 'partner_system', partner[1])}"},
    )
    assert sent.status_code == 201, sent.text
    case_id = sent.json()["case_id"]
    assert case_id, sent.json()

    lac = a.headers("lac", "lac.alex")
    ids = {}
    for user, senior in (("wren", False), ("sol", True)):
        made = await a.client.post(
            "/reviewers",
            headers=lac,
            json={
                "user_id": user,
                "name": user.title(),
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 3,
            },
        )
        assert made.status_code == 201, made.text
        ids[user] = made.json()["reviewer_id"]
        await a.client.post(
            f"/reviewers/{ids[user]}/training", headers=lac, json={"completed_on": date.today().isoformat()}
        )

    async def queued() -> bool:
        waiting = (await a.client.get("/allocation-queue", headers=lac)).json()["cases"]
        return case_id in [c["case_id"] for c in waiting]

    await eventually(queued, timeout=60)
    allocated = await a.client.post(
        f"/cases/{case_id}/allocation",
        headers=lac,
        json={"reviewer_id": ids["wren"], "senior_reviewer_id": ids["sol"]},
    )
    assert allocated.status_code == 201, allocated.text
    wren = r.headers("reviewer", "wren")

    async def started() -> bool:
        return (await r.client.get(f"/reviews/{case_id}", headers=wren)).status_code == 200

    await eventually(started, timeout=60)
    for path, payload in REVIEW_TEXTS:
        written = await r.client.post(f"/reviews/{case_id}/{path}", headers=wren, json=payload)
        assert written.status_code == 201, (path, written.text)

    async def person_seen() -> bool:
        seen = await n.client.get(
            f"/cases/{case_id}/person", params={"reason": "to arrange the family meeting"},
            headers=n.headers("reviewer", "wren"),
        )  # fmt: skip
        return seen.status_code == 200 and "Quarringtonvex" in seen.text

    await eventually(person_seen, timeout=60)
    review_now = (await r.client.get(f"/reviews/{case_id}", headers=wren)).text
    assert "Thistlewhisk" in review_now and "07700 900461" in review_now  # read as written, before

    # The keys as they are before the end: the data keys (unwrapped here, as only the services can) and
    # the case's key-encryption keys in each service's key file.
    local = dict(line.split("=", 1) for line in (stack.home / "env").read_text().splitlines())
    server = local["LEDER_DATABASE_URL"]
    key_bytes: dict[str, bytes] = {}
    for service in ("notification", "review"):
        key_file = LocalKeyFile(Path(local["LEDER_KEY_DIR"]) / f"{service}.keys")
        conn = await asyncpg.connect(server.rsplit("/", 1)[0] + f"/leder_{service}")
        try:
            wrapped = await conn.fetchval("SELECT wrapped FROM data_keys WHERE key_id = $1", case_id)
        finally:
            await conn.close()
        assert wrapped is not None, service
        key_bytes[f"{service} data key"] = await key_file.unwrap(f"{service}/{case_id}", wrapped)
        for line in key_file.path.read_text().splitlines():
            entry = json.loads(line)
            if entry["name"] == f"{service}/{case_id}":
                key_bytes[f"{service} KEK (as stored)"] = entry["key"].encode()

    # Twenty years and a day later, by the stack's clock: the retention sweep ends the case's records.
    clock = stack.home / "clock"
    later = datetime.now(UTC).replace(year=datetime.now(UTC).year + 21)
    set_simulated_now(clock, later)
    try:

        async def shredded() -> bool:
            person = await n.client.get(
                f"/cases/{case_id}/person",
                params={"reason": "IG check"},
                headers=n.headers("lac", "lac.alex"),
            )
            review = await r.client.get(f"/reviews/{case_id}", headers=r.headers("lac", "lac.alex"))
            return person.status_code == 410 and review.json().get("personal_data_destroyed") is True

        await eventually(shredded, timeout=90, interval=0.5)
    finally:
        clock.unlink(missing_ok=True)

    # Every service has heard it and the audit log has every event, before anything is searched.
    async def logged() -> bool:
        gaps = (await audit.client.get("/audit/gaps", headers=audit.headers("ig_officer", "ig.jo"))).json()
        history = (
            await audit.client.get(
                f"/audit/cases/{case_id}/history", headers=audit.headers("ig_officer", "ig.jo")
            )
        ).json()["entries"]
        return not gaps["gaps"] and any(e["what"] == "review.ReviewPersonalDataDestroyed" for e in history)

    await eventually(logged, timeout=90, interval=0.5)

    secrets = shredding.as_bytes(PERSON_STRINGS + REVIEW_STRINGS) | key_bytes
    # A control that must be found everywhere searched (the case id is not personal): a search that
    # cannot see would otherwise find nothing and pass.
    secrets["control"] = case_id.encode()
    findings = shredding.Findings()
    await shredding.search_databases(server, secrets, findings)
    data_bytes = shredding.search_files(stack.home / "pgdata", secrets, findings, "PostgreSQL file")
    assert data_bytes > 1_000_000 and any((stack.home / "pgdata").rglob("pg_wal/0*"))
    shredding.search_files(stack.home / "logs", secrets, findings, "log")
    records = await shredding.search_topics(stack.bootstrap, secrets, findings)
    assert records > 25  # this case's events alone are more
    urls = {s: str(services[s].client.base_url).rstrip("/") for s in services}
    ids_in_paths = {"case_id": case_id, "notification_id": body["notification_id"]}
    calls = await shredding.search_apis(urls, stack.issuer, ids_in_paths, partner, secrets, findings)
    assert calls > 100
    control = " | ".join(findings.places.pop("control", []))
    for kind in ("database", "PostgreSQL file", "pg_wal", "log", "topic", "GET review", "GET audit"):
        assert kind in control, f"the control was not found by the search of {kind}"
    assert not findings, findings.places

    ig = audit.headers("ig_officer", "ig.jo")
    assert (await audit.client.post("/audit/checkpoints", headers=ig)).status_code == 201
    verification = (await audit.client.get("/audit/verification", headers=ig)).json()
    assert verification["ok"] is True, verification
