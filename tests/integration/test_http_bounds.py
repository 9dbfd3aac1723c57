"""The HTTP edge answers bad input with a 4xx problem, never a 500, and writes nothing for it (issue 16,
item 5): text PostgreSQL cannot store (NUL, lone surrogates) in any body, query or path; integers, dates,
moments, months and quarters out of their bounds; report periods over the cap; bodies over the size
limit (refused before they are read, the token checked first: a 200 MB body leaves the service's
memory as it was); the security headers on every answer; and a reviewer told the same whether a case
they may not see exists or not."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import uvicorn

from infra import db
from infra.embedded import free_port
from infra.http import MAX_REQUEST_BYTES
from infra.service import ServiceDefinition
from infra.settings import database_url_for
from services.allocation.app import definition as allocation
from services.audit.app import definition as audit
from services.governance import reports
from services.governance.app import definition as governance
from services.notification.app import definition as notification
from services.review.app import definition as review
from tests.integration.allocation.test_allocation_service import allocate as allocate_case
from tests.integration.allocation.test_allocation_service import open_cases, register
from tests.integration.review.test_review_service import NOW
from tests.integration.review.test_review_service import allocate as allocate_review
from tests.support.notifications import notification as partner_notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually

BIG = str(2**63)  # a bigint no longer holds it: once a 500 from the database
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "content-security-policy": "frame-ancestors 'none'",
    "x-frame-options": "DENY",
}


@pytest.fixture
async def start(
    pg_server_url: str, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Callable[[ServiceDefinition], Any]]:
    """Starts a service on a database of its own (several run in one test), dropped after the test."""
    made: list[str] = []

    def started(definition: ServiceDefinition) -> Any:
        url = database_url_for(pg_server_url, f"leder_test_{definition.name[:5]}_{uuid4().hex[:10]}")
        made.append(url)
        return running_service(definition, url, kafka_bootstrap, topic_prefix)

    yield started
    for url in made:
        await db.drop_database(url)


@pytest.fixture
async def notifications(start: Callable[[ServiceDefinition], Any]) -> AsyncIterator[RunningService]:
    async with start(notification) as svc:
        yield svc


@pytest.fixture
async def reviews(start: Callable[[ServiceDefinition], Any]) -> AsyncIterator[RunningService]:
    async with start(review) as svc:
        svc.runtime.clock = lambda: NOW
        yield svc


@pytest.fixture
async def gov(start: Callable[[ServiceDefinition], Any]) -> AsyncIterator[RunningService]:
    async with start(governance) as svc:
        yield svc


@pytest.fixture
async def audit_log(start: Callable[[ServiceDefinition], Any]) -> AsyncIterator[RunningService]:
    async with start(audit) as svc:
        yield svc


@pytest.fixture
async def allocations(start: Callable[[ServiceDefinition], Any]) -> AsyncIterator[RunningService]:
    async with start(allocation) as svc:
        svc.runtime.clock = lambda: NOW
        yield svc


def refused(response: httpx.Response, status: int = 422, field: str | None = None) -> dict[str, Any]:
    """A problem (RFC 9457) with that status, naming `field` among its errors when one is given."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json", response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["code"] and problem["detail"]
    if field is not None:
        assert field in [e["field"] for e in problem.get("errors", [])], problem
    return problem


async def written(svc: RunningService) -> int:
    """How much the service has recorded: its events, and the rows of its inbox and outbox too."""
    return int(await svc.runtime.store.last_sequence())


# --- text PostgreSQL cannot store -------------------------------------------------------------------


async def test_a_nul_or_a_lone_surrogate_in_a_notification_is_422_naming_the_field_and_writes_nothing(
    notifications: RunningService,
) -> None:
    svc = notifications
    for field, value in (("organisation", "South\u0000mead"), ("name", "Dr \ud800 Patel")):
        body = partner_notification()
        body["notifier"][field] = value
        # As a lone surrogate travels: escaped in the JSON (it has no UTF-8 of its own).
        sent = json.dumps(body).encode()
        answer = await svc.client.post(
            "/notifications",
            content=sent,
            headers=svc.headers("lac", **{"Content-Type": "application/json"}),
        )
        problem = refused(answer, 422, f"notifier.{field}")
        assert problem["errors"][0]["type"] == "unstorable_text"
    assert await written(svc) == 0
    assert await svc.runtime.pool.fetchval("SELECT count(*) FROM notifications") == 0


