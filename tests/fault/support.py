"""What the fault tests share: a realistic stream of partner notifications, HTTP writes that remember
what they were answered, and the checks that the system came through whole.

Every check reads only what a test may: the services' databases (read-only, in one snapshot), their
`GET /events` feeds, and the audit service's API.
"""

import asyncio
import importlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import psutil
from aiokafka import AIOKafkaProducer

from events.topics import SERVICES, partner_topic
from infra import db
from infra.eventstore import EventStore
from infra.keys import LocalKeyFile
from infra.projections import rebuild
from infra.sealing import DataKeys, install
from leder.people import nhs_number, notification
from tests.fault.conftest import System

# The notification service's outcome events, one per notification (README, "The notification service").
OUTCOME_EVENTS = {
    "notification.CaseOpened": "case_opened",
    "notification.DuplicateNotificationLinked": "duplicate_linked",
    "notification.ReferredToChildDeathOverviewPanel": "referred_to_cdop",
    "notification.NotificationNotEligible": "not_eligible",
    "notification.EligibilityToConfirm": "eligibility_to_confirm",
}
EVENT_OF_OUTCOME = {outcome: event for event, outcome in OUTCOME_EVENTS.items()}


class Stopwatch:
    """Prints how long each phase of a fault test took (pytest -s shows it): where the time goes."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.began = time.monotonic()
        print()

    def lap(self, what: str) -> float:
        elapsed = time.monotonic() - self.began
        print(f"[{self.test} {elapsed:6.1f}s] {what}", flush=True)
        return elapsed


# ---------------------------------------------------------------------------------------------------
# Partner notifications


@dataclass(frozen=True)
class Sent:
    """One notification a partner sends, and what it must come to."""

    body: dict[str, Any]
    expected: str  # the outcome, or "same_person" for a person notified more than once
    person: str  # who it is about: notifications of one person make one case between them

    @property
    def notification_id(self) -> str:
        return str(self.body["notification_id"])

    @property
    def message(self) -> tuple[bytes, bytes]:
        return self.notification_id.encode(), json.dumps(self.body).encode()


def notifications(count: int, seed: int) -> list[Sent]:
    """A realistic mix: most open a case (initial or focused), some are the same person notified again
    by another organisation, some re-sends of one notification, some children (CDOP), some with neither
    diagnosis, some with a diagnosis not known."""
    rng = random.Random(seed)
    # Who the people are is not seeded: another run (another test on the same system) must not notify
    # the same people again by chance.
    people = random.SystemRandom()
    today = date.today()
    sent: list[Sent] = []
    opened: list[Sent] = []
    while len(sent) < count:
        roll = rng.random()
        died = today - timedelta(days=rng.randrange(1, 60))
        born = died - timedelta(days=rng.randrange(19 * 365, 90 * 365))
        person = str(uuid4())
        changes: dict[str, Any] = {
            "person.nhs_number": nhs_number(people),
            "person.family_name": f"Family{people.randrange(10**12)}",
            "person.date_of_birth": born.isoformat(),
            "death.date_of_death": died.isoformat(),
            "person.ethnicity": rng.choice(["A", "A", "A", "B", "H", "Z"]),
            "person.autism": rng.random() < 0.3,
            "circumstances.concerns_about_care": rng.random() < 0.15,
        }
        if roll < 0.08 and opened:
            # The same person, notified again by another organisation: one case between them. Which
            # of the two opens it depends on the order they are taken in (partitions interleave).
            first = rng.choice(opened)
            again = notification(**{**_person_of(first.body), "notifier.organisation": "Brunswick Care Ltd"})
            sent.append(Sent(again, "same_person", first.person))
            continue
        if roll < 0.12 and sent:
            # A partner re-sends a notification (its own retry): the same notification_id, one outcome.
            sent.append(rng.choice(sent))
            continue
        if roll < 0.17:
            changes["person.date_of_birth"] = (
                died - timedelta(days=rng.randrange(365, 17 * 365))
            ).isoformat()
            sent.append(Sent(notification(**changes), "referred_to_cdop", person))
        elif roll < 0.23:
            changes |= {"person.learning_disability": False, "person.autism": False}
            sent.append(Sent(notification(**changes), "not_eligible", person))
        elif roll < 0.27:
            changes |= {"person.learning_disability": None, "person.autism": None}
            sent.append(Sent(notification(**changes), "eligibility_to_confirm", person))
        else:
            body = notification(**changes)
            sent.append(Sent(body, "case_opened", person))
            opened.append(sent[-1])
    for i, item in enumerate(sent):
        if item.expected == "case_opened" and any(
            s.person == item.person and s.expected == "same_person" for s in sent
        ):
            sent[i] = Sent(item.body, "same_person", item.person)
    return sent


def _person_of(body: dict[str, Any]) -> dict[str, Any]:
    person = body["person"]
    return {
        "person.nhs_number": person["nhs_number"],
        "person.family_name": person["family_name"],
        "person.date_of_birth": person["date_of_birth"],
        "person.ethnicity": person["ethnicity"],
        "person.autism": person["autism"],
        "death.date_of_death": body["death"]["date_of_death"],
    }


async def publish_paced(system: System, sent: list[Sent], per_second: float) -> None:
    """Publish to the partner topic at a steady pace, as partners do. A send that fails is sent again:
    a partner's re-send of a notification is idempotent, so retrying cannot change an outcome."""
    producer = AIOKafkaProducer(
        bootstrap_servers=system.bootstrap, acks="all", enable_idempotence=False, request_timeout_ms=60_000
    )
    await producer.start()
    topic = partner_topic(system.prefix)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        batch = max(1, int(per_second / 20))
        for i in range(0, len(sent), batch):
            await asyncio.gather(*(_send(producer, topic, *item.message) for item in sent[i : i + batch]))
            # Paced against the clock, so that the time sending takes is not added to the pace.
            ahead = started + (i + batch) / per_second - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


