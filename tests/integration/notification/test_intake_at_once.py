"""Intake with no global lock: two notifications of one person taken at once still open one case (the
other is linked to it as a duplicate, as the rule says), on two partitions of the partner topic as in
two transactions at once; and a notification of another person is not held by the first's intake
(only, as every append, by the event store's sequence until the first commits)."""

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from aiokafka import AIOKafkaProducer

from events import Actor
from events.partner import parse_notification
from events.topics import partner_topic
from infra.eventstore import Context
from leder.people import nhs_numbers
from services.notification import handlers
from services.notification.app import definition
from tests.support.notifications import born_and_died, notification
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually

PEOPLE = list(itertools.islice(nhs_numbers(500_000_000), 10))
PARTNER = Context(Actor(kind="partner", id="test", role="partner_system"), "intake-at-once")


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def same_person(i: int, **changes: Any) -> dict[str, Any]:
    return notification(**{"person.nhs_number": PEOPLE[i], "person.family_name": f"Atonce{i}", **changes})


async def outcomes(svc: RunningService, ids: list[str]) -> dict[str, tuple[str, UUID | None]]:
    rows = await svc.runtime.pool.fetch(
        "SELECT notification_id, outcome, case_id FROM notifications WHERE notification_id = ANY($1::uuid[])",
        ids,
    )
    return {str(r["notification_id"]): (r["outcome"], r["case_id"]) for r in rows}


async def test_one_person_notified_in_two_transactions_at_once_opens_one_case_and_another_is_not_held_by_it(
    svc: RunningService,
) -> None:
    store = svc.runtime.store
    first = parse_notification(json.dumps(same_person(0)).encode())
    # The same person from another notifier: no NHS number, so matched on name and dates.
    again = parse_notification(
        json.dumps(same_person(0, **{"person.nhs_number": None, "notifier.role": "gp"})).encode()
    )
    # Another person, a child: referred to the CDOP, no case and so no reference to wait for.
    child = parse_notification(json.dumps(born_and_died(date(2015, 1, 1), date(2024, 6, 1))).encode())
    taken, release = asyncio.Event(), asyncio.Event()

    async def first_intake() -> handlers.NotificationResult:
        # As a consumer's batch does: the intake done, the transaction not yet committed.
        async with store.transaction() as conn:
            result = await handlers.take_notification(store, conn, first, PARTNER)
            taken.set()
            await release.wait()
            return result

    pids: dict[str, int] = {}

    async def intake(name: str, notification: Any) -> handlers.NotificationResult:
        async with store.transaction() as conn:
            pids[name] = conn.get_server_pid()
            return await handlers.take_notification(store, conn, notification, PARTNER)

    async def waiting_on(name: str) -> list[str]:
        """The kinds of lock the intake's transaction waits for."""
        if name not in pids:
            return []
        rows = await svc.runtime.pool.fetch(
            "SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted", pids[name]
        )
        return [r["locktype"] for r in rows]

    holding = asyncio.create_task(first_intake())
    await asyncio.wait_for(taken.wait(), 30)
    second = asyncio.create_task(intake("same person", again))
    other = asyncio.create_task(intake("child", child))
    # The same person's waits on the intake's lock of the person: deciding now, it would not see the
    # first's case. The other person's is past intake's locks: it waits only where the event store
    # gives the service's events their order (the append's sequence), which every append does.
    assert await eventually(lambda: waiting_on("same person")) == ["advisory"]
    waits = await eventually(lambda: waiting_on("child"))
    assert "advisory" not in waits, waits
    release.set()
    opened, linked = await holding, await asyncio.wait_for(second, 30)
    assert opened.outcome == "case_opened" and opened.case_id is not None
    assert linked.outcome == "duplicate_linked" and linked.case_id == opened.case_id
    assert (await asyncio.wait_for(other, 30)).outcome == "referred_to_cdop"
    cases = await svc.runtime.pool.fetchval(
        "SELECT count(*) FROM notifications"
        " WHERE notification_id = ANY($1::uuid[]) AND outcome = 'case_opened'",
        [first.notification_id, again.notification_id],
    )
    assert cases == 1


async def test_one_person_sent_on_two_partitions_at_once_opens_one_case_and_is_linked_once(
    svc: RunningService, kafka_bootstrap: str, topic_prefix: str
) -> None:
    bodies = [same_person(1), same_person(1, **{"notifier.role": "gp"})]
    ids = [b["notification_id"] for b in bodies]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        sent = [
            producer.send_and_wait(
                partner_topic(topic_prefix), json.dumps(b).encode(), key=i.encode(), partition=partition
            )
            for partition, (b, i) in enumerate(zip(bodies, ids, strict=True))
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    async def both() -> dict[str, tuple[str, UUID | None]]:
        found = await outcomes(svc, ids)
        return found if len(found) == 2 else {}

    found = await eventually(both, timeout=60)
    assert sorted(outcome for outcome, _ in found.values()) == ["case_opened", "duplicate_linked"]
    assert len({case_id for _, case_id in found.values()}) == 1


async def test_a_batch_takes_the_reference_lock_before_it_appends_so_an_intake_opening_a_case_meanwhile_waits(
    svc: RunningService,
) -> None:
    """A batch of intakes (the partner consumer's) holds the event store's sequence from its first
    append to its commit. Were the reference lock taken after that, an intake opening a case through
    the other door could hold it while waiting for the sequence: a deadlock."""
    store, pool = svc.runtime.store, svc.runtime.pool
    child = parse_notification(json.dumps(born_and_died(date(2016, 1, 1), date(2024, 6, 1))).encode())
    over_http = parse_notification(json.dumps(same_person(3)).encode())
    later_in_batch = parse_notification(json.dumps(same_person(4)).encode())
    pid: list[int] = []

    async def http_intake() -> handlers.NotificationResult:
        async with store.transaction() as conn:
            pid.append(conn.get_server_pid())
            return await handlers.take_notification(store, conn, over_http, PARTNER)

    async def waiting() -> list[str]:
        if not pid:
            return []
        rows = await pool.fetch("SELECT locktype FROM pg_locks WHERE pid = $1 AND NOT granted", pid[0])
        return [r["locktype"] for r in rows]

    async with store.transaction() as batch:
        first = await handlers.take_notification(store, batch, child, PARTNER, reference_first=True)
        assert first.outcome == "referred_to_cdop"  # appended: the batch holds the store's sequence
        opening = asyncio.create_task(http_intake())
        # It waits on the reference lock, holding nothing the batch needs.
        assert await eventually(waiting) == ["advisory"]
        opened_in_batch = await asyncio.wait_for(
            handlers.take_notification(store, batch, later_in_batch, PARTNER, reference_first=True), 30
        )
    opened_over_http = await asyncio.wait_for(opening, 30)
    assert opened_in_batch.outcome == opened_over_http.outcome == "case_opened"
    numbers = sorted(int(str(r.reference).rsplit("-", 1)[1]) for r in (opened_in_batch, opened_over_http))
    assert numbers[1] == numbers[0] + 1