async def test_a_nul_in_a_query_a_path_or_any_body_text_of_the_notification_service_is_422(
    notifications: RunningService,
) -> None:
    svc = notifications
    opened = await svc.client.post(
        "/notifications", json=partner_notification(), headers=svc.headers("partner_system")
    )
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    before = await written(svc)
    lac = svc.headers("lac")
    refused(await svc.client.get(f"/cases/{case_id}/person?reason=a%00b", headers=lac), 422, "reason")
    refused(await svc.client.get(f"/cases/{case_id}%00", headers=lac), 422, "(path)")
    refused(await svc.client.get("/cases?reference=LDR-2026-0000%00", headers=lac), 422, "reference")
    reject = {"decision": "reject", "reason": "not \u0000 eligible"}
    refused(await svc.client.post(f"/cases/{case_id}/eligibility", json=reject, headers=lac), 422, "reason")
    raw = b'{"decision": "reject", "reason": "a\x00b"}'  # a raw NUL, not escaped: named as well
    answer = await svc.client.post(
        f"/cases/{case_id}/eligibility", content=raw, headers={**lac, "Content-Type": "application/json"}
    )
    refused(answer, 422, "reason")
    not_utf8 = await svc.client.post(
        f"/cases/{case_id}/eligibility",
        content=b'{"decision": "reject", "reason": "\xff\xfe"}',
        headers={**lac, "Content-Type": "application/json"},
    )
    refused(not_utf8, 422, "(body)")
    deep = await svc.client.post(
        f"/cases/{case_id}/eligibility",
        content=b"[" * 200_000,
        headers={**lac, "Content-Type": "application/json"},
    )
    assert 400 <= deep.status_code < 500, deep.text
    assert await written(svc) == before