async def _send(producer: AIOKafkaProducer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            await producer.send_and_wait(topic, key=key, value=value)
            return
        except Exception:  # the broker did not answer in time: the partner sends it again
            await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------------------------------
# HTTP writes


@dataclass
class Write:
    """One HTTP command, with the correlation id that marks every event it wrote."""

    service: str
    what: str
    correlation_id: str
    status: int | None = None  # None: no answer (connection refused or cut)
    answer: dict[str, Any] = field(default_factory=dict)
    expected_events: tuple[str, ...] = ()
    answered_at: float = 0.0  # time.monotonic() when the answer (or the failure) came

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Writer:
    """Sends HTTP commands and keeps each one's answer, for the checks afterwards."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.client = httpx.AsyncClient(timeout=30)
        self.writes: list[Write] = []

    async def post(
        self,
        service: str,
        path: str,
        body: dict[str, Any],
        role: str,
        expected_events: Iterable[str],
        organisation: str | None = None,
    ) -> Write:
        write = Write(service, f"POST {path}", str(uuid4()), expected_events=tuple(expected_events))
        self.writes.append(write)
        headers = self.system.headers(role, "lara", organisation) | {"X-Correlation-ID": write.correlation_id}
        try:
            response = await self.client.post(self.system.urls[service] + path, json=body, headers=headers)
        except httpx.HTTPError as error:
            write.answered_at = time.monotonic()
            write.answer = {"error": repr(error)}
            return write
        write.answered_at = time.monotonic()
        write.status = response.status_code
        try:
            write.answer = response.json()
        except ValueError:
            write.answer = {"text": response.text}
        return write

    async def notify(self, body: dict[str, Any]) -> Write:
        """A partner notifies through the HTTP door: a new notification writes its one outcome event,
        a re-send (200) writes nothing."""
        # As the notifier's own system: a partner notifies in its organisation's name only.
        organisation = body["notifier"]["organisation"]
        write = await self.post("notification", "/notifications", body, "partner_system", (), organisation)
        if write.status == 201:
            write.expected_events = (EVENT_OF_OUTCOME[write.answer["outcome"]],)
        return write

    async def aclose(self) -> None:
        await self.client.aclose()


class Allocations:
    """The LAC at work during a run: registers and trains reviewers, then allocates waiting cases."""

    def __init__(self, writer: Writer, rng: random.Random) -> None:
        self.writer = writer
        self.rng = rng
        self.reviewers: list[str] = []
        self.seniors: list[str] = []

    async def step(self) -> None:
        if len(self.reviewers) < 3 or len(self.seniors) < 2:
            await self._register(senior=len(self.seniors) < 2 and len(self.reviewers) >= 1)
            return
        queue = await self._queue()
        if not queue:
            return
        case_id = self.rng.choice(queue)
        await self.writer.post(
            "allocation",
            f"/cases/{case_id}/allocation",
            {
                "reviewer_id": self.rng.choice(self.reviewers),
                "senior_reviewer_id": self.rng.choice(self.seniors),
            },
            "lac",
            ["allocation.ReviewerAllocated"],
        )

    async def _register(self, senior: bool) -> None:
        user = f"rev-{uuid4().hex[:8]}"
        made = await self.writer.post(
            "allocation",
            "/reviewers",
            {
                "user_id": user,
                "name": user.title(),
                "organisations": ["Sirona Care"],
                "senior": senior,
                "capacity": 100,
            },
            "lac",
            ["allocation.ReviewerRegistered"],
        )
        if not made.succeeded:
            return  # another one next time; what this one wrote (if anything) is checked at the end
        reviewer_id = made.answer["reviewer_id"]
        trained = await self.writer.post(
            "allocation",
            f"/reviewers/{reviewer_id}/training",
            {"completed_on": date.today().isoformat()},
            "lac",
            ["allocation.ReviewerTrainingRecorded"],
        )
        if trained.succeeded:
            (self.seniors if senior else self.reviewers).append(reviewer_id)

    async def _queue(self) -> list[str]:
        try:
            response = await self.writer.client.get(
                self.writer.system.urls["allocation"] + "/allocation-queue",
                headers=self.writer.system.headers("lac", "lara"),
            )
        except httpx.HTTPError:
            return []
        if response.status_code != 200:
            return []
        return [c["case_id"] for c in response.json()["cases"]]


# ---------------------------------------------------------------------------------------------------
# Reading what the system holds


async def feed(system: System, service: str) -> list[dict[str, Any]]:
    """Every event of the service, from its public `GET /events` feed, in sequence order."""
    events: list[dict[str, Any]] = []
    headers = system.headers("ig_officer", "fault-checker")
    async with httpx.AsyncClient(base_url=system.urls[service], timeout=30) as client:
        while True:
            after = events[-1]["source_sequence"] if events else 0
            page = await client.get("/events", params={"after": after, "limit": 5000}, headers=headers)
            assert page.status_code == 200, page.text
            batch = [json.loads(e) if isinstance(e, str) else e for e in page.json()["events"]]
            if not batch:
                return events
            events += batch


async def events_of(system: System, service: str, where: str = "true", *args: Any) -> list[dict[str, Any]]:
    """The service's events from its event store (a test may read it), as envelopes."""
    conn = await asyncpg.connect(system.database_url_for(service))
    try:
        rows = await conn.fetch(f"SELECT envelope FROM events WHERE {where} ORDER BY source_sequence", *args)
    finally:
        await conn.close()
    return [json.loads(r["envelope"]) for r in rows]


async def outcomes(system: System) -> dict[str, list[str]]:
    """Notification id -> the outcome events recorded for it, by the notification service."""
    found: dict[str, list[str]] = {}
    for event in await events_of(system, "notification", "event_type = ANY($1)", list(OUTCOME_EVENTS)):
        found.setdefault(event["data"]["notification_id"], []).append(OUTCOME_EVENTS[event["event_type"]])
    return found


async def until_done(what: str, look: Callable[[], Awaitable[tuple[int, int]]], stall: float) -> None:
    """Poll `look` (done so far, wanted) until all is done. Fails only when nothing more got done for
    `stall` seconds: on a slow machine the system may take long, but it must keep going."""
    loop = asyncio.get_running_loop()
    best, since = -1, loop.time()
    while True:
        done, wanted = await look()
        if done >= wanted:
            return
        if done > best:
            best, since = done, loop.time()
        elif loop.time() - since > stall:
            raise AssertionError(f"{what}: {done} of {wanted}, and no progress for {stall}s")
        await asyncio.sleep(0.5)


async def wait_for_outcomes(system: System, sent: list[Sent], stall: float = 60) -> dict[str, list[str]]:
    wanted = {s.notification_id for s in sent}
    found: dict[str, list[str]] = {}

    async def look() -> tuple[int, int]:
        nonlocal found
        found = await outcomes(system)
        return len(wanted & found.keys()), len(wanted)

    await until_done("notifications with an outcome", look, stall)
    return found


def check_outcomes(sent: list[Sent], found: dict[str, list[str]]) -> None:
    """Each notification has exactly one outcome, the one it must have; each person notified more than
    once has one case, the other notifications linked to it."""
    problems = [f"{nid}: {kinds}" for nid, kinds in found.items() if len(kinds) != 1]
    assert not problems, f"notifications with other than one outcome: {problems[:10]}"
    unique = {s.notification_id: s for s in sent}
    for nid, item in unique.items():
        if item.expected != "same_person":
            assert found[nid] == [item.expected], (nid, item.expected, found[nid])
    per_person: dict[str, Counter[str]] = {}
    for nid, item in unique.items():
        if item.expected == "same_person":
            per_person.setdefault(item.person, Counter()).update(found[nid])
    for person, kinds in per_person.items():
        assert kinds["case_opened"] == 1 and set(kinds) <= {"case_opened", "duplicate_linked"}, (
            person,
            kinds,
        )


async def opened_cases(system: System) -> set[str]:
    return {
        e["case_id"]
        for e in await events_of(system, "notification", "event_type = 'notification.CaseOpened'")
    }


async def wait_until_allocation_has(system: System, cases: set[str], stall: float = 60) -> None:
    """Until every opened case has reached the allocation service (it consumes them in its own time)."""

    async def look() -> tuple[int, int]:
        conn = await asyncpg.connect(system.database_url_for("allocation"))
        try:
            there = {str(r["case_id"]) for r in await conn.fetch("SELECT case_id FROM allocation_cases")}
        finally:
            await conn.close()
        return len(cases & there), len(cases)

    await until_done("opened cases in the allocation service", look, stall)


async def check_allocation_queue(system: System, cases: set[str]) -> None:
    """Every opened case entered the queue exactly once (one CaseAwaitingAllocation); those still
    waiting are in the LAC's queue once each, the others were allocated (by a write that succeeded)."""
    waiting = Counter(
        e["case_id"]
        for e in await events_of(system, "allocation", "event_type = 'allocation.CaseAwaitingAllocation'")
    )
    assert {c for c in cases if waiting[c] != 1} == set(), "cases not queued exactly once"
    assert set(waiting) == cases, "queued cases the notification service never opened"
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            system.urls["allocation"] + "/allocation-queue", headers=system.headers("lac", "lara")
        )
    queue = Counter(c["case_id"] for c in response.json()["cases"])
    assert all(n == 1 for n in queue.values()), "a case twice in the queue"
    allocated = {
        e["case_id"]
        for e in await events_of(system, "allocation", "event_type = 'allocation.ReviewerAllocated'")
    }
    assert set(queue) == cases - allocated, "the queue is not the opened cases less the allocated ones"


