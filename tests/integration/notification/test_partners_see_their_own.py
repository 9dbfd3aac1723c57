"""Partners see their own: a notification belongs to the organisation that sent it; only it reads the
outcome; the same notification_id with other content is refused (409 on HTTP, the DLQ on Kafka),
never dropped in silence; an identical re-send is idempotent."""

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest

from events.topics import dlq, partner_topic
from infra.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from services.notification.app import definition
from tests.support import tokens
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw, read_topic

SOUTHMEAD = "Southmead Hospital"  # the notifier of tests.support.notifications
BRUNSWICK = "Brunswick Care Ltd"


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def partner(organisation: str) -> dict[str, str]:
    """A partner system's token, naming its organisation."""
    return tokens.bearer(f"system of {organisation}", "partner_system", organisation)


async def notify(svc: RunningService, body: dict[str, Any], organisation: str) -> Any:
    return await svc.client.post("/notifications", json=body, headers=partner(organisation))


async def test_a_partner_reads_only_its_own_notifications_outcomes(svc: RunningService) -> None:
    body = notification(**{"circumstances.concerns_about_care": True})
    sent = await notify(svc, body, SOUTHMEAD)
    assert sent.status_code == 201, sent.text
    path = f"/notifications/{body['notification_id']}"

    mine = await svc.client.get(path, headers=partner(SOUTHMEAD))
    assert mine.status_code == 200 and mine.json()["focused_reasons"] == ["concerns_about_care"]
    theirs = await svc.client.get(path, headers=partner(BRUNSWICK))
    unknown = await svc.client.get(f"/notifications/{uuid4()}", headers=partner(BRUNSWICK))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["code"] == unknown.json()["code"] == "notification_not_found"
    assert "concerns" not in theirs.text and SOUTHMEAD not in theirs.text
    # The LAC reads every notification's outcome.
    assert (await svc.client.get(path, headers=svc.headers("lac"))).json() == mine.json()


async def test_a_partner_notifies_only_in_its_own_organisations_name(svc: RunningService) -> None:
    body = notification()
    refused = await notify(svc, body, BRUNSWICK)
    assert refused.status_code == 422
    [error] = refused.json()["errors"]
    assert (error["field"], error["type"]) == ("notifier.organisation", "not_your_organisation")
    assert await svc.runtime.store.last_sequence() == 0
    # The same notification, in its own name, is taken.
    assert (await notify(svc, body, SOUTHMEAD)).status_code == 201


async def test_the_same_id_with_other_content_is_409_and_an_identical_resend_is_the_first_outcome(
    svc: RunningService,
) -> None:
    body = notification()
    first = await notify(svc, body, SOUTHMEAD)
    assert first.status_code == 201
    written = await svc.runtime.store.last_sequence()

    # Identical, keys in another order: the same notification.
    again = await svc.client.post(
        "/notifications",
        content=json.dumps(dict(reversed(list(body.items())))),
        headers={**partner(SOUTHMEAD), "content-type": "application/json"},
    )
    assert again.status_code == 200 and again.json() == first.json()

    other_person = json.loads(json.dumps(body))
    other_person["person"]["family_name"] = "Someone-Else"
    changed = await notify(svc, other_person, SOUTHMEAD)
    assert changed.status_code == 409 and changed.json()["code"] == "notification_id_conflict"

    # Another partner sending a notification under that id: refused too, learning nothing of it.
    hijack = json.loads(json.dumps(other_person))
    hijack["notifier"]["organisation"] = BRUNSWICK
    taken = await notify(svc, hijack, BRUNSWICK)
    assert taken.status_code == 409 and taken.json()["code"] == "notification_id_conflict"
    assert first.json()["case_id"] not in taken.text and "case_opened" not in taken.text
    assert await svc.runtime.store.last_sequence() == written


async def test_on_the_partner_topic_the_same_id_with_other_content_goes_to_the_dlq_saying_why(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    body = notification()
    changed = json.loads(json.dumps(body))
    changed["person"]["given_name"] = "Another"
    key = body["notification_id"].encode()
    topic = partner_topic(topic_prefix)
    # The first, the first again (a redelivery or a re-send), then other content under its id.
    await publish_raw(kafka_bootstrap, topic, [(key, json.dumps(body).encode())] * 2)

    async def taken() -> bool:
        path = f"/notifications/{body['notification_id']}"
        return (await svc.client.get(path, headers=svc.headers("lac"))).status_code == 200

    await eventually(taken, timeout=60)
    await publish_raw(kafka_bootstrap, topic, [(key, json.dumps(changed).encode())])

    [dead] = await read_topic(kafka_bootstrap, dlq(topic), at_least=1, timeout=60)
    [reason] = json.loads(dict(dead.headers)["dlq_reason"])
    assert (reason["field"], reason["type"]) == ("notification_id", "notification_id_conflict")
    cases = (await svc.client.get("/cases", headers=svc.headers("lac"))).json()["cases"]
    assert len(cases) == 1  # the re-send opened nothing; the changed one waits in the DLQ


def partner_naming(organisation: str | None) -> dict[str, str]:
    """A well-signed partner token that names no organisation (or a blank one): the issuer mints none
    such, so it is made by hand, as a misconfigured partner system might."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "gp-sys",
        "role": "partner_system",
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    if organisation is not None:
        claims["organisation"] = organisation
    return {"Authorization": f"Bearer {tokens.signed(claims)}"}


@pytest.mark.parametrize("organisation", [None, "", "  "])
async def test_a_partner_token_that_names_no_organisation_is_refused_at_the_door(
    svc: RunningService, organisation: str | None
) -> None:
    body = notification(**{"circumstances.concerns_about_care": True})
    assert (await notify(svc, body, SOUTHMEAD)).status_code == 201
    written = await svc.runtime.store.last_sequence()
    nameless = partner_naming(organisation)

    posted = await svc.client.post("/notifications", json=notification(), headers=nameless)
    read = await svc.client.get(f"/notifications/{body['notification_id']}", headers=nameless)
    for refused in (posted, read):
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "unauthenticated"
        assert "names no organisation" in refused.json()["detail"]
        assert "concerns" not in refused.text and SOUTHMEAD not in refused.text
    assert await svc.runtime.store.last_sequence() == written  # nothing taken