async def test_a_nul_in_any_review_text_is_422_naming_the_field_and_writes_nothing(
    reviews: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    svc = reviews
    case_id = uuid4()
    await allocate_review(svc, kafka_bootstrap, topic_prefix, case_id)
    before = await written(svc)
    rae = svc.headers("reviewer", "rae")
    for path, body, field in (
        ("notes", {"text": "a\u0000b"}, "text"),
        ("pen-portrait", {"text": "\ud83d alone"}, "text"),
        ("contacts", {"party": "professional", "status": "completed", "on": "2026-10-20",
                      "role": "GP", "organisation": "Brun\u0000swick"}, "organisation"),
        ("learning", {"text": "ok", "themes": ["communication\u0000"]}, "themes.0"),
        ("lapses-in-care", {"what": "w", "where": "ward", "organisation": "o\u0000",
                            "contribution": "contributed"}, "organisation"),
    ):  # fmt: skip
        answer = await svc.client.post(
            f"/reviews/{case_id}/{path}",
            content=json.dumps(body),
            headers={**rae, "Content-Type": "application/json"},
        )
        refused(answer, 422, field)
    assert await written(svc) == before


async def test_a_nul_in_governance_and_allocation_text_is_422_and_writes_nothing(
    gov: RunningService, allocations: RunningService
) -> None:
    before = await written(gov)
    action = {"what": "x\u0000", "organisation": "o", "lead": "l", "due_on": "2027-01-01"}
    refused(await gov.client.post("/actions", json=action, headers=gov.headers("governance")), 422, "what")
    refused(
        await gov.client.get("/actions?organisation=%00", headers=gov.headers("lac")), 422, "organisation"
    )
    assert await written(gov) == before

    svc = allocations
    reviewer = {
        "user_id": "r\u0000",
        "name": "Rae",
        "organisations": ["Sirona\u0000"],
        "senior": False,
        "capacity": 3,
    }
    problem = refused(await svc.client.post("/reviewers", json=reviewer, headers=svc.headers("lac")), 422)
    assert {e["field"] for e in problem["errors"]} == {"user_id", "organisations.0"}
    rae = await register(svc, "Rae")
    before = await written(svc)
    deactivation = {"reason": "left \u0000 the team"}
    answer = await svc.client.post(
        f"/reviewers/{rae}/deactivation", json=deactivation, headers=svc.headers("lac")
    )
    refused(answer, 422, "reason")
    assert await written(svc) == before


async def test_a_correlation_id_with_bytes_we_cannot_log_is_cleaned_never_a_500(
    notifications: RunningService,
) -> None:
    svc = notifications
    for sent in (b"abc\x01def\x7f", b"\xc3\xa9t\xc3\xa9", b"\x00" * 10, b"x" * 5000):
        headers = [
            (b"authorization", svc.headers("lac")["Authorization"].encode()),
            (b"x-correlation-id", sent),
        ]
        answer = await svc.client.get("/cases", headers=headers)
        assert answer.status_code == 200, answer.text
        echoed = answer.headers["x-correlation-id"]
        assert echoed and len(echoed) <= 100 and all(0x21 <= ord(c) <= 0x7E for c in echoed), echoed


# --- numbers, dates, moments and periods out of bounds ------------------------------------------------


async def test_offsets_dates_and_moments_out_of_bounds_are_422_naming_the_parameter(
    notifications: RunningService, audit_log: RunningService
) -> None:
    lac = notifications.headers("lac")
    for query, field in (
        (f"offset={BIG}", "offset"),
        ("offset=-1", "offset"),
        ("notified_to=9999-12-31", "notified_to"),
        ("notified_from=0001-01-01", "notified_from"),
        ("notified_to=0001-01-01", "notified_to"),
    ):
        refused(await notifications.client.get(f"/cases?{query}", headers=lac), 422, field)
    assert (await notifications.client.get("/cases?notified_to=2100-12-31", headers=lac)).status_code == 200
    for query, field in ((f"after={BIG}", "after"), ("after=-2", "after"), ("limit=0", "limit")):
        events = await notifications.client.get(
            f"/events?{query}", headers=notifications.headers("ig_officer")
        )
        refused(events, 422, field)

    ig = audit_log.headers("ig_officer")
    for path, field in (
        ("/audit/access?to=0001-01-01T00:00%2B14:00", "to"),
        ("/audit/access?from=9999-12-31T23:59:59-14:00", "from"),
        (f"/audit/access?after={BIG}", "after"),
        (f"/audit/proofs/consistency?from=1&to={BIG}", "to"),
        (f"/audit/proofs/consistency?from={BIG}&to=2", "from"),
        (f"/audit/proofs/inclusion?event_id={uuid4()}&tree_size={BIG}", "tree_size"),
        (f"/audit/cases/{uuid4()}/state?as_of=0001-01-01T00:00%2B14:00", "as_of"),
        (f"/audit/cases/{uuid4()}/state?as_of=9999-12-31T23:00", "as_of"),
        (f"/events?after={BIG}", "after"),
    ):
        refused(await audit_log.client.get(path, headers=ig), 422, field)
    fine = await audit_log.client.get("/audit/access?to=2026-01-01T00:00%2B14:00", headers=ig)
    assert fine.status_code == 200, fine.text


async def test_a_date_in_a_body_out_of_bounds_is_422_naming_the_field_and_writes_nothing(
    reviews: RunningService,
    allocations: RunningService,
    gov: RunningService,
    kafka_bootstrap: str,
    topic_prefix: str,
) -> None:
    case_id = uuid4()
    await allocate_review(reviews, kafka_bootstrap, topic_prefix, case_id)
    before = await written(reviews)
    rae = reviews.headers("reviewer", "rae")
    for path, body, field in (
        ("contacts", {"party": "gp", "status": "completed", "on": "0001-01-01"}, "on"),
        ("records", {"source": "GP", "requested_on": "0001-01-01"}, "requested_on"),
        ("family-involvement", {"step": "invited_to_comment", "on": "9999-12-31"}, "on"),
        ("safeguarding-referrals", {"to": "Bristol", "on": "0001-01-01", "why": "concern"}, "on"),
    ):
        refused(await reviews.client.post(f"/reviews/{case_id}/{path}", json=body, headers=rae), 422, field)
    refused(
        await reviews.client.get("/reviews?due_before=9999-12-31", headers=reviews.headers("lac")),
        422,
        "due_before",
    )
    assert await written(reviews) == before

    rae_id = await register(allocations, "Rae", trained_on=None)
    training = {"completed_on": "0001-01-01"}
    answer = await allocations.client.post(
        f"/reviewers/{rae_id}/training", json=training, headers=allocations.headers("lac")
    )
    refused(answer, 422, "completed_on")

    before = await written(gov)
    refused(
        await gov.client.post("/qa-panels", json={"held_on": "9999-12-31"}, headers=gov.headers("lac")),
        422,
        "held_on",
    )
    action = {"what": "x", "organisation": "o", "lead": "l", "due_on": "9999-12-31"}
    refused(await gov.client.post("/actions", json=action, headers=gov.headers("governance")), 422, "due_on")
    assert await written(gov) == before


async def test_report_months_quarters_and_periods_out_of_bounds_or_over_ten_years_are_422(
    gov: RunningService,
) -> None:
    lac = gov.headers("lac")
    for year in ("0000", "0001", "9999", "1899", "2101"):
        refused(await gov.client.get(f"/reports/kpis?month={year}-01", headers=lac), 422, "month")
        refused(await gov.client.get(f"/reports/governance?quarter={year}-Q1", headers=lac), 422, "quarter")
    for query, field, code in (
        ("from=1620-01-01&to=2026-01-01", "from", "validation_failed"),
        ("from=2016-01-01&to=2026-01-01", "to", "period_too_long"),
        ("from=2026-01-01&to=9999-12-31", "to", "validation_failed"),
    ):
        problem = refused(await gov.client.get(f"/reports/activity?{query}", headers=lac), 422, field)
        assert problem["code"] == code
    assert (await gov.client.get(f"/reports/annual?year={BIG}", headers=lac)).status_code == 422
    for query in ("month=2026-01", "month=1900-01", "month=2100-12"):
        assert (await gov.client.get(f"/reports/kpis?{query}", headers=lac)).status_code == 200
    ten_years = await gov.client.get("/reports/activity?from=2016-01-02&to=2026-01-01", headers=lac)
    assert ten_years.status_code == 200, ten_years.text
    described = (await gov.client.get("/openapi.json")).json()["paths"]["/reports/activity"]["get"]
    assert "10 years" in json.dumps(described)


async def test_a_report_is_computed_off_the_event_loop_so_healthz_answers_meanwhile(
    gov: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report's figures take as long as they take (here a second, made so): /healthz still answers
    at once meanwhile, since the figures are computed in a worker thread."""
    computed = reports.monthly_series

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)  # holds the thread it runs on, as a long computation would
        return computed(*args, **kwargs)

    monkeypatch.setattr(reports, "monthly_series", slow)
    report = asyncio.create_task(
        gov.client.get("/reports/activity?from=2017-01-01&to=2026-12-31", headers=gov.headers("lac"))
    )
    await asyncio.sleep(0.2)
    assert not report.done()
    started = time.perf_counter()
    health = await gov.client.get("/healthz")
    waited = time.perf_counter() - started
    assert health.status_code == 200
    assert waited < 0.5 and not report.done(), waited
    assert (await report).status_code == 200


# --- the size limit, and the token before the body --------------------------------------------------


async def test_a_body_over_the_limit_is_413_and_without_a_token_401_before_it_is_read(
    notifications: RunningService,
) -> None:
    svc = notifications
    over = b"{" + b" " * MAX_REQUEST_BYTES + b"}"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(over), 65536):
            yield over[start : start + 65536]

    declared = await svc.client.post(
        "/notifications", content=over, headers={"Content-Type": "application/json"}
    )
    assert refused(declared, 413)["code"] == "request_too_large"
    unauthenticated = await svc.client.post("/notifications", content=chunks())
    refused(unauthenticated, 401)
    streamed = await svc.client.post("/notifications", content=chunks(), headers=svc.headers("lac"))
    assert refused(streamed, 413)["code"] == "request_too_large"
    assert await written(svc) == 0
    documented = (await svc.client.get("/openapi.json")).json()["paths"]["/cases/{case_id}/eligibility"][
        "post"
    ]
    assert "413" in documented["responses"]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def send_raw(port: int, head: bytes, body_chunks: int, chunked: bool) -> int:
    """Send a request of `body_chunks` MiB over a real socket, stopping once the service answers (as
    a client would when the server answers early): the status it answered with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    mib = b"x" * (1024 * 1024)

    async def send_body() -> None:
        for _ in range(body_chunks):
            writer.write(b"%x\r\n%s\r\n" % (len(mib), mib) if chunked else mib)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    sending = asyncio.create_task(send_body())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout=120)
    finally:
        sending.cancel()
        writer.close()
        try:
            await sending
        except (asyncio.CancelledError, ConnectionError):
            pass
    return int(status_line.split()[1])


async def test_a_200_mb_body_is_refused_without_the_service_growing(reviews: RunningService) -> None:
    """Through uvicorn on a real socket, as the service runs: 200 MB declared is refused before a
    byte is read (413); 200 MB chunked without a token gets its 401 before the body is read; 200 MB
    chunked with a token is refused once it passes the limit. The process grows by under 20 MB."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(reviews.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return bool(server.started)

    await eventually(started)
    try:
        path = f"/reviews/{uuid4()}/notes"
        token = reviews.headers("reviewer", "rae")["Authorization"]
        before = rss_bytes()
        declared = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
        ).encode()
        assert await send_raw(port, declared, 200, chunked=False) == 413
        anonymous = f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        assert await send_raw(port, anonymous, 200, chunked=True) == 401
        signed = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        assert await send_raw(port, signed, 200, chunked=True) == 413
        grown = rss_bytes() - before
        assert grown < 20 * 1024 * 1024, f"grew by {grown / 1e6:.1f} MB"
    finally:
        server.should_exit = True
        await serving


# --- security headers -----------------------------------------------------------------------------


async def test_every_answer_carries_the_security_headers_and_hsts_only_over_tls(
    notifications: RunningService,
) -> None:
    svc = notifications
    answers = [
        await svc.client.get("/cases", headers=svc.headers("lac")),  # 200, personal data
        await svc.client.get("/cases"),  # 401
        await svc.client.get("/cases", headers=svc.headers("reviewer")),  # 403
        await svc.client.get(f"/cases/{uuid4()}", headers=svc.headers("lac")),  # 404
        await svc.client.get("/cases?offset=-1", headers=svc.headers("lac")),  # 422
        await svc.client.get("/healthz"),
        await svc.client.get("/openapi.json"),
    ]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name, answer.headers)
        assert "strict-transport-security" not in answer.headers
    transport = httpx.ASGITransport(app=svc.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://service") as tls:
        answer = await tls.get("/cases", headers=svc.headers("lac"))
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"].startswith("max-age=")


# --- the same answer whether or not a case exists ---------------------------------------------------


def same_answer(one: httpx.Response, other: httpx.Response, one_id: object, other_id: object) -> None:
    """The same status, code, title and words (but for the case's own id), and the same members."""
    assert one.status_code == other.status_code, (one.text, other.text)
    a, b = one.json(), other.json()
    assert a.keys() == b.keys()
    assert (a["code"], a["title"]) == (b["code"], b["title"])
    assert a["detail"].replace(str(one_id), "ID") == b["detail"].replace(str(other_id), "ID")


async def test_a_reviewer_gets_the_same_answer_for_a_case_not_theirs_whether_or_not_it_exists(
    notifications: RunningService, reviews: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    svc = notifications
    opened = await svc.client.post(
        "/notifications", json=partner_notification(), headers=svc.headers("partner_system")
    )
    existing, missing = opened.json()["case_id"], str(uuid4())
    for role in ("reviewer", "senior_reviewer"):
        mallory = svc.headers(role, "mallory")
        for path in ("/cases/{}", "/cases/{}/person?reason=curious"):
            there = await svc.client.get(path.format(existing), headers=mallory)
            not_there = await svc.client.get(path.format(missing), headers=mallory)
            assert there.status_code == 403, there.text
            same_answer(there, not_there, existing, missing)
    lac = await svc.client.get(f"/cases/{missing}", headers=svc.headers("lac"))
    assert lac.status_code == 404  # the LAC sees every case: what does not exist is not found

    case_id, unknown, known = uuid4(), uuid4(), uuid4()
    await allocate_review(reviews, kafka_bootstrap, topic_prefix, case_id)
    await reviews.runtime.pool.execute(
        "INSERT INTO case_references (case_id, reference) VALUES ($1, 'LDR-2026-09999')", known
    )
    for role in ("reviewer", "senior_reviewer"):
        mallory = reviews.headers(role, "mallory")
        read = await reviews.client.get(f"/reviews/{case_id}", headers=mallory)
        assert read.status_code == 403, read.text
        for other in (unknown, known):
            same_answer(read, await reviews.client.get(f"/reviews/{other}", headers=mallory), case_id, other)
        for path, body in (("notes", {"text": "x"}), ("submission", {}), ("escalation", {"detail": "y"})):
            if path != "escalation" or role == "senior_reviewer":
                wrote = await reviews.client.post(f"/reviews/{case_id}/{path}", json=body, headers=mallory)
                for other in (unknown, known):
                    elsewhere = await reviews.client.post(
                        f"/reviews/{other}/{path}", json=body, headers=mallory
                    )
                    same_answer(wrote, elsewhere, case_id, other)
    # The LAC is told which: a case never heard of (404) or known and waiting for its review (409).
    lac = reviews.headers("lac")
    escalate = {"detail": "why"}
    assert (
        await reviews.client.post(f"/reviews/{unknown}/escalation", json=escalate, headers=lac)
    ).status_code == 404
    assert (
        await reviews.client.post(f"/reviews/{known}/escalation", json=escalate, headers=lac)
    ).status_code == 409


async def test_a_reviewer_declaring_a_conflict_on_a_case_not_theirs_is_told_the_same_whether_or_not_it_exists(
    allocations: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    svc = allocations
    [case_id] = await open_cases(svc, kafka_bootstrap, topic_prefix, 3)
    rae, sam = await register(svc, "Rae"), await register(svc, "Sam", senior=True)
    await register(svc, "Mallory")
    assert (await allocate_case(svc, case_id, rae, sam)).status_code == 201
    declared, missing = {"reason": "I know the family"}, uuid4()
    mallory = svc.headers("reviewer", "mallory")
    there = await svc.client.post(f"/cases/{case_id}/conflict-declaration", json=declared, headers=mallory)
    not_there = await svc.client.post(
        f"/cases/{missing}/conflict-declaration", json=declared, headers=mallory
    )
    assert there.status_code == 403, there.text
    same_answer(there, not_there, UUID(case_id), missing)


async def test_governance_routes_give_a_reviewer_the_same_403_whatever_they_name(gov: RunningService) -> None:
    for role in ("reviewer", "senior_reviewer"):
        headers = gov.headers(role, "mallory")
        first = await gov.client.get(f"/actions/{uuid4()}", headers=headers)
        second = await gov.client.get(f"/qa-panels/{uuid4()}", headers=headers)
        assert first.status_code == second.status_code == 403
        assert first.json()["code"] == second.json()["code"] == "forbidden"
