"""Keys outside the database (issue 15): the notification service's data keys are stored only wrapped,
shredding destroys the wrapping key, and then neither the data key, nor the key that wrapped it, nor
any of the person's details can be found in the database's raw files or WAL; rotation rewraps
without touching what was sealed."""

import asyncio
import base64
import random
import string
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from events import Actor
from infra.eventstore import Context
from infra.keys import LocalKeyFile, VaultTransit
from infra.sealing import DataKeys
from leder import cli
from leder.people import nhs_number
from services.notification import handlers
from services.notification.app import definition
from tests.support.notifications import notification
from tests.support.service import RunningService, running_service
from tests.support.vault_transit import running_vault


@pytest.fixture
async def svc(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[RunningService]:
    async with running_service(definition, database_url, kafka_bootstrap, topic_prefix) as running:
        yield running


def _word(rng: random.Random, length: int = 10) -> str:
    return rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=length - 1))


def distinctive() -> tuple[dict[str, Any], list[str]]:
    """A notification whose every personal detail is found nowhere else, and those details."""
    rng = random.Random()
    given, family, nok, notifier = _word(rng), _word(rng), _word(rng), _word(rng)
    nhs = nhs_number(rng)
    inward = "".join(rng.choices("ABDEFGHJLNPQRSTUWXYZ", k=2))
    postcode = f"Z{rng.randrange(1, 99)} {rng.randrange(10)}{inward}"
    phone = f"0117 {rng.randrange(100, 999)} {rng.randrange(1000, 9999)}"
    nok_phone = f"07{rng.randrange(100, 999)} {rng.randrange(100000, 999999)}"
    cause = f"{_word(rng)} pneumonitis {_word(rng)}"
    concerns = f"the {_word(rng)} ward never called {_word(rng)}"
    email = f"{notifier.lower()}@trust.example.nhs.uk"
    body = notification(
        **{
            "person.given_name": given,
            "person.family_name": family,
            "person.nhs_number": nhs,
            "person.postcode": postcode,
            "notifier.name": f"Dr {notifier}",
            "notifier.email": email,
            "notifier.phone": phone,
            "next_of_kin.name": f"{nok} {family}",
            "next_of_kin.phone": nok_phone,
            "death.cause_of_death": cause,
            "circumstances.concerns_about_care": True,
            "circumstances.concerns_details": concerns,
        }
    )
    return body, [given, family, nhs, postcode, notifier, email, phone, nok, nok_phone, cause, concerns]


async def _wrapped(svc: RunningService, key_id: str) -> bytes | None:
    wrapped: bytes | None = await svc.runtime.pool.fetchval(
        "SELECT wrapped FROM data_keys WHERE key_id = $1", key_id
    )
    return wrapped


async def test_keys_are_stored_wrapped_and_after_shredding_the_raw_files_and_wal_hold_nothing(
    svc: RunningService,
) -> None:
    started = time.time() - 2
    body, strings = distinctive()
    opened = await svc.client.post("/notifications", json=body, headers=svc.headers("partner_system"))
    assert opened.status_code == 201, opened.text
    case_id = opened.json()["case_id"]
    seen = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "checking the shredding"}, headers=svc.headers("lac")
    )
    assert seen.status_code == 200 and seen.json()["person"]["family_name"] == strings[1]
    wrapped = await _wrapped(svc, case_id)
    assert wrapped is not None
    async with svc.runtime.pool.acquire() as conn:
        data_key = await svc.runtime.keys.key(conn, case_id)
    key_file = svc.runtime.keys.keys
    assert isinstance(key_file, LocalKeyFile)
    kek_name = svc.runtime.keys.kek(case_id)
    kek = list(key_file._current()[kek_name])
    async with svc.runtime.pool.acquire() as conn:
        rows = [
            str(dict(row))
            for table in ("data_keys", "person_index", "cases", "notifications")
            for row in await conn.fetch(f"SELECT * FROM {table}")
        ]
    # Before shredding too: no data key in clear, and person_index holds keyed hashes, not identifiers.
    assert data_key not in wrapped
    dump = "\n".join(rows)
    for text in strings:
        assert text not in dump, text
    index = await svc.runtime.pool.fetch("SELECT match_kind, match_value FROM person_index")
    assert sorted(r["match_kind"] for r in index) == ["name_and_dates", "nhs_number"]
    assert all(len(r["match_value"]) == 64 for r in index)  # HMAC-SHA-256, hex
    canary = "canary-" + _word(random.Random(), 16)
    await svc.runtime.pool.execute("CREATE TABLE scan_canary (t text)")
    await svc.runtime.pool.execute("INSERT INTO scan_canary VALUES ($1)", canary)

    assert await handlers.destroy_personal_data(
        svc.runtime.store, UUID(case_id), 0, Context(Actor.system("retention"))
    )

    assert await _wrapped(svc, case_id) is None
    gone = await svc.client.get(
        f"/cases/{case_id}/person", params={"reason": "x" * 5}, headers=svc.headers("lac")
    )
    assert gone.status_code == 410
    assert kek_name not in await key_file.names()
    for version in kek:
        assert base64.b64encode(version) not in key_file.path.read_bytes()

    files = await _raw_files(svc.runtime.pool, started)
    contents = [await asyncio.to_thread(path.read_bytes) for path in files]

    def found(needle: bytes) -> list[str]:
        return [str(path) for path, data in zip(files, contents, strict=True) if needle in data]

    # The scan reads the files the database writes: what the test wrote is there to be found.
    assert found(canary.encode()), "the scan did not find the canary: not this database's files?"
    assert found(wrapped), "the scan did not find the (old) wrapping, which the WAL keeps"
    # And what shredding forgot is not.
    assert found(data_key) == [], "the raw data key"
    assert found(data_key.hex().encode()) == []
    for version in kek:
        assert found(version) == [] and found(base64.b64encode(version)) == [], "the wrapping key"
    for text in strings:
        for form in {text.encode(), text.encode("utf-16-le")}:
            assert found(form) == [], f"{text!r} in clear"


