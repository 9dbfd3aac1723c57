"""The review service's answers on wrong states and impossible dates (409 naming the state, 404 only
for what does not exist, 422 naming the field and the rule), and a reopened case's review back with
its reviewer."""

from uuid import UUID, uuid4

from events import EventPayload
from events.governance import CaseClosed, CaseReopened, ReviewApprovedByQA
from events.topics import service_topic
from tests.integration.review.test_review_service import MINIMUM, NOW, allocate, envelope, post, svc
from tests.support.service import RunningService
from tests.support.waiting import eventually, publish_raw

__all__ = ["svc"]  # the fixture


async def test_a_write_to_a_case_known_but_not_yet_allocated_is_409_and_to_an_unknown_one_404(
    svc: RunningService,
) -> None:
    known = uuid4()
    await svc.runtime.pool.execute(
        "INSERT INTO case_references (case_id, reference) VALUES ($1, 'LDR-1')", known
    )
    for case_id, status, code in ((known, 409, "review_not_started"), (uuid4(), 404, "review_not_found")):
        answer = await post(svc, case_id, "escalation", {"detail": "x"}, who="lac-1", role="lac")
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
        # To a reviewer, neither is theirs: the same 403 whether the case exists or not (issue 16).
        for path, body in (("notes", {"text": "x"}), ("submission", {}), ("resumption", {})):
            answer = await post(svc, case_id, path, body)
            assert (answer.status_code, answer.json()["code"]) == (403, "not_allocated_reviewer"), answer.text


async def test_dates_in_the_future_or_received_before_requested_are_422_naming_the_field(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id)
    tomorrow = "2026-11-27"  # the service's today is 2026-11-26
    for path, body, field in (
        ("contacts", {"party": "gp", "status": "completed", "on": tomorrow}, "on"),
        ("records", {"source": "GP", "received_on": tomorrow}, "received_on"),
        ("records", {"source": "GP", "requested_on": tomorrow}, "requested_on"),
        ("family-involvement", {"step": "invited_to_comment", "on": tomorrow}, "on"),
        ("safeguarding-referrals", {"to": "Bristol", "on": tomorrow, "why": "concern"}, "on"),
    ):
        refused = await post(svc, case_id, path, body)
        assert refused.status_code == 422, (path, refused.text)
        problem = refused.json()
        assert problem["code"] == "date_in_future"
        assert [(e["field"], e["type"]) for e in problem["errors"]] == [(field, "date_in_future")]
    both = await post(
        svc, case_id, "records", {"source": "GP", "requested_on": "2026-11-10", "received_on": "2026-11-09"}
    )
    assert both.status_code == 422 and both.json()["code"] == "received_before_requested", both.text
    assert (
        await post(svc, case_id, "records", {"source": "GP", "requested_on": "2026-11-10"})
    ).status_code == 201
    early = await post(svc, case_id, "records", {"source": "gp", "received_on": "2026-11-09"})
    assert early.status_code == 422 and early.json()["code"] == "received_before_requested", early.text
    assert early.json()["errors"][0]["field"] == "received_on"
    ok = await post(
        svc, case_id, "records", {"source": "GP", "requested_on": "2026-11-10", "received_on": "2026-11-26"}
    )
    assert ok.status_code == 201, ok.text
    review = (await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("lac"))).json()
    assert [(r["requested_on"], r["received_on"]) for r in review["records"]["records"]] == [
        ("2026-11-10", "2026-11-26")
    ]


async def _governance(
    bootstrap: str, prefix: str, case_id: UUID, first: int, *payloads: EventPayload
) -> None:
    """Governance events of the case's stream, from stream version `first`."""
    messages = [
        envelope("governance", case_id, p, version) for version, p in enumerate(payloads, start=first)
    ]
    await publish_raw(
        bootstrap, service_topic("governance", prefix), [(m.kafka_key, m.canonical()) for m in messages]
    )


async def _status(svc: RunningService, case_id: UUID) -> str:
    answer = await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("lac"))
    return str(answer.json()["status"])


async def test_notes_on_a_submitted_review_then_none_once_completed_and_a_reopened_case_returns_it(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = uuid4()
    await allocate(svc, kafka_bootstrap, topic_prefix, case_id)
    for path, body in MINIMUM:
        assert (await post(svc, case_id, path, body)).status_code == 201
    assert (await post(svc, case_id, "submission")).status_code == 201
    assert (await post(svc, case_id, "notes", {"text": "the family rang"})).status_code == 201
    refused = await post(svc, case_id, "pen-portrait", {"text": "more"})
    assert (refused.status_code, refused.json()["code"]) == (409, "review_submitted")

    panel = uuid4()
    approved = ReviewApprovedByQA(case_id=case_id, panel_id=panel, quality_rating=4, themes=["sepsis"])
    closed = CaseClosed(case_id=case_id, closed_on=NOW.date())
    await _governance(kafka_bootstrap, topic_prefix, case_id, 1, approved, closed)

    async def completed() -> bool:
        return await _status(svc, case_id) == "completed"

    await eventually(completed, timeout=60)
    late = await post(svc, case_id, "notes", {"text": "late"})
    assert (late.status_code, late.json()["code"]) == (409, "review_completed")
    escalate = await post(svc, case_id, "escalation", {"detail": "x"}, who="lac-1", role="lac")
    assert (escalate.status_code, escalate.json()["code"]) == (409, "review_completed")

    reopened = CaseReopened(case_id=case_id, reason="the coroner's findings arrived")
    await _governance(kafka_bootstrap, topic_prefix, case_id, 3, reopened)

    async def in_progress() -> bool:
        return await _status(svc, case_id) == "in_progress"

    await eventually(in_progress, timeout=60)
    review = (await svc.client.get(f"/reviews/{case_id}", headers=svc.headers("reviewer", "rae"))).json()
    assert (review["reopened"], review["reopened_reason"]) == (True, "the coroner's findings arrived")
    assert review["qa"][-1]["outcome"] == "reopened"
    mine = (await svc.client.get("/reviews/mine", headers=svc.headers("reviewer", "rae"))).json()["reviews"]
    [listed] = [r for r in mine if r["case_id"] == str(case_id)]
    assert (listed["status"], listed["reopened"], listed["completed_on"]) == ("in_progress", True, None)
    due = (await svc.client.get("/reviews", headers=svc.headers("lac"))).json()["reviews"]
    assert str(case_id) in [r["case_id"] for r in due]
    assert (await post(svc, case_id, "pen-portrait", {"text": "what the coroner found"})).status_code == 201
    again = await post(svc, case_id, "submission")
    assert again.status_code == 201, again.text
    assert await _status(svc, case_id) == "submitted"


async def test_the_notes_route_documents_what_a_submitted_or_completed_review_takes(
    svc: RunningService,
) -> None:
    spec = (await svc.client.get("/openapi.json")).json()
    described = " ".join(spec["paths"]["/reviews/{case_id}/notes"]["post"].get("description", "").split())
    assert "a submitted review takes notes only" in described
    assert "a completed review takes nothing" in described
