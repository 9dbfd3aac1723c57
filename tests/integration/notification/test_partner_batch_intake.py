"""The partner consumer takes a batch of notifications in a few statements for the whole batch
(handlers.take_partner_batch), and what it records is what taking them one at a time records: the
same outcomes, case references in order, the person index, a data key per case, each event in its
stream. Where the batch names one person twice, or a notification taken before, it takes them one
after the other, and duplicate detection sees the first within the same batch."""

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from events.topics import partner_topic
from infra import db, sealing
from infra.eventstore import EventStore
from infra.inbox import Delivery
from infra.keys import LocalKeyFile
from infra.sealing import DataKeys
from infra.service import open_store
from infra.settings import Settings, database_url_for
from leder.people import NewPeople
from services.notification import handlers
from services.notification.app import definition
from services.notification.consumers import partner_notifications


@pytest.fixture(autouse=True)
def key_file(tmp_path: Path) -> Any:
    previous = sealing.install(DataKeys(LocalKeyFile(tmp_path / "notification.keys"), "notification"))
    yield
    sealing.install(previous, "notification")


@pytest.fixture
async def two_stores(pg_server_url: str) -> AsyncIterator[tuple[EventStore, EventStore]]:
    urls = [database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}") for _ in range(2)]
    stores = []
    for url in urls:
        await db.ensure_database(url)
        stores.append(await open_store(definition, Settings("notification", url, "", "", 0)))
    yield stores[0], stores[1]
    for store, url in zip(stores, urls, strict=True):
        await store.pool.close()
        await db.drop_database(url)


def records(bodies: Sequence[dict[str, Any]], first_offset: int = 0) -> list[tuple[bytes, Delivery]]:
    return [
        (
            json.dumps(b).encode(),
            Delivery(partner_topic(), 0, first_offset + n, b["notification_id"].encode(), {}),
        )
        for n, b in enumerate(bodies)
    ]


async def recorded(pool: asyncpg.Pool) -> dict[str, Any]:
    """What a store holds, named by notification (case ids are drawn afresh in each store)."""
    notifications = {
        str(r["notification_id"]): (r["outcome"], r["reference"], r["status"], r["review_type"], r["indexed"])
        for r in await pool.fetch(
            "SELECT n.notification_id, n.outcome, c.reference, c.status, c.review_type,"
            " (SELECT count(*) FROM person_index p WHERE p.case_id = n.case_id) AS indexed"
            " FROM notifications n LEFT JOIN cases c USING (case_id)"
        )
    }
    events = [
        (r["event_type"], r["stream_version"], r["keyed"])
        for r in await pool.fetch(
            "SELECT e.event_type, e.stream_version,"
            " EXISTS (SELECT 1 FROM data_keys k WHERE k.key_id = e.stream_id) AS keyed"
            " FROM events e ORDER BY e.source_sequence"
        )
    ]
    return {"notifications": notifications, "events": events}


def mixed_batch(people: NewPeople, earlier: dict[str, Any]) -> list[dict[str, Any]]:
    """New adults with a learning disability, a child's death, a notification that does not say
    whether the person had a learning disability or autism, one of someone never eligible, and the
    person of `earlier` notified again by another organisation."""
    return [
        *(people.notification() for _ in range(4)),
        people.notification(**{"person.date_of_birth": "2012-01-01"}),
        people.notification(**{"person.learning_disability": None, "person.autism": None}),
        people.notification(**{"person.learning_disability": False, "person.autism": False}),
        {**earlier, "notification_id": str(uuid4()), "notifier": {**earlier["notifier"], "role": "gp"}},
        people.notification(),
    ]


async def test_a_batch_records_what_one_at_a_time_records(
    two_stores: tuple[EventStore, EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, alone = two_stores
    people = NewPeople(400_600_000)
    earlier = people.notification()
    bodies = mixed_batch(people, earlier)
    for store in two_stores:
        consumer = partner_notifications(store, partner_topic())
        await consumer.handle(*records([earlier])[0])
        if store is alone:
            for raw, delivery in records(bodies, 1):
                await consumer.handle(raw, delivery)
    # The batch is taken in its few statements: not one notification after the other.
    taken_one_by_one = handlers._take_once

    async def not_expected(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a batch of different people was taken one notification at a time")

    monkeypatch.setattr(handlers, "_take_once", not_expected)
    assert await partner_notifications(batched, partner_topic()).handle_batch(records(bodies, 1)) == {}
    monkeypatch.setattr(handlers, "_take_once", taken_one_by_one)

    got, expected = await recorded(batched.pool), await recorded(alone.pool)
    assert got == expected
    outcomes = sorted(o for o, *_ in got["notifications"].values())
    assert outcomes == sorted(
        ["case_opened"] * 6
        + ["duplicate_linked", "eligibility_to_confirm", "referred_to_cdop", "not_eligible"]
    )
    # References in the order the notifications came, after the one taken before.
    references = [got["notifications"][b["notification_id"]][1] for b in [earlier, *bodies]]
    opened = [r for r, b in zip(references, [earlier, *bodies], strict=True) if r and b is not bodies[7]]
    assert [int(r.rsplit("-", 1)[1]) for r in opened] == list(range(1, len(opened) + 1))


async def test_the_same_person_twice_in_a_batch_is_one_case(
    two_stores: tuple[EventStore, EventStore],
) -> None:
    store, _ = two_stores
    people = NewPeople(400_700_000)
    first = people.notification()
    again = {**first, "notification_id": str(uuid4()), "notifier": {**first["notifier"], "role": "gp"}}
    bodies = [people.notification(), first, people.notification(), again]
    assert await partner_notifications(store, partner_topic()).handle_batch(records(bodies)) == {}
    rows = {
        str(r["notification_id"]): (r["outcome"], r["case_id"])
        for r in await store.pool.fetch("SELECT notification_id, outcome, case_id FROM notifications")
    }
    assert rows[again["notification_id"]][0] == "duplicate_linked"
    assert rows[again["notification_id"]][1] == rows[first["notification_id"]][1]
    assert sorted(o for o, _ in rows.values()) == ["case_opened"] * 3 + ["duplicate_linked"]
