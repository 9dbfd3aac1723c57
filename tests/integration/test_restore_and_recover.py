"""A service restored from a backup is fenced, says so, and is brought back from the log (issue 20).

The notification service, with the allocation and audit services that consume it, on one broker. A
backup of its database is taken (a copy of the database made by the server, as pg_dump and pg_restore
would give it: another database, another OID) after some notifications; then more notifications, the
LAC's actions on old and new cases, an old and a new case shredded; then the database is restored from
the backup and the service started again. It fences itself: /readyz says why, a command answers 503
store_fenced, its relay publishes nothing (the audit log receives nothing new, and no fork), the lost
cases answer 404. `leder recover notification` puts the lost events back from the service's topic and
the data keys made after the backup from the key manager's backup of them, but not the shredded cases'
(the old one's, live in the backup, marked destroyed); the fence lifts; the lost cases answer again with
what they had, their personal details open again (the shredded ones' do not), the partner's lost
notifications answer with their original outcome (sending one again opens no second case), every service
agrees on every case, the next event continues the sequence, and the audit log holds every notification
event once, verifies, and shows no fork."""

import asyncio
import io
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from events import Actor
from events.topics import service_topic
from infra import db
from infra.eventstore import Context
from infra.keys import KeyDestroyed, LocalKeyFile
from infra.sealing import DataKeys
from infra.settings import database_url_for
from leder import cli
from leder.people import NewPeople
from services.allocation.app import definition as allocation_service
from services.audit import log as audit_log_module
from services.audit.app import definition as audit_service
from services.audit.order import order_log
from services.notification import handlers as notification_handlers
from services.notification.app import definition as notification_service
from tests.support.service import RunningService, running_service
from tests.support.waiting import eventually

PARTNER = "southmead"


@pytest.fixture
def key_file() -> Iterator[Path]:
    """The notification service's key-encryption keys: in the key manager, which the restore of its
    database does not touch (a file of the test's own, kept across the service's restarts)."""
    with tempfile.TemporaryDirectory(prefix="leder-keys-restore-") as folder:
        yield Path(folder) / "notification.keys"


async def notify(n: RunningService, body: dict[str, Any]) -> dict[str, Any]:
    organisation = body["notifier"]["organisation"]
    answer = await n.client.post(
        "/notifications", headers=n.headers("partner_system", PARTNER, organisation=organisation), json=body
    )
    assert answer.status_code in (200, 201), answer.text
    outcome: dict[str, Any] = answer.json()
    return outcome