async def _raw_files(pool: asyncpg.Pool, since: float) -> list[Path]:
    """The database's own data files and the server's WAL segments written since `since`."""
    await pool.execute("CHECKPOINT")
    await pool.execute("SELECT pg_switch_wal()")
    data_directory = Path(await pool.fetchval("SHOW data_directory"))
    oid = await pool.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    try:
        base = [p for p in (data_directory / "base" / str(oid)).iterdir() if p.is_file()]
        wal = [p for p in (data_directory / "pg_wal").iterdir() if p.is_file() and p.stat().st_mtime >= since]
    except PermissionError as refused:
        pytest.skip(f"the server's data directory cannot be read from here: {refused}")
    return base + wal


async def test_rotation_rewraps_every_data_key_and_what_was_sealed_before_still_opens(
    svc: RunningService,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = []
    for _ in range(2):
        body, strings = distinctive()
        opened = await svc.client.post("/notifications", json=body, headers=svc.headers("partner_system"))
        cases.append((opened.json()["case_id"], strings[1]))
    before = {case_id: await _wrapped(svc, case_id) for case_id, _ in cases}
    events_before = await svc.runtime.store.read_all_raw(0, 10_000)

    monkeypatch.setenv("LEDER_NOTIFICATION_DATABASE_URL", database_url)
    assert await asyncio.to_thread(cli.main, ["keys", "rotate", "notification"]) == 0
    assert "notification: rotated 2 key-encryption keys" in capsys.readouterr().out

    key_file = svc.runtime.keys.keys
    assert isinstance(key_file, LocalKeyFile)
    for case_id, family_name in cases:
        after = await _wrapped(svc, case_id)
        assert after is not None and after != before[case_id]
        assert int.from_bytes(after[1:5], "big") == 2  # wrapped by the new version
        assert len(key_file._current()[svc.runtime.keys.kek(case_id)]) == 2
        seen = await svc.client.get(
            f"/cases/{case_id}/person", params={"reason": "after rotation"}, headers=svc.headers("lac")
        )
        assert seen.status_code == 200, seen.text
        assert seen.json()["person"]["family_name"] == family_name
    # Nothing sealed was touched: the events are as they were (the views above come after them).
    assert (await svc.runtime.store.read_all_raw(0, 10_000))[: len(events_before)] == events_before


async def test_the_service_on_vault_transit_opens_shreds_and_rotates_through_vaults_api(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    with running_vault() as (vault, address):
        transit = VaultTransit(address, vault.token)
        keys = DataKeys(transit, "notification")
        try:
            async with running_service(definition, database_url, kafka_bootstrap, topic_prefix, keys) as svc:
                body, strings = distinctive()
                opened = await svc.client.post(
                    "/notifications", json=body, headers=svc.headers("partner_system")
                )
                case_id = opened.json()["case_id"]
                transit_key = f"leder-notification-{case_id}"
                assert transit_key in vault.keys
                assert vault.keys["leder-hmac-notification-person-index"].versions  # the index's key

                async with svc.runtime.pool.acquire() as conn:
                    assert await svc.runtime.keys.rotate(conn) == 1
                assert (await _wrapped(svc, case_id) or b"").startswith(b"vault:v2:")
                seen = await svc.client.get(
                    f"/cases/{case_id}/person", params={"reason": "on vault"}, headers=svc.headers("lac")
                )
                assert seen.status_code == 200 and seen.json()["person"]["family_name"] == strings[1]
                again = await svc.client.post(
                    "/notifications",
                    json={**body, "notification_id": str(uuid4())},
                    headers=svc.headers("partner_system"),
                )
                assert again.json()["case_id"] == case_id  # found by its keyed hashes

                assert await handlers.destroy_personal_data(
                    svc.runtime.store, UUID(case_id), 0, Context(Actor.system("retention"))
                )
                assert transit_key not in vault.keys
                assert ("DELETE", f"/v1/transit/keys/{transit_key}") in vault.requests
                gone = await svc.client.get(
                    f"/cases/{case_id}/person", params={"reason": "x" * 5}, headers=svc.headers("lac")
                )
                assert gone.status_code == 410
        finally:
            await transit.aclose()
