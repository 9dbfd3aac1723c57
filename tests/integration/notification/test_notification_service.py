"""The notification service through its real doors: HTTP, the partner topic, and the events it
publishes on leder.notification.events."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.allocation import ReviewerAllocated
from events.governance import ActionAgreed, CaseClosed, CaseReopened
from events.review import ReviewEscalatedToFocused
from events.topics import partner_topic, service_topic
from infra.eventstore import Context, EventStore
from services.notification import handlers
from services.notification.app import definition
from tests.support.notifications import PERSONAL_STRINGS, notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


async def notify(svc: RunningService, body: dict[str, Any], role: str = "partner_system") -> Any:
    # A partner notifies as the notifier's own system: in that organisation's name only.
    organisation = body["notifier"]["organisation"] if role == "partner_system" else None
    return await svc.client.post(
        "/notifications", json=body, headers=svc.headers(role, organisation=organisation)
    )


async def case(svc: RunningService, case_id: str) -> dict[str, Any]:
    response = await svc.client.get(f"/cases/{case_id}", headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_a_notification_opens_a_case_and_a_resend_returns_the_first_outcome_writing_nothing(
    svc: RunningService,
) -> None:
    body = notification(**{"circumstances.family_requested_focused_review": True})
    first = await notify(svc, body)
    assert first.status_code == 201, first.text
    outcome = first.json()
    assert outcome["outcome"] == "case_opened"
    assert (outcome["review_type"], outcome["focused_reasons"], outcome["flags"]) == (
        "focused",
        ["family_request"],
        [],
    )
    events_before = await svc.runtime.store.last_sequence()

    again = await notify(svc, body, role="lac")
    assert again.status_code == 200
    assert again.json() == outcome
    assert await svc.runtime.store.last_sequence() == events_before

    asked = await svc.client.get(
        f"/notifications/{body['notification_id']}", headers=svc.headers("partner_system")
    )
    assert asked.status_code == 200 and asked.json() == outcome
    unknown = await svc.client.get(f"/notifications/{uuid4()}", headers=svc.headers("partner_system"))
    assert unknown.status_code == 404 and unknown.json()["code"] == "notification_not_found"
    assert (
        await svc.client.get(f"/notifications/{body['notification_id']}", headers=svc.headers("reviewer"))
    ).status_code == 403


async def test_the_same_person_notified_again_by_nhs_number_or_by_name_and_dates_links_to_one_case(
    svc: RunningService,
) -> None:
    opened = (await notify(svc, notification())).json()
    by_nhs = (
        await notify(
            svc, notification(**{"person.family_name": "Smith", "notifier.organisation": "Horfield GP"})
        )
    ).json()
    by_name = (
        await notify(
            svc,
            notification(
                **{
                    "person.nhs_number": None,
                    "person.family_name": "O'BRIEN",
                    "person.given_name": "Zoe",
                    "notifier.role": "gp",
                }
            ),
        )
    ).json()
    assert by_nhs["outcome"] == by_name["outcome"] == "duplicate_linked"
    assert by_nhs["case_id"] == by_name["case_id"] == opened["case_id"]

    listed = (await svc.client.get("/cases", headers=svc.headers("lac"))).json()["cases"]
    assert [c["case_id"] for c in listed] == [opened["case_id"]]
    assert [n["organisation"] for n in listed[0]["notifiers"]] == [
        "Southmead Hospital",
        "Horfield GP",
        "Southmead Hospital",
    ]


async def test_a_different_person_on_the_same_dates_opens_a_case_of_their_own(svc: RunningService) -> None:
    first = (await notify(svc, notification())).json()
    other = (
        await notify(svc, notification(**{"person.nhs_number": None, "person.family_name": "Okafor"}))
    ).json()
    assert other["outcome"] == "case_opened" and other["case_id"] != first["case_id"]


async def test_a_notification_on_the_partner_topic_becomes_a_case_and_a_case_opened_event(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    body = notification(**{"person.ethnicity": "Z"})
    await publish_raw(
        kafka_bootstrap,
        partner_topic(topic_prefix),
        [(body["notification_id"].encode(), json.dumps(body).encode())],
    )

    async def listed() -> list[dict[str, Any]]:
        return (await svc.client.get("/cases", headers=svc.headers("lac"))).json()["cases"]  # type: ignore[no-any-return]

    [opened] = await eventually(listed, timeout=60)
    assert (opened["status"], opened["review_type"], opened["flags"]) == (
        "open",
        "initial",
        ["ethnicity_not_stated"],
    )
    records = await read_topic(kafka_bootstrap, service_topic("notification", topic_prefix), at_least=1)
    envelope = Envelope.from_bytes(records[0].value)
    assert envelope.event_type == "notification.CaseOpened"
    assert str(envelope.case_id) == opened["case_id"] and records[0].key == opened["case_id"].encode()
    assert envelope.actor.kind == "partner"


async def test_personal_fields_never_appear_in_clear_on_any_topic(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    opened = (await notify(svc, notification())).json()
    await notify(svc, notification(**{"person.nhs_number": None}))  # a duplicate, with its own notifier
    await notify(svc, notification(**{"person.date_of_birth": "2010-01-01"}))  # a child: CDOP
    await notify(svc, notification(**{"person.learning_disability": None}))  # for the LAC
    await svc.client.get(
        f"/cases/{opened['case_id']}/person", params={"reason": "checking"}, headers=svc.headers("lac")
    )
    topic = service_topic("notification", topic_prefix)
    records = await read_topic(kafka_bootstrap, topic, at_least=5)
    everything = b"".join(r.value + (r.key or b"") + b"".join(v for _, v in r.headers) for r in records)
    for personal in PERSONAL_STRINGS:
        assert personal.encode() not in everything, personal
    # ...and what is in clear is what other services need.
    [opened_event] = [
        json.loads(r.value)
        for r in records
        if r.key == opened["case_id"].encode() and b"notification.CaseOpened" in r.value
    ]
    assert opened_event["data"]["facts"]["age_at_death"] == 65
    assert opened_event["data"]["personal"]["ciphertext"]


async def test_viewing_personal_details_is_recorded_and_allowed_to_the_lac_and_the_allocated_reviewer_only(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = (await notify(svc, notification())).json()["case_id"]
    url = f"/cases/{case_id}/person"
    seen = await svc.client.get(url, params={"reason": "allocating"}, headers=svc.headers("lac", "lac-1"))
    assert seen.status_code == 200
    assert (
        seen.json()["person"]["family_name"] == "O'Brien"
        and seen.json()["person"]["nhs_number"] == "9434765919"
    )
    denied = await svc.client.get(url, params={"reason": "curious"}, headers=svc.headers("reviewer", "rev-1"))
    assert denied.status_code == 403 and denied.json()["code"] == "not_allocated_to_caller"

    allocated = _envelope(
        "allocation",
        UUID(case_id),
        ReviewerAllocated(
            case_id=UUID(case_id),
            reviewer_id=uuid4(),
            reviewer_user_id="rev-1",
            senior_reviewer_id=uuid4(),
            senior_reviewer_user_id="sen-1",
            allocated_on=date(2026, 11, 1),
            notified_on=date(2026, 10, 30),
            deadline=date(2027, 4, 30),
            review_type="initial",
            focused_reasons=[],
        ),
    )
    await publish_raw(
        kafka_bootstrap,
        service_topic("allocation", topic_prefix),
        [(allocated.kafka_key, allocated.canonical())],
    )

    async def reviewer_sees() -> bool:
        response = await svc.client.get(
            url, params={"reason": "contacting the family"}, headers=svc.headers("reviewer", "rev-1")
        )
        return response.status_code == 200

    await eventually(reviewer_sees, timeout=60)
    views = [
        e.payload()
        for e in await svc.runtime.store.read_stream(case_id)
        if e.event_type == "notification.PersonalDetailsViewed"
    ]
    assert [(v.viewer, v.role, v.reason) for v in views] == [  # type: ignore[attr-defined]
        ("lac-1", "lac", "allocating"),
        ("rev-1", "reviewer", "contacting the family"),
    ]


async def test_after_the_key_is_destroyed_the_person_is_gone_and_the_events_are_all_still_there(
    svc: RunningService,
) -> None:
    case_id = (await notify(svc, notification())).json()["case_id"]
    store: EventStore = svc.runtime.store
    before = await store.read_stream(case_id)

    destroyed = await handlers.destroy_expired(
        store, 0, datetime.now(UTC).date(), Context(Actor.system("retention"))
    )
    assert destroyed == [UUID(case_id)]

    gone = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "x" * 5}, headers=svc.headers("lac")
    )
    assert gone.status_code == 410
    assert "destroyed at the end of its retention period" in gone.json()["detail"]
    after = await store.read_stream(case_id)
    assert after[: len(before)] == before
    assert [e.event_type for e in after[len(before) :]] == ["notification.PersonalDataDestroyed"]
    assert await store.pool.fetchval("SELECT wrapped FROM data_keys WHERE key_id = $1", case_id) is None
    assert (await case(svc, case_id))["personal_destroyed"] is True


async def test_a_review_escalation_from_the_review_service_makes_the_case_focused_here_too(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = (await notify(svc, notification())).json()["case_id"]
    escalated = _envelope(
        "review",
        UUID(case_id),
        ReviewEscalatedToFocused(case_id=UUID(case_id), reasons=["lapse_in_care"]),
    )
    await publish_raw(
        kafka_bootstrap, service_topic("review", topic_prefix), [(escalated.kafka_key, escalated.canonical())]
    )

    async def focused() -> bool:
        return (await case(svc, case_id))["review_type"] == "focused"

    await eventually(focused, timeout=60)
    assert (await case(svc, case_id))["focused_reasons"] == ["lapse_in_care"]


async def test_the_lac_confirms_eligibility_and_records_ethnicity(svc: RunningService) -> None:
    outcome = (
        await notify(svc, notification(**{"person.learning_disability": None, "person.ethnicity": "99"}))
    ).json()
    assert outcome["outcome"] == "eligibility_to_confirm"
    case_id = outcome["case_id"]
    url = f"/cases/{case_id}/eligibility"
    refused = await svc.client.post(url, json={"decision": "confirm"}, headers=svc.headers("lac"))
    assert refused.status_code == 422 and refused.json()["code"] == "no_diagnosis_confirmed"
    forbidden = await svc.client.post(
        url, json={"decision": "confirm", "learning_disability": True}, headers=svc.headers("reviewer")
    )
    assert forbidden.status_code == 403
    confirmed = await svc.client.post(
        url, json={"decision": "confirm", "learning_disability": True}, headers=svc.headers("lac")
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["case"]["status"] == "open"
    again = await svc.client.post(
        url, json={"decision": "reject", "reason": "no"}, headers=svc.headers("lac")
    )
    assert again.status_code == 409 and again.json()["code"] == "not_awaiting_eligibility"

    recorded = await svc.client.post(
        f"/cases/{case_id}/ethnicity", json={"ethnicity": "J"}, headers=svc.headers("lac")
    )
    assert recorded.json()["events"] == [
        "notification.EthnicityRecorded",
        "notification.CaseEscalatedToFocused",
    ]
    assert (recorded.json()["case"]["review_type"], recorded.json()["case"]["flags"]) == ("focused", [])


def _envelope(
    source: str, case_id: UUID | None, payload: Any, version: int = 1, stream_id: str | None = None
) -> Envelope:
    now = datetime.now(UTC)
    return Envelope(
        event_id=uuid4(),
        event_type=payload.event_type,
        schema_version=payload.schema_version,
        stream_id=stream_id or str(case_id),
        case_id=case_id,
        stream_version=version,
        source=source,
        source_sequence=version,
        occurred_at=now,
        recorded_at=now,
        actor=Actor.system(source),
        correlation_id=str(uuid4()),
        data=payload.model_dump(mode="json"),
    )


async def test_the_lac_filters_cases_and_a_rebuild_of_every_projection_equals_the_live_one(
    svc: RunningService,
) -> None:
    await notify(svc, notification())
    await notify(svc, notification(**{"person.nhs_number": None}))  # duplicate
    focused = (
        await notify(svc, notification(**{"person.nhs_number": "4010232137", "person.ethnicity": "B"}))
    ).json()
    await notify(
        svc,
        notification(
            **{"person.nhs_number": None, "person.family_name": "Ng", "person.learning_disability": None}
        ),
    )
    await notify(svc, notification(**{"person.date_of_birth": "2012-03-03"}))
    listed = await svc.client.get("/cases", params={"review_type": "focused"}, headers=svc.headers("lac"))
    assert [c["case_id"] for c in listed.json()["cases"]] == [focused["case_id"]]
    waiting = await svc.client.get(
        "/cases", params={"status": "eligibility_to_confirm"}, headers=svc.headers("lac")
    )
    assert len(waiting.json()["cases"]) == 1
    today = datetime.now(UTC).date().isoformat()
    assert (
        len(
            (
                await svc.client.get(
                    "/cases",
                    params={"notified_from": today, "notified_to": today},
                    headers=svc.headers("lac"),
                )
            ).json()["cases"]
        )
        == 3
    )
    assert (
        await svc.client.get("/cases", params={"notified_to": "2020-01-01"}, headers=svc.headers("lac"))
    ).json()["cases"] == []
    assert (await svc.client.get("/cases", headers=svc.headers("reviewer"))).status_code == 403

    pool = svc.runtime.pool
    tables = ("cases", "notifications", "person_index")

    async def snapshot() -> dict[str, list[Any]]:
        return {t: [dict(r) for r in await pool.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables}

    live = await snapshot()
    assert len(live["notifications"]) == 5 and len(live["person_index"]) >= 4
    from infra.projections import rebuild

    await pool.execute("DELETE FROM person_index; UPDATE cases SET status = 'broken'")
    assert await rebuild(svc.runtime.store) == await svc.runtime.store.last_sequence()
    assert await snapshot() == live


async def test_two_different_nhs_numbers_are_two_people_whatever_their_names_and_dates(
    svc: RunningService,
) -> None:
    first = (await notify(svc, notification())).json()
    second = (await notify(svc, notification(**{"person.nhs_number": "4010232137"}))).json()
    assert second["outcome"] == "case_opened" and second["case_id"] != first["case_id"]


async def test_a_case_the_qa_panel_closed_is_closed_here_and_reopening_opens_it_again(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = (await notify(svc, notification())).json()["case_id"]
    other = (await notify(svc, notification(**{"person.nhs_number": "401 023 2137"}))).json()["case_id"]
    topic = service_topic("governance", topic_prefix)
    closed = _envelope(
        "governance", UUID(case_id), CaseClosed(case_id=UUID(case_id), closed_on=date(2026, 11, 2))
    )
    # The governance topic carries more than cases: an action is not a case here, and is passed over.
    action = ActionAgreed(
        action_id=uuid4(), what="train staff", organisation="Southmead Hospital", lead="Ann",
        due_on=date(2027, 1, 1), case_ids=[UUID(case_id)], themes=[],
    )  # fmt: skip
    agreed = _envelope("governance", None, action, stream_id=f"action-{action.action_id}")
    await publish_raw(kafka_bootstrap, topic, [(e.kafka_key, e.canonical()) for e in (agreed, closed)])

    async def status(wanted: str) -> bool:
        return bool((await case(svc, case_id))["status"] == wanted)

    await eventually(lambda: status("closed"), timeout=60)
    shown = await case(svc, case_id)
    assert shown["outcome"] == "case_opened"  # what the notification became stays the same

    async def listed(status: str) -> list[str]:
        response = await svc.client.get("/cases", params={"status": status}, headers=svc.headers("lac"))
        assert response.status_code == 200, response.text
        return [c["case_id"] for c in response.json()["cases"]]

    assert await listed("open") == [other]
    assert await listed("closed") == [case_id]

    reopened = _envelope(
        "governance", UUID(case_id), CaseReopened(case_id=UUID(case_id), reason="new evidence"), version=2
    )
    await publish_raw(kafka_bootstrap, topic, [(reopened.kafka_key, reopened.canonical())])
    await eventually(lambda: status("open"), timeout=60)
    assert await listed("open") == [case_id, other]
    assert await listed("closed") == []
    assert [e.event_type for e in await svc.runtime.store.read_stream(case_id)][-2:] == [
        "notification.CaseClosureRecorded",
        "notification.CaseReopeningRecorded",
    ]
