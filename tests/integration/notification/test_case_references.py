"""Case references (LDR-<year notified>-<five digits>): given by the notification service to every case
it opens, whichever door and path opened it, one number each even when cases open at once, and the
same after a rebuild. And who may read a case's facts."""

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope
from events.allocation import ReviewerAllocated
from events.topics import partner_topic, service_topic
from infra.projections import rebuild
from leder.people import nhs_numbers
from services.notification import handlers
from services.notification.app import definition
from tests.support.notifications import born_and_died, notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually, publish_raw


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


# Valid NHS numbers (modulus 11), a different person each.
PEOPLE = list(itertools.islice(nhs_numbers(400_000_000), 100))


def person(i: int, **changes: Any) -> dict[str, Any]:
    return notification(**{"person.nhs_number": PEOPLE[i], "person.family_name": f"Person{i}", **changes})


async def notify(svc: RunningService, body: dict[str, Any]) -> dict[str, Any]:
    # As the notifier's own system: a partner notifies in its organisation's name only.
    partner = svc.headers("partner_system", organisation=body["notifier"]["organisation"])
    response = await svc.client.post("/notifications", json=body, headers=partner)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def confirm(svc: RunningService, case_id: str) -> dict[str, Any]:
    response = await svc.client.post(
        f"/cases/{case_id}/eligibility",
        json={"decision": "confirm", "learning_disability": True},
        headers=svc.headers("lac"),
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def cases(svc: RunningService, **params: str) -> list[dict[str, Any]]:
    response = await svc.client.get("/cases", params=params, headers=svc.headers("lac"))
    assert response.status_code == 200, response.text
    return response.json()["cases"]  # type: ignore[no-any-return]


def expected(year: int, count: int) -> list[str]:
    return [f"LDR-{year}-{n:05d}" for n in range(1, count + 1)]


async def test_cases_opened_at_once_through_every_door_and_path_get_one_number_each_and_keep_it_on_rebuild(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    year = datetime.now(UTC).year
    waiting = [(await notify(svc, person(i, **{"person.learning_disability": None}))) for i in range(3)]
    assert [w["outcome"] for w in waiting] == ["eligibility_to_confirm"] * 3
    assert [w["reference"] for w in waiting] == [None] * 3  # not open yet: no reference
    assert {c["reference"] for c in await cases(svc, status="eligibility_to_confirm")} == {None}

    over_http = [person(i) for i in range(3, 13)]
    on_topic = [person(i) for i in range(13, 18)]
    await publish_raw(
        kafka_bootstrap,
        partner_topic(topic_prefix),
        [(b["notification_id"].encode(), json.dumps(b).encode()) for b in on_topic],
    )
    answers = await asyncio.gather(
        *(notify(svc, b) for b in over_http), *(confirm(svc, w["case_id"]) for w in waiting)
    )

    async def all_open() -> list[dict[str, Any]]:
        listed = await cases(svc, status="open")
        return listed if len(listed) == 18 else []

    opened = await eventually(all_open, timeout=60)
    references = sorted(c["reference"] for c in opened)
    assert references == expected(year, 18)  # 1 to 18: none twice, none skipped

    # Each door answers with the reference of the case it opened.
    for body, answer in zip(over_http, answers[:10], strict=True):
        asked = await svc.client.get(
            f"/notifications/{body['notification_id']}", headers=svc.headers("partner_system")
        )
        assert asked.json() == answer and answer["reference"] in references
    for w, answer in zip(waiting, answers[10:], strict=True):
        assert answer["case"]["reference"] in references and answer["case"]["status"] == "open"
        asked = await svc.client.get(
            f"/notifications/{w['notification_id']}", headers=svc.headers("partner_system")
        )
        assert asked.json()["outcome"] == "eligibility_to_confirm"
        assert asked.json()["reference"] == answer["case"]["reference"]
    # A duplicate is answered with the reference of the case it was linked to.
    linked = await notify(svc, person(3, **{"notifier.organisation": "Horfield GP"}))
    assert linked["outcome"] == "duplicate_linked" and linked["reference"] == answers[0]["reference"]

    pool = svc.runtime.pool

    async def snapshot() -> dict[str, list[Any]]:
        return {
            t: [dict(r) for r in await pool.fetch(f"SELECT * FROM {t} ORDER BY 1")]
            for t in ("cases", "notifications", "case_references")
        }

    live = await snapshot()
    await pool.execute("UPDATE cases SET reference = NULL; DELETE FROM case_references")
    assert await rebuild(svc.runtime.store) == await svc.runtime.store.last_sequence()
    assert await snapshot() == live
    assert live["case_references"] == [{"year": year, "last_number": 18}]
    assert (await notify(svc, person(20)))["reference"] == f"LDR-{year}-00019"


async def test_a_reference_already_given_fails_the_append_and_the_case_is_decided_again_with_the_next(
    svc: RunningService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind the lock, the unique constraint: a number found stale (as if two had raced) never opens a
    second case under it."""
    first = await notify(svc, person(1))
    real = handlers.next_reference
    asked: list[int] = []

    async def stale_once(conn: Any, year: int) -> str:
        asked.append(year)
        return str(first["reference"]) if len(asked) == 1 else await real(conn, year)

    monkeypatch.setattr(handlers, "next_reference", stale_once)
    second = await notify(svc, person(2))
    year = datetime.now(UTC).year
    assert (first["reference"], second["reference"]) == (f"LDR-{year}-00001", f"LDR-{year}-00002")
    assert asked == [year, year]
    opened = await svc.runtime.pool.fetchval(
        "SELECT count(*) FROM events WHERE event_type = 'notification.CaseOpened'"
    )
    assert opened == 2


async def test_the_year_is_the_year_the_death_was_notified_even_when_eligibility_is_confirmed_later(
    svc: RunningService,
) -> None:
    store = svc.runtime.store
    real_clock = store.clock
    store.clock = lambda: datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    waiting = await notify(
        svc, born_and_died(date(1960, 1, 1), date(2025, 12, 30), **{"person.learning_disability": None})
    )
    first = await notify(svc, person(1, **{"death.date_of_death": "2025-12-29"}))
    assert first["reference"] == "LDR-2025-00001"
    store.clock = real_clock

    year = datetime.now(UTC).year
    assert year > 2025
    assert (await notify(svc, person(2)))["reference"] == f"LDR-{year}-00001"
    confirmed = (await confirm(svc, waiting["case_id"]))["case"]
    assert (confirmed["reference"], confirmed["notified_on"]) == ("LDR-2025-00002", "2025-12-31")

    [found] = await cases(svc, reference="LDR-2025-00002")
    assert found["case_id"] == waiting["case_id"]
    assert await cases(svc, reference="LDR-2025-00099") == []
    bad = await svc.client.get("/cases", params={"reference": "LDR-25-1"}, headers=svc.headers("lac"))
    assert bad.status_code == 422


async def test_each_listed_case_carries_what_the_lacs_list_shows(svc: RunningService) -> None:
    opened = await notify(svc, person(1, **{"circumstances.concerns_about_care": True}))
    [item] = await cases(svc)
    assert {
        k: item[k]
        for k in (
            "case_id",
            "reference",
            "status",
            "review_type",
            "focused_reasons",
            "notified_on",
            "date_of_death",
            "age_at_death",
            "place_of_death",
        )
    } == {
        "case_id": opened["case_id"],
        "reference": opened["reference"],
        "status": "open",
        "review_type": "focused",
        "focused_reasons": ["concerns_about_care"],
        "notified_on": datetime.now(UTC).date().isoformat(),
        "date_of_death": "2026-10-03",
        "age_at_death": 65,
        "place_of_death": notification()["death"]["place_of_death"],
    }
    everything = json.dumps(item)
    for personal in ("O'Brien", PEOPLE[1], "Person1"):
        assert personal not in everything


async def test_a_case_s_facts_are_read_by_the_lac_and_the_reviewers_allocated_to_it_only(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    case_id = (await notify(svc, person(1)))["case_id"]
    url = f"/cases/{case_id}"

    async def status(role: str, sub: str) -> tuple[int, str | None]:
        response = await svc.client.get(url, headers=svc.headers(role, sub))
        return response.status_code, response.json().get("code")

    assert (await status("lac", "lac-1"))[0] == 200
    assert await status("reviewer", "rev-1") == (403, "not_allocated_to_caller")
    assert await status("senior_reviewer", "sen-1") == (403, "not_allocated_to_caller")
    # A case that does not exist is not theirs either: the same answer (issue 16), 404 to the LAC only.
    missing = await svc.client.get(f"/cases/{uuid4()}", headers=svc.headers("reviewer", "rev-1"))
    assert (missing.status_code, missing.json()["code"]) == (403, "not_allocated_to_caller")
    assert (await svc.client.get(f"/cases/{uuid4()}", headers=svc.headers("lac"))).status_code == 404

    now = datetime.now(UTC)
    allocated = ReviewerAllocated(
        case_id=UUID(case_id), reviewer_id=uuid4(), reviewer_user_id="rev-1", senior_reviewer_id=uuid4(),
        senior_reviewer_user_id="sen-1", allocated_on=now.date(), notified_on=now.date(),
        deadline=date(2027, 5, 30), review_type="initial", focused_reasons=[],
    )  # fmt: skip
    envelope = Envelope(
        event_id=uuid4(), event_type=allocated.event_type, schema_version=allocated.schema_version,
        stream_id=case_id, case_id=UUID(case_id), stream_version=1, source="allocation",
        source_sequence=1, occurred_at=now, recorded_at=now, actor=Actor.system("allocation"),
        correlation_id=str(uuid4()), data=allocated.model_dump(mode="json"),
    )  # fmt: skip
    await publish_raw(
        kafka_bootstrap,
        service_topic("allocation", topic_prefix),
        [(envelope.kafka_key, envelope.canonical())],
    )

    async def reviewer_reads() -> bool:
        return (await status("reviewer", "rev-1"))[0] == 200

    await eventually(reviewer_reads, timeout=60)
    response = await svc.client.get(url, headers=svc.headers("senior_reviewer", "sen-1"))
    assert response.status_code == 200
    assert response.json()["reference"] and "person" not in response.json()
    assert "Person1" not in response.text and PEOPLE[1] not in response.text
    assert await status("reviewer", "rev-2") == (403, "not_allocated_to_caller")
    assert await status("senior_reviewer", "sen-2") == (403, "not_allocated_to_caller")
    assert (await status("qa_panel", "qa-1"))[0] == 403
    assert (await svc.client.get("/cases", headers=svc.headers("reviewer", "rev-1"))).status_code == 403