async def outcome_of(n: RunningService, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    organisation = body["notifier"]["organisation"]
    answer = await n.client.get(
        f"/notifications/{body['notification_id']}",
        headers=n.headers("partner_system", PARTNER, organisation=organisation),
    )
    return answer.status_code, answer.json()


async def person(n: RunningService, case_id: str) -> tuple[int, dict[str, Any]]:
    """The case's personal details as the LAC opens them (which is recorded: an event)."""
    answer = await n.client.get(
        f"/cases/{case_id}/person", params={"reason": "checking the referral"}, headers=n.headers("lac")
    )
    return answer.status_code, answer.json()


async def case_view(n: RunningService, case_id: str) -> tuple[int, dict[str, Any]]:
    answer = await n.client.get(f"/cases/{case_id}", headers=n.headers("lac"))
    return answer.status_code, answer.json()


async def logged(audit: RunningService) -> list[tuple[int, str]]:
    rows = await audit.runtime.pool.fetch(
        "SELECT source_sequence, event_id::text FROM audit_log WHERE source = 'notification'"
        " ORDER BY source_sequence"
    )
    return [(r["source_sequence"], r["event_id"]) for r in rows]


async def stored(n: RunningService) -> list[tuple[int, str]]:
    rows = await n.runtime.pool.fetch("SELECT source_sequence, event_id::text FROM events ORDER BY 1")
    return [(r["source_sequence"], r["event_id"]) for r in rows]


async def queued(a: RunningService) -> set[str]:
    waiting = (await a.client.get("/allocation-queue", headers=a.headers("lac"))).json()["cases"]
    return {c["case_id"] for c in waiting}


async def copy_database(server: str, source: str, target: str) -> None:
    """A physical copy of `source` made by the server (CREATE DATABASE ... TEMPLATE): no connection to
    it may be open, so the service is stopped meanwhile."""
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        await admin.close()


async def test_a_restored_service_is_fenced_and_recovered_from_the_log(
    pg_server_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    key_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = {s: f"leder_test_{uuid4().hex[:12]}" for s in ("notification", "allocation", "audit", "backup")}
    urls = {s: database_url_for(pg_server_url, name) for s, name in names.items()}
    for service in ("notification", "allocation", "audit"):
        await db.ensure_database(urls[service])

    @asynccontextmanager
    async def notification_running() -> AsyncIterator[RunningService]:
        keys = DataKeys(LocalKeyFile(key_file), "notification")
        async with running_service(
            notification_service, urls["notification"], kafka_bootstrap, topic_prefix, keys
        ) as n:
            yield n

    try:
        async with AsyncExitStack() as others:
            a = await others.enter_async_context(
                running_service(allocation_service, urls["allocation"], kafka_bootstrap, topic_prefix)
            )
            audit = await others.enter_async_context(
                running_service(audit_service, urls["audit"], kafka_bootstrap, topic_prefix)
            )
            people = NewPeople()
            kept = [people.notification() for _ in range(3)]
            lost = [people.notification() for _ in range(3)]
            async with notification_running() as n:
                cases = {b["notification_id"]: (await notify(n, b))["case_id"] for b in kept}

                async def all_logged() -> bool:
                    return await logged(audit) == await stored(n)

                await eventually(all_logged, timeout=60)
                await eventually(heard_every_allocation(n, a, cases), timeout=60)
                at_backup = len(await stored(n))
                allocations_at_backup = await a.runtime.store.last_sequence()
            # The backup.
            await copy_database(pg_server_url, names["notification"], names["backup"])

            async with notification_running() as n:
                for body in lost:
                    cases[body["notification_id"]] = (await notify(n, body))["case_id"]
                # The LAC's actions, on a case of before the backup and on one of after.
                acted = [cases[kept[0]["notification_id"]], cases[lost[0]["notification_id"]]]
                for case_id in acted:
                    recorded = await n.client.post(
                        f"/cases/{case_id}/ethnicity",
                        headers=n.headers("lac"),
                        json={"ethnicity": "B"},
                    )
                    assert recorded.status_code == 200, recorded.text
                # The personal details of the cases of after the backup, as the LAC sees them.
                details = {}
                for body in lost:
                    status_code, seen = await person(n, cases[body["notification_id"]])
                    assert status_code == 200, seen
                    details[body["notification_id"]] = seen
                # One of them shredded (its retention ended): its key-encryption key destroyed; and a
                # case of before the backup too, whose key the backup holds as live.
                shredded = cases[lost[0]["notification_id"]]
                shredded_before = cases[kept[1]["notification_id"]]
                for case_id in (shredded, shredded_before):
                    assert await notification_handlers.destroy_personal_data(
                        n.runtime.store, UUID(case_id), 0, Context(Actor.system("retention"))
                    )
                    assert (await person(n, case_id))[0] == 410
                before = {case_id: (await case_view(n, case_id))[1] for case_id in cases.values()}
                outcomes = {b["notification_id"]: (await outcome_of(n, b))[1] for b in kept + lost}
                await eventually(all_logged, timeout=60)
                history = await stored(n)

                await eventually(heard_every_allocation(n, a, cases), timeout=60)
                allocations_after = await a.runtime.store.last_sequence()

            # The restore: the database dropped, and made again from the backup.
            await db.drop_database(urls["notification"])
            await copy_database(pg_server_url, names["backup"], names["notification"])

            async with notification_running() as n:

                async def fenced() -> dict[str, Any] | None:
                    store = (await n.client.get("/readyz")).json()["checks"]["store"]
                    return store if store["compared"] and not store["ok"] else None

                check = await eventually(fenced, timeout=30)
                assert check is not None
                assert (
                    "behind its topic" in check["reason"] and "leder recover notification" in check["reason"]
                )
                assert "database OID" in check["reason"] or "to sequence" in check["reason"]
                refused = await n.client.post(
                    "/notifications",
                    headers=n.headers("partner_system", PARTNER),
                    json=people.notification(),
                )
                assert refused.status_code == 503, refused.text
                assert refused.json()["code"] == "store_fenced"
                assert "behind its topic" in refused.json()["detail"]
                lost_case = cases[lost[1]["notification_id"]]
                assert (await case_view(n, lost_case))[0] == 404
                await asyncio.sleep(2)  # its relay would have published by now, were it not fenced
                assert await logged(audit) == history
                forks = (await audit.client.get("/audit/forks", headers=audit.headers("ig_officer"))).json()
                assert forks["open"] == 0

                # `leder recover notification`, as an operator runs it (the CLI, in a thread of its own).
                monkeypatch.setenv("LEDER_NOTIFICATION_DATABASE_URL", urls["notification"])
                monkeypatch.setenv("LEDER_KAFKA_BOOTSTRAP", kafka_bootstrap)
                monkeypatch.setenv("LEDER_TOPIC_PREFIX", topic_prefix)
                monkeypatch.setenv("LEDER_KEY_DIR", str(key_file.parent))  # the key manager's backup too
                printed = io.StringIO()
                with redirect_stdout(printed):
                    status = await asyncio.to_thread(cli.main, ["recover", "notification"])
                said = printed.getvalue()
                assert status == 0, said
                restored_line = next(line for line in said.splitlines() if "put back" in line)
                assert (
                    f"put back {len(history) - at_backup} events (sequences {at_backup + 1}-{len(history)})"
                    f" from {service_topic('notification', topic_prefix)}"
                ) in restored_line
                # The data keys of the cases notified after the backup are back from the key manager's
                # backup, but the shredded case's, which stays shredded; none is lost.
                assert "NOT RECOVERED" not in said
                restored_keys = next(line for line in said.splitlines() if "made after the backup" in line)
                assert f"restored {len(lost) - 1} data keys made after the backup" in restored_keys
                for body in lost[1:]:
                    assert cases[body["notification_id"]] in restored_keys
                assert shredded not in restored_keys
                stays = next(line for line in said.splitlines() if "kept shredded" in line)
                assert "kept shredded: 2 data keys whose" in stays
                assert shredded in stays and shredded_before in stays
                # What its consumers had handled since the backup is in their inbox again.
                handled_since = allocations_after - allocations_at_backup
                assert handled_since > 0
                assert f"consumer allocation-events: {handled_since} handled messages" in said

                async def clear() -> bool:
                    store = (await n.client.get("/readyz")).json()["checks"]["store"]
                    return bool(store["ok"])

                await eventually(clear, timeout=30)
                assert await stored(n) == history
                inbox = await n.runtime.pool.fetchval(
                    "SELECT count(*) FROM inbox WHERE consumer = 'allocation-events'"
                )
                assert inbox == allocations_after
                # Every case answers as it did, the lost ones too; the partner's notifications too.
                for case_id, view in before.items():
                    status_code, now = await case_view(n, case_id)
                    assert status_code == 200 and now == view
                for body in kept + lost:
                    assert await outcome_of(n, body) == (200, outcomes[body["notification_id"]])
                # The lost cases' personal details open again; the shredded case's do not, and its key
                # is not made again.
                for body in lost[1:]:
                    assert await person(n, cases[body["notification_id"]]) == (
                        200,
                        details[body["notification_id"]],
                    )
                for case_id in (shredded, shredded_before):
                    assert (await person(n, case_id))[0] == 410
                    row = await n.runtime.pool.fetchrow(
                        "SELECT key_id, wrapped, destroyed_at FROM data_keys WHERE strpos(key_id, $1) > 0",
                        case_id,
                    )
                    assert row is not None and row["wrapped"] is None and row["destroyed_at"] is not None
                    kek = f"notification/{row['key_id']}"
                    assert kek not in await LocalKeyFile(key_file).names()
                    with pytest.raises(KeyDestroyed):
                        await LocalKeyFile(key_file).escrowed(kek)
                # A lost notification sent again is the same notification: no second case.
                again = await notify(n, lost[2])
                assert again["case_id"] == cases[lost[2]["notification_id"]]
                # Allocation agrees: every case is in its queue, once.
                assert await queued(a) == set(cases.values())
                # The next event follows on; the audit log holds every event once, no fork.
                newest = people.notification()
                cases[newest["notification_id"]] = (await notify(n, newest))["case_id"]
                await eventually(all_logged_now(n, audit), timeout=60)
                assert (await stored(n))[-1][0] > len(history)
                # Recorded in the restored database's own epoch: not the one the lost events carry.
                epochs = [e.store_epoch for e in await n.runtime.store.read_all()]
                assert epochs[-1] is not None and epochs[-1] not in epochs[: len(history)]
                assert set(epochs[: len(history)]) == {epochs[0]}
                gaps = await audit.client.get("/audit/gaps", headers=audit.headers("ig_officer"))
                assert gaps.json() == {"gaps": {}}
                forks = (await audit.client.get("/audit/forks", headers=audit.headers("ig_officer"))).json()
                assert forks["open"] == 0 and forks["forks"] == []
                verification = await audit.client.get(
                    "/audit/verification", headers=audit.headers("ig_officer")
                )
                assert verification.json()["ok"] is True, verification.text
                assert (await n.client.get("/readyz")).json()["checks"]["forks"]["ok"] is True
                assert cases[newest["notification_id"]] in await queued(a)
    finally:
        for url in urls.values():
            await db.drop_database(url)


def heard_every_allocation(n: RunningService, a: RunningService, cases: dict[str, str]) -> Any:
    """Allocation queued every case, and the notification service heard every event allocation recorded
    (its inbox has each)."""

    async def check() -> bool:
        heard = await n.runtime.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = 'allocation-events'"
        )
        return await queued(a) == set(cases.values()) and heard == await a.runtime.store.last_sequence()

    return check


def all_logged_now(n: RunningService, audit: RunningService) -> Any:
    async def check() -> bool:
        return await logged(audit) == await stored(n)

    return check


async def audit_log(audit: RunningService) -> list[tuple[int, str, str, bytes]]:
    rows = await audit.runtime.pool.fetch(
        "SELECT position, source, event_id::text, leaf_hash FROM audit_log ORDER BY position"
    )
    return [(r["position"], r["source"], r["event_id"], bytes(r["leaf_hash"])) for r in rows]


async def audit_published(audit: RunningService) -> bool:
    """The audit service's relay published every event its store holds."""
    last = await audit.runtime.store.last_sequence()
    through = await audit.runtime.pool.fetchval("SELECT max(published_through) FROM relay_position")
    return bool(last) and through == last


async def read_history(audit: RunningService, case_id: str) -> None:
    """The IG officer reads a case's history: an AuditLogRead of the audit service's own, logged too."""
    answer = await audit.client.get(
        f"/audit/cases/{case_id}/history", headers=audit.headers("ig_officer", "iris")
    )
    assert answer.status_code == 200, answer.text


async def test_a_restored_audit_log_is_rebuilt_in_its_order_and_checked_against_its_checkpoint(
    pg_server_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    key_file: Path,
    audit_checkpoint_log: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The audit service's database restored from a backup: its log lost the entries logged since, in
    the order they arrived, which the checkpoint signed since commits to. It fences itself; `leder
    recover audit` puts its own lost events back from its topic, logs the lost entries again in the
    order the checkpoint published beside it (the order log), each the bytes of its source's topic,
    and checks the tree against the last published checkpoint: the log is the one that was, and
    verifies."""
    names = {s: f"leder_test_{uuid4().hex[:12]}" for s in ("notification", "audit", "backup")}
    urls = {s: database_url_for(pg_server_url, name) for s, name in names.items()}
    for service in ("notification", "audit"):
        await db.ensure_database(urls[service])

    def audit_running() -> Any:
        return running_service(audit_service, urls["audit"], kafka_bootstrap, topic_prefix)

    try:
        keys = DataKeys(LocalKeyFile(key_file), "notification")
        async with running_service(
            notification_service, urls["notification"], kafka_bootstrap, topic_prefix, keys
        ) as n:
            people = NewPeople()
            cases = [(await notify(n, people.notification()))["case_id"] for _ in range(2)]
            async with audit_running() as audit:
                await eventually(all_logged_now(n, audit), timeout=60)
                await read_history(audit, cases[0])
                async with audit.runtime.pool.acquire() as conn:
                    await audit_log_module.sign_checkpoint(conn)
                await eventually(lambda: audit_published(audit), timeout=30)
                at_backup = await audit_log(audit)
            # The backup.
            await copy_database(pg_server_url, names["audit"], names["backup"])

            async with audit_running() as audit:
                for _ in range(3):
                    cases.append((await notify(n, people.notification()))["case_id"])
                await eventually(all_logged_now(n, audit), timeout=60)
                await read_history(audit, cases[-1])
                async with audit.runtime.pool.acquire() as conn:
                    signed = await audit_log_module.sign_checkpoint(conn)
                # A read after the checkpoint: an event of the audit service's own, its order signed by
                # nothing, logged after the signed entries.
                await read_history(audit, cases[0])
                await eventually(lambda: audit_published(audit), timeout=30)
                history = await audit_log(audit)
                assert signed.tree_size == len(history) - 1 > len(at_backup)
                assert history[-1][1] == "audit"
                assert {source for _, source, _, _ in history[len(at_backup) :]} == {"notification", "audit"}

            # The restore.
            await db.drop_database(urls["audit"])
            await copy_database(pg_server_url, names["backup"], names["audit"])

            async with audit_running() as audit:

                async def fenced() -> dict[str, Any] | None:
                    store = (await audit.client.get("/readyz")).json()["checks"]["store"]
                    return store if store["compared"] and not store["ok"] else None

                check = await eventually(fenced, timeout=30)
                assert check is not None and "leder recover audit" in check["reason"]
                assert await audit_log(audit) == at_backup

                monkeypatch.setenv("LEDER_AUDIT_DATABASE_URL", urls["audit"])
                monkeypatch.setenv("LEDER_KAFKA_BOOTSTRAP", kafka_bootstrap)
                monkeypatch.setenv("LEDER_TOPIC_PREFIX", topic_prefix)
                # An order log with two lost entries swapped (each line still true of its event): the
                # rebuilt tree is not the signed one, and recovery refuses, writing nothing.
                order_file = order_log(audit_checkpoint_log)
                kept_order = order_file.read_text()
                lines = kept_order.splitlines()
                lost_lines = [
                    i for i, line in enumerate(lines) if json.loads(line)["position"] >= len(at_backup)
                ]
                first, second = lost_lines[:2]
                one, other = json.loads(lines[first]), json.loads(lines[second])
                one["position"], other["position"] = other["position"], one["position"]
                lines[first], lines[second] = json.dumps(one), json.dumps(other)
                order_file.write_text("\n".join(lines) + "\n")
                errors = io.StringIO()
                with redirect_stderr(errors):
                    refused = await asyncio.to_thread(cli.main, ["recover", "audit"])
                assert refused == 1
                assert "does not match the published checkpoint" in errors.getvalue(), errors.getvalue()
                assert await audit_log(audit) == at_backup
                assert (await audit.client.get("/readyz")).json()["checks"]["store"]["ok"] is False
                order_file.write_text(kept_order)

                printed = io.StringIO()
                with redirect_stdout(printed):
                    status = await asyncio.to_thread(cli.main, ["recover", "audit"])
                said = printed.getvalue()
                assert status == 0, said
                lost = signed.tree_size - len(at_backup)
                assert (
                    f"the audit log held {len(at_backup)} entries; logged {lost} again at positions"
                    f" {len(at_backup)}-{signed.tree_size - 1}"
                ) in said
                assert "logged after them 1 event of the audit service's own" in said
                assert f"matches every published checkpoint, the last of tree size {signed.tree_size}" in said
                assert "leder audit reconcile" in said

                async def clear() -> bool:
                    return bool((await audit.client.get("/readyz")).json()["checks"]["store"]["ok"])

                await eventually(clear, timeout=30)
                # Every entry once, in its original order, with its bytes: the same tree.
                assert await audit_log(audit) == history
                signatures = await audit.runtime.pool.fetchval(
                    "SELECT count(*) FROM audit_log WHERE source = 'notification' AND event_signature IS NULL"
                )
                assert signatures == 0
                ig = audit.headers("ig_officer")
                verification = await audit.client.get("/audit/verification", headers=ig)
                assert verification.json()["ok"] is True, verification.text
                assert (await audit.client.get("/audit/gaps", headers=ig)).json() == {"gaps": {}}
                forks = (await audit.client.get("/audit/forks", headers=ig)).json()
                assert forks["open"] == 0 and forks["forks"] == []
                # The consumers carry on from where the lost database had got to: the next event is
                # logged after the rebuilt entries, once.
                cases.append((await notify(n, people.notification()))["case_id"])
                await eventually(all_logged_now(n, audit), timeout=60)
                assert (await audit_log(audit))[: len(history)] == history
                assert (await audit.client.get("/audit/gaps", headers=ig)).json() == {"gaps": {}}
    finally:
        for url in urls.values():
            await db.drop_database(url)