async def check_writes(system: System, writes: list[Write], *, failures_left_nothing: bool) -> None:
    """Each write answered 2xx wrote exactly the events it should, once (found by its correlation id,
    as the caller's own events, not those the system derived from them). With
    `failures_left_nothing`, each write answered an error or not at all wrote nothing."""
    by_service: dict[str, list[Write]] = {}
    for write in writes:
        by_service.setdefault(write.service, []).append(write)
    for service, some in by_service.items():
        ids = [w.correlation_id for w in some]
        events = await events_of(
            system,
            service,
            "envelope::jsonb->>'correlation_id' = ANY($1) AND envelope::jsonb->'actor'->>'kind' <> 'system'",
            ids,
        )
        written: dict[str, list[str]] = {}
        for event in events:
            written.setdefault(event["correlation_id"], []).append(event["event_type"])
        for write in some:
            got = sorted(written.get(write.correlation_id, []))
            if write.succeeded:
                assert got == sorted(write.expected_events), (write, got)
            elif failures_left_nothing:
                assert got == [], (write, got)
            else:
                # A command cut off by a kill may have committed before its answer was lost; it may
                # never have been written twice or in part.
                assert got in ([], sorted(write.expected_events)), (write, got)


async def projection_differences(system: System, service: str) -> dict[str, str]:
    """Rebuild the service's projections from its event store into temporary copies of their tables
    and compare them with the live tables, in one snapshot; the live tables are left untouched."""
    definition = importlib.import_module(f"services.{service}.app").definition
    projections = list(definition.projections())
    # Projections that open sealed values (the person index) need the system's keys, not this process's.
    folder = Path(system.stack.child_env[service]["LEDER_KEY_DIR"])
    install(DataKeys(LocalKeyFile(folder / f"{service}.keys"), service))
    if not projections:
        return {}
    tables = [t for p in projections for t in p.tables]
    pool = await db.create_pool(system.database_url_for(service), min_size=1, max_size=1)
    differences: dict[str, str] = {}
    try:
        async with pool.acquire() as conn:
            transaction = conn.transaction(isolation="repeatable_read")
            await transaction.start()
            try:
                live = {t: await _rows(conn, f'public."{t}"') for t in tables}
                for table in tables:
                    # A temporary table of the same name comes first on the search path, so the
                    # projections' own SQL writes there during the rebuild.
                    await conn.execute(f'CREATE TEMP TABLE "{table}" (LIKE public."{table}" INCLUDING ALL)')
                await rebuild(EventStore(pool, service, projections), conn=conn)
                rebuilt = {t: await _rows(conn, f'pg_temp."{t}"') for t in tables}
            finally:
                await transaction.rollback()
    finally:
        await pool.close()
    for table in tables:
        if live[table] != rebuilt[table]:
            only_live = [r for r in live[table] if r not in rebuilt[table]]
            only_rebuilt = [r for r in rebuilt[table] if r not in live[table]]
            differences[table] = (
                f"{len(live[table])} live rows, {len(rebuilt[table])} rebuilt; only live: {only_live[:3]};"
                f" only rebuilt: {only_rebuilt[:3]}"
            )
    return differences


