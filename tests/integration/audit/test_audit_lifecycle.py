"""A whole case through all five services on one broker: the audit log holds every event once, with no
gap; the case's state can be rebuilt as it was at past moments; and who looked is on record."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import uuid4

import httpx

from infra import db
from infra.settings import database_url_for
from services.allocation.app import definition as allocation
from services.audit.app import definition as audit
from services.governance.app import definition as governance
from services.notification.app import definition as notification_service
from services.review.app import definition as review
from tests.integration.review.test_review_service import FOCUSED_MORE, MINIMUM, post
from tests.support.allocating import allocate_to_rae_with_sam
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually


class Service(Protocol):
    client: httpx.AsyncClient

    def headers(
        self, role: str, sub: str = "alice", *, organisation: str | None = None, **extra: str
    ) -> dict[str, str]: ...


async def test_every_event_of_a_case_is_logged_once_and_its_past_states_and_readers_are_on_record(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    urls = {
        name: database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
        for name in ("notification", "allocation", "review", "governance", "audit")
    }
    for url in urls.values():
        await db.ensure_database(url)
    try:
        async with AsyncExitStack() as stack:
            svc: dict[str, RunningService] = {}
            for name, definition in (
                ("notification", notification_service),
                ("allocation", allocation),
                ("review", review),
                ("governance", governance),
                ("audit", audit),
            ):
                svc[name] = await stack.enter_async_context(
                    running_service(definition, urls[name], kafka_bootstrap, topic_prefix)
                )
            moments = await drive_a_case(svc)
            await check_the_log(svc, moments)
    finally:
        for url in urls.values():
            await db.drop_database(url)


async def notify_over_http(n: Service, body: dict[str, Any]) -> None:
    response = await n.client.post(
        "/notifications",
        headers=n.headers("partner_system", "southmead", organisation=body["notifier"]["organisation"]),
        json=body,
    )
    assert response.status_code == 201, response.text


async def drive_a_case(
    svc: Mapping[str, Service],
    notify: Callable[[Service, dict[str, Any]], Awaitable[None]] = notify_over_http,
) -> dict[str, Any]:
    """A case the way the world makes one: notified, queued, allocated, reviewed (with a pause for an
    inquest), submitted and approved by the QA panel."""
    n, a, r, g = svc["notification"], svc["allocation"], svc["review"], svc["governance"]
    body = notification(**{"circumstances.concerns_about_care": True})
    await notify(n, body)

    async def opened() -> str | None:
        # The partner asks what became of its notification (it may have published on the topic).
        answer = await n.client.get(
            f"/notifications/{body['notification_id']}",
            headers=n.headers("partner_system", "southmead", organisation=body["notifier"]["organisation"]),
        )
        return answer.json()["case_id"] if answer.status_code == 200 else None

    case_id = await eventually(opened, timeout=60)

    async def queued() -> bool:
        waiting = (await a.client.get("/allocation-queue", headers=a.headers("lac"))).json()["cases"]
        return case_id in [c["case_id"] for c in waiting]

    await eventually(queued, timeout=60)
    moments: dict[str, Any] = {"case_id": case_id}
    await asyncio.sleep(0.05)
    moments["notified"] = datetime.now(UTC)
    await allocate_to_rae_with_sam(a, case_id)

    async def started() -> bool:
        return (await r.client.get(f"/reviews/{case_id}", headers=r.headers("lac"))).status_code == 200

    await eventually(started, timeout=60)

    async def reviewer_sees() -> bool:
        seen = await n.client.get(
            f"/cases/{case_id}/person",
            params={"reason": "to contact the family"},
            headers=n.headers("reviewer", "rae"),
        )
        return seen.status_code == 200

    await eventually(reviewer_sees, timeout=60)
    moments["allocated"] = datetime.now(UTC)
    assert (
        await post(r, case_id, "pause", {"reason": "coroners_investigation_or_inquest"})
    ).status_code == 201
    moments["paused"] = datetime.now(UTC)
    assert (await post(r, case_id, "resumption")).status_code == 201
    for path, body in MINIMUM + FOCUSED_MORE:
        assert (await post(r, case_id, path, body)).status_code == 201, path
    assert (await post(r, case_id, "submission")).status_code == 201

    async def awaiting() -> bool:
        reviews = (await g.client.get("/qa/awaiting", headers=g.headers("lac"))).json()["reviews"]
        return case_id in [x["case_id"] for x in reviews]

    await eventually(awaiting, timeout=60)
    moments["submitted"] = datetime.now(UTC)
    # The panel meets today (the services' clock is UTC): a decision before its date is refused.
    held_on = datetime.now(UTC).date().isoformat()
    panel = (await g.client.post("/qa-panels", json={"held_on": held_on}, headers=g.headers("lac"))).json()
    await g.client.post(
        f"/qa-panels/{panel['panel_id']}/agenda", json={"case_id": case_id}, headers=g.headers("lac")
    )
    approved = await g.client.post(
        f"/qa-panels/{panel['panel_id']}/decisions",
        headers=g.headers("qa_panel"),
        json={"case_id": case_id, "decision": "approved", "quality_rating": 4, "themes": ["sepsis"]},
    )
    assert approved.status_code == 201, approved.text
    return moments


async def read_an_action_agreed_for_the_case(g: RunningService, case_id: str) -> None:
    made = await g.client.post(
        "/actions",
        headers=g.headers("governance", "gov.sam"),
        json={
            "what": "Sepsis screening on admission",
            "organisation": "NBT",
            "lead": "Ward manager",
            "due_on": (datetime.now(UTC).date() + timedelta(days=90)).isoformat(),
            "case_ids": [case_id],
        },
    )
    assert made.status_code == 201, made.text
    read = await g.client.get(
        f"/actions/{made.json()['action_id']}", headers=g.headers("governance", "gov.sam")
    )
    assert read.status_code == 200, read.text


async def check_the_log(svc: dict[str, RunningService], moments: dict[str, Any]) -> None:
    audit_svc, case_id = svc["audit"], moments["case_id"]
    pool = audit_svc.runtime.pool
    await read_an_action_agreed_for_the_case(svc["governance"], case_id)
    n = svc["notification"]
    read = await n.client.get(f"/cases/{case_id}", headers=n.headers("lac", "lucy"))
    assert read.status_code == 200, read.text

    async def everything_logged() -> bool:
        for source in ("notification", "allocation", "review", "governance"):
            last = await svc[source].runtime.store.last_sequence()
            logged = await pool.fetchval("SELECT count(*) FROM audit_log WHERE source = $1", source)
            if logged < last:
                return False
        return True

    await eventually(everything_logged, timeout=90)
    await asyncio.sleep(1)  # room for anything doubled to show
    for source in ("notification", "allocation", "review", "governance"):
        last = await svc[source].runtime.store.last_sequence()
        rows = await pool.fetch(
            "SELECT source_sequence, stream_id, envelope FROM audit_log WHERE source = $1 ORDER BY position",
            source,
        )
        assert sorted(r["source_sequence"] for r in rows) == list(range(1, last + 1)), source  # once, no gap
        assert [r["envelope"] for r in sorted(rows, key=lambda r: r["source_sequence"])] == [
            e for _, e in await svc[source].runtime.store.read_all_raw(0, 10_000)
        ]  # the very bytes
        for stream in {r["stream_id"] for r in rows}:
            seqs = [r["source_sequence"] for r in rows if r["stream_id"] == stream]
            assert seqs == sorted(seqs), f"{source} {stream} out of order"
    ig, lac = audit_svc.headers("ig_officer", "iggy"), audit_svc.headers("lac")
    history = (await audit_svc.client.get(f"/audit/cases/{case_id}/history", headers=ig)).json()["entries"]
    sources = [e["source"] for e in history]
    assert {"notification", "allocation", "review", "governance"} <= set(sources)
    assert history[0]["what"] == "notification.CaseOpened" and history[0]["who"] == "southmead"
    assert any(e["what"] == "review.ReviewSubmittedForQA" and e["who"] == "rae" for e in history)
    redacted = (await audit_svc.client.get(f"/audit/cases/{case_id}/history", headers=lac)).json()["entries"]
    assert "sealed personal data withheld" in str(redacted[0]["data"])
    assert (
        await audit_svc.client.get(
            f"/audit/cases/{case_id}/history", headers=audit_svc.headers("reviewer", "rae")
        )
    ).status_code == 403

    async def state(at: datetime) -> dict[str, Any]:
        response = await audit_svc.client.get(
            f"/audit/cases/{case_id}/state", params={"as_of": at.isoformat()}, headers=ig
        )
        return response.json()  # type: ignore[no-any-return]

    at_notification = await state(moments["notified"])
    assert (at_notification["status"], at_notification["review_type"], at_notification["reviewer"]) == (
        "awaiting_allocation",
        "focused",
        None,
    )
    at_allocation = await state(moments["allocated"])
    assert (at_allocation["reviewer"], at_allocation["senior_reviewer"]) == ("rae", "sam")
    at_pause = await state(moments["paused"])
    assert at_pause["review_status"] == "paused" and at_pause["pauses"][0]["to"] is None
    at_submission = await state(moments["submitted"])
    assert at_submission["status"] == "submitted_for_qa" and at_submission["pauses"][0]["to"] is not None

    async def closed() -> bool:
        return (await state(datetime.now(UTC)))["status"] == "closed"

    await eventually(closed, timeout=60)
    access = (await audit_svc.client.get("/audit/access", params={"case_id": case_id}, headers=ig)).json()[
        "access"
    ]
    looked = [(x["who"], x["what"]) for x in access]
    assert ("rae", "notification.PersonalDetailsViewed") in looked
    # Each service's own record of a person's read, as the service made it (issue 15, item 6).
    reads = {(x["who"], x["role"], x["service"], x["read"]) for x in access}
    assert ("alice", "lac", "review", "review") in reads  # the LAC read the review while it started
    assert ("gov.sam", "governance", "governance", "action") in reads
    assert ("lucy", "lac", "notification", "case") in reads
    assert ("iggy", "audit.AuditLogRead") in looked and ("alice", "audit.AuditLogRead") in looked
    async with pool.acquire() as conn:
        from services.audit import log

        await log.sign_checkpoint(conn)
        assert (await log.verify(conn, log.configured_trust())).ok