async def _rows(conn: Any, table: str) -> list[str]:
    return sorted(repr(tuple(r)) for r in await conn.fetch(f"SELECT * FROM {table}"))


async def check_projections(system: System) -> None:
    for service in SERVICES:
        assert await projection_differences(system, service) == {}, service


async def wait_for_audit(system: System, stall: float = 60) -> dict[str, list[dict[str, Any]]]:
    """Until the audit log holds as many events of each service as the service has; then check, by the
    services' own feeds, that it holds each of them exactly once. Returns the feeds."""

    async def look() -> tuple[int, int]:
        last = {service: await _last_sequence(system, service) for service in SERVICES}
        conn = await asyncpg.connect(system.database_url_for("audit"))
        try:
            rows = await conn.fetch("SELECT source, count(*) AS n FROM audit_log GROUP BY source")
        finally:
            await conn.close()
        logged = {r["source"]: r["n"] for r in rows}
        return sum(min(logged.get(s, 0), n) for s, n in last.items()), sum(last.values())

    while True:
        await until_done("events in the audit log", look, stall)
        feeds = {service: await feed(system, service) for service in SERVICES}
        logged = await _audit_log(system)
        # An event appended after the count was taken may still be on its way: count again.
        if all(e["event_id"] in logged for events in feeds.values() for e in events):
            break
    for service, events in feeds.items():
        assert [e["source_sequence"] for e in events] == list(range(1, len(events) + 1)), service
        in_log = sorted(seq for source, seq in logged.values() if source == service)
        # Every event of the service once (the feed may have grown since; the log holds no more than it).
        assert in_log[: len(events)] == list(range(1, len(events) + 1)), service
        assert len(in_log) == len(set(in_log)), service
        for event in events:
            assert logged[event["event_id"]] == (service, event["source_sequence"]), event["event_id"]
    return feeds


async def _last_sequence(system: System, service: str) -> int:
    conn = await asyncpg.connect(system.database_url_for(service))
    try:
        last: int = await conn.fetchval("SELECT coalesce(max(source_sequence), 0) FROM events")
    finally:
        await conn.close()
    return last


async def _audit_log(system: System) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(system.database_url_for("audit"))
    try:
        rows = await conn.fetch("SELECT event_id, source, source_sequence FROM audit_log")
    finally:
        await conn.close()
    return {str(r["event_id"]): (r["source"], r["source_sequence"]) for r in rows}


async def check_audit_whole(system: System) -> None:
    """No gap in any service's sequence, and the whole log verifies against a new signed checkpoint."""
    headers = system.headers("ig_officer", "fault-checker")
    async with httpx.AsyncClient(base_url=system.urls["audit"], timeout=120) as client:
        gaps = await client.get("/audit/gaps", headers=headers)
        assert gaps.status_code == 200 and gaps.json()["gaps"] == {}, gaps.text
        signed = await client.post("/audit/checkpoints", headers=headers)
        assert signed.status_code == 201, signed.text
        verification = await client.get("/audit/verification", headers=headers)
        assert verification.status_code == 200 and verification.json()["ok"] is True, verification.text


async def check_streams_whole(system: System) -> None:
    """In every event store each stream runs 1..n: no version missing, none twice."""
    for service in SERVICES:
        conn = await asyncpg.connect(system.database_url_for(service))
        try:
            broken = await conn.fetch(
                "SELECT stream_id, count(*) AS n, max(stream_version) AS last FROM events"
                " GROUP BY stream_id HAVING count(*) <> max(stream_version) OR min(stream_version) <> 1"
            )
        finally:
            await conn.close()
        assert not broken, (service, [dict(r) for r in broken[:5]])


# ---------------------------------------------------------------------------------------------------
# Several instances of a service


async def relay_holder(system: System, service: str, timeout: float = 60) -> str:
    """Which of the service's running instances (by its name in the stack, "allocation" or
    "allocation-2") publishes now: the one whose connection holds the relay's advisory lock in the
    service's database, found by the client port PostgreSQL sees for it."""
    from infra.relay import _RELAY_LOCK

    instances = [
        name
        for name, process in system.stack.services.items()
        if name.partition("-")[0] == service and process.poll() is None
    ]
    deadline = asyncio.get_running_loop().time() + timeout
    conn = await asyncpg.connect(system.database_url_for(service))
    try:
        while True:
            port = await conn.fetchval(
                "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                _RELAY_LOCK,
            )
            for name in instances:
                process = psutil.Process(system.stack.services[name].pid)
                if port is not None and any(c.laddr.port == port for c in process.net_connections("tcp")):
                    return name
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no instance of {service} holds the relay's lock ({instances})")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def messages_handled(system: System, instance: str) -> int:
    """How many messages the instance's consumers applied, as its log says (one `inbox_handled` line
    each): whether it took its share of the partitions."""
    try:
        text = system.log_file(instance).read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return text.count('"event": "inbox_handled"')
