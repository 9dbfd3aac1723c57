"""One contract, both key managers: the local key file and Vault's transit engine (through its
documented HTTP API, served by tests/support/vault_transit.py)."""

import base64
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.keys import (
    KeyDestroyed,
    KeyManager,
    KeyManagerError,
    LocalKeyFile,
    VaultTransit,
    key_manager_from_env,
)
from tests.support.vault_transit import FakeVault, running_vault


@dataclass
class Provider:
    keys: KeyManager
    # Every byte the provider holds at rest (the key file; Vault's stored key material).
    at_rest: Callable[[], bytes]
    # The raw key material of `name`'s versions, as the provider holds it.
    material: Callable[[str], list[bytes]]


@pytest.fixture(scope="module")
def vault() -> Iterator[tuple[FakeVault, str]]:
    with running_vault() as served:
        yield served


@pytest.fixture(params=["local", "vault"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path, vault: tuple[FakeVault, str]
) -> AsyncIterator[Provider]:
    if request.param == "local":
        path = tmp_path / "keys" / "notification.keys"
        local = LocalKeyFile(path)

        def file_bytes() -> bytes:
            escrow = path.with_suffix(".escrow")
            return b"".join(f.read_bytes() for f in (path, escrow) if f.exists())

        def local_material(name: str) -> list[bytes]:
            return list(local._current().get(name, []))

        yield Provider(local, file_bytes, local_material)
    else:
        fake, address = vault
        fake.keys.clear()
        fake.secrets.clear()
        transit = VaultTransit(address, fake.token)

        def stored() -> bytes:
            kept = [v for key in fake.keys.values() for v in key.versions]
            escrowed = [repr(v).encode() for secret in fake.secrets.values() for v in secret.versions]
            return b"".join(kept + escrowed)

        def vault_material(name: str) -> list[bytes]:
            service, _, key_id = name.partition("/")
            key = fake.keys.get(f"leder-{service}-{key_id}")
            return list(key.versions) if key else []

        yield Provider(transit, stored, vault_material)
        await transit.aclose()


NAME = "notification/5b0e7a52-0c1f-4f59-9a57-7c1a0c5d8e11"


async def test_a_wrapped_key_unwraps_under_its_name_only(provider: Provider) -> None:
    data_key = os.urandom(32)
    await provider.keys.create(NAME)
    await provider.keys.create(NAME)  # idempotent
    wrapped = await provider.keys.wrap(NAME, data_key)
    assert data_key not in wrapped
    assert await provider.keys.unwrap(NAME, wrapped) == data_key
    other = "notification/another-case"
    await provider.keys.create(other)
    with pytest.raises((KeyManagerError, KeyDestroyed)):
        await provider.keys.unwrap(other, wrapped)
    assert set(await provider.keys.names()) >= {NAME, other}


async def test_an_unknown_name_wraps_and_unwraps_nothing(provider: Provider) -> None:
    with pytest.raises(KeyDestroyed):
        await provider.keys.unwrap("notification/never-made", b"vault:v1:AAAA")
    with pytest.raises(KeyDestroyed):
        await provider.keys.wrap("notification/never-made", os.urandom(32))
    assert "notification/never-made" not in await provider.keys.names()


async def test_a_destroyed_key_is_gone_for_good(provider: Provider) -> None:
    data_key = os.urandom(32)
    await provider.keys.create(NAME)
    wrapped = await provider.keys.wrap(NAME, data_key)
    await provider.keys.rotate(NAME)
    material = provider.material(NAME)
    assert len(material) == 2
    keep = "notification/still-open"
    await provider.keys.create(keep)
    kept = await provider.keys.wrap(keep, data_key)

    await provider.keys.destroy(NAME)
    await provider.keys.destroy(NAME)  # idempotent

    with pytest.raises(KeyDestroyed):
        await provider.keys.unwrap(NAME, wrapped)
    with pytest.raises(KeyDestroyed):
        await provider.keys.rotate(NAME)
    assert NAME not in await provider.keys.names()
    at_rest = provider.at_rest()
    for version in material:
        assert version not in at_rest
        assert base64.b64encode(version) not in at_rest
    assert await provider.keys.unwrap(keep, kept) == data_key


async def test_rotation_keeps_old_wrappings_and_rewrap_moves_them_to_the_new_version(
    provider: Provider,
) -> None:
    data_key = os.urandom(32)
    await provider.keys.create(NAME)
    before = await provider.keys.wrap(NAME, data_key)
    await provider.keys.rotate(NAME)
    assert await provider.keys.unwrap(NAME, before) == data_key
    after = await provider.keys.rewrap(NAME, before)
    assert after != before
    assert data_key not in after
    assert await provider.keys.unwrap(NAME, after) == data_key
    assert await provider.keys.unwrap(NAME, await provider.keys.wrap(NAME, data_key)) == data_key


async def test_hmac_is_stable_and_depends_on_the_key(provider: Provider) -> None:
    first = await provider.keys.hmac("notification/person-index", b"nhs_number:9434765919")
    assert first == await provider.keys.hmac("notification/person-index", b"nhs_number:9434765919")
    assert first != await provider.keys.hmac("notification/person-index", b"nhs_number:9434765870")
    assert first != await provider.keys.hmac("notification/other-index", b"nhs_number:9434765919")
    assert len(first) == 32
    assert "notification/person-index" not in await provider.keys.names()  # never rotated


async def test_a_data_keys_wrapping_is_kept_outside_the_database_and_replaced_by_the_latest(
    provider: Provider,
) -> None:
    data_key = os.urandom(32)
    await provider.keys.create(NAME)
    assert await provider.keys.escrowed(NAME) is None
    wrapped = await provider.keys.wrap(NAME, data_key)
    await provider.keys.escrow(NAME, wrapped)
    kept = await provider.keys.escrowed(NAME)
    assert kept == wrapped
    assert data_key not in provider.at_rest() and base64.b64encode(data_key) not in provider.at_rest()
    assert await provider.keys.unwrap(NAME, kept) == data_key
    # A rotation's rewrap replaces it.
    await provider.keys.rotate(NAME)
    rewrapped = await provider.keys.rewrap(NAME, wrapped)
    await provider.keys.escrow(NAME, rewrapped)
    assert await provider.keys.escrowed(NAME) == rewrapped
    # Each name its own.
    other = "notification/another-case"
    await provider.keys.create(other)
    assert await provider.keys.escrowed(other) is None
    assert await provider.keys.escrowed(NAME) == rewrapped


async def test_destroying_a_key_deletes_its_escrowed_wrapping(provider: Provider) -> None:
    data_key = os.urandom(32)
    await provider.keys.create(NAME)
    wrapped = await provider.keys.wrap(NAME, data_key)
    await provider.keys.escrow(NAME, wrapped)
    keep = "notification/still-open"
    await provider.keys.create(keep)
    kept = await provider.keys.wrap(keep, data_key)
    await provider.keys.escrow(keep, kept)

    await provider.keys.destroy(NAME)

    with pytest.raises(KeyDestroyed):
        await provider.keys.escrowed(NAME)
    assert wrapped not in provider.at_rest()
    # A wrapping escrowed after the destroy (a creator racing a shredding) is no way back either.
    with contextlib.suppress(KeyDestroyed):
        await provider.keys.escrow(NAME, wrapped)
    with pytest.raises(KeyDestroyed):
        await provider.keys.escrowed(NAME)
    with pytest.raises(KeyDestroyed):
        await provider.keys.unwrap(NAME, wrapped)
    assert await provider.keys.escrowed(keep) == kept


async def test_an_escrow_survives_the_process_and_a_stale_copy_opens_nothing_once_destroyed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "notification.keys"
    keys = LocalKeyFile(path)
    await keys.create(NAME)
    wrapped = await keys.wrap(NAME, b"k" * 32)
    await keys.escrow(NAME, wrapped)
    assert stat.S_IMODE(keys.escrow_path.stat().st_mode) == 0o600
    assert keys.escrow_path.parent == path.parent
    again = LocalKeyFile(path)  # another process, or the service started again
    assert await again.escrowed(NAME) == wrapped
    stale = keys.escrow_path.read_bytes()  # a backup of the escrow taken before the shredding
    await again.destroy(NAME)
    assert stat.S_IMODE(keys.escrow_path.stat().st_mode) == 0o600
    with pytest.raises(KeyDestroyed):
        await keys.escrowed(NAME)
    keys.escrow_path.write_bytes(stale)
    with pytest.raises(KeyDestroyed):
        await keys.escrowed(NAME)
    with pytest.raises(KeyDestroyed):
        await keys.unwrap(NAME, wrapped)


async def test_vault_keeps_the_escrow_in_kv_and_destroys_every_version(vault: tuple[FakeVault, str]) -> None:
    fake, address = vault
    fake.keys.clear()
    fake.secrets.clear()
    transit = VaultTransit(address, fake.token)
    try:
        await transit.create(NAME)
        first = await transit.wrap(NAME, b"k" * 32)
        await transit.escrow(NAME, first)
        await transit.rotate(NAME)
        await transit.escrow(NAME, await transit.rewrap(NAME, first))
        path = "leder/data-keys/leder-notification-" + NAME.partition("/")[2]
        assert len(fake.secrets[path].versions) == 2  # KV keeps the earlier version too
        fake.requests.clear()
        await transit.destroy(NAME)
        assert path not in fake.secrets
        assert ("DELETE", f"/v1/{fake.kv_mount}/metadata/{path}") in fake.requests
        assert ("DELETE", f"/v1/{fake.kv_mount}/data/{path}") not in fake.requests  # undeletable
    finally:
        await transit.aclose()
    nowhere = VaultTransit(address, fake.token, kv_mount="not-mounted")
    try:
        await nowhere.create(NAME)
        with pytest.raises(KeyManagerError):
            await nowhere.escrow(NAME, b"vault:v1:AAAA")
    finally:
        await nowhere.aclose()


async def test_the_local_key_file_is_its_owners_alone(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keys = LocalKeyFile(folder / "notification.keys")
    await keys.create(NAME)
    await keys.hmac("notification/person-index", b"x")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "notification.keys").stat().st_mode) == 0o600
    await keys.destroy(NAME)
    assert stat.S_IMODE((folder / "notification.keys").stat().st_mode) == 0o600


async def test_another_process_sees_a_key_destroyed_by_one(tmp_path: Path) -> None:
    path = tmp_path / "notification.keys"
    one, other = LocalKeyFile(path), LocalKeyFile(path)
    await one.create(NAME)
    wrapped = await one.wrap(NAME, b"k" * 32)
    assert await other.unwrap(NAME, wrapped) == b"k" * 32
    await one.destroy(NAME)
    with pytest.raises(KeyDestroyed):
        await other.unwrap(NAME, wrapped)


async def test_a_wrong_vault_token_is_refused(vault: tuple[FakeVault, str]) -> None:
    _, address = vault
    transit = VaultTransit(address, "not-the-token")
    try:
        with pytest.raises(KeyManagerError):
            await transit.create(NAME)
    finally:
        await transit.aclose()


def test_the_environment_picks_the_key_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDER_HOME", str(tmp_path))
    monkeypatch.delenv("LEDER_KEY_DIR", raising=False)
    monkeypatch.delenv("LEDER_KEY_MANAGER", raising=False)
    local = key_manager_from_env("review")
    assert isinstance(local, LocalKeyFile)
    assert local.path == tmp_path / "keys" / "review.keys"
    token_file = tmp_path / "vault-token"
    token_file.write_text("s.token\n")
    monkeypatch.setenv("LEDER_KEY_MANAGER", "vault")
    monkeypatch.setenv("LEDER_VAULT_ADDR", "http://vault.icb.nhs.internal:8200")
    monkeypatch.setenv("LEDER_VAULT_TOKEN_FILE", str(token_file))
    assert isinstance(key_manager_from_env("review"), VaultTransit)
    monkeypatch.setenv("LEDER_KEY_MANAGER", "kms")
    with pytest.raises(RuntimeError):
        key_manager_from_env("review")


async def test_processes_sharing_a_key_file_see_each_others_new_keys_and_rotations(tmp_path: Path) -> None:
    path = tmp_path / "notification.keys"
    one, other = LocalKeyFile(path), LocalKeyFile(path)
    await one.create("notification/first")
    assert await other.names() == ["notification/first"]
    await one.create("notification/second")
    await one.rotate("notification/first")
    wrapped = await one.wrap("notification/first", b"k" * 32)
    assert await other.unwrap("notification/first", wrapped) == b"k" * 32
    assert await other.names() == ["notification/first", "notification/second"]
    await other.destroy("notification/second")
    await other.create("notification/third")
    assert await one.names() == ["notification/first", "notification/third"]
    assert await one.unwrap("notification/first", wrapped) == b"k" * 32


async def test_make_creates_the_key_wraps_under_it_and_keeps_the_wrapping(provider: Provider) -> None:
    data_key = os.urandom(32)
    wrapped = await provider.keys.make(NAME, data_key)
    assert await provider.keys.unwrap(NAME, wrapped) == data_key
    assert await provider.keys.escrowed(NAME) == wrapped
    assert NAME in await provider.keys.names()
    assert data_key not in provider.at_rest()


async def test_an_hmac_key_read_once_is_the_same_key_after_the_file_is_rewritten(tmp_path: Path) -> None:
    """The local file's HMAC keys are held in memory after the first use (never rotated or destroyed),
    so matching stays the same whatever a destroy of a case's key does to the file."""
    path = tmp_path / "keys" / "notification.keys"
    local = LocalKeyFile(path)
    first = await local.hmac("notification/person-index", b"nhs_number:9434765919")
    await local.make(NAME, os.urandom(32))
    await local.destroy(NAME)  # rewrites the file
    assert await local.hmac("notification/person-index", b"nhs_number:9434765919") == first
    # Another process reading the file gets the same key.
    assert await LocalKeyFile(path).hmac("notification/person-index", b"nhs_number:9434765919") == first


async def test_keys_made_not_durable_are_synced_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make(durable=False)` writes the key and its escrowed wrapping at once and fsyncs neither; `sync`
    fsyncs each file once, however many were made: a batch's keys cost two fsyncs, not two each."""
    import infra.keys

    synced: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(infra.keys.os, "fsync", fsync)
    local = LocalKeyFile(tmp_path / "keys" / "notification.keys")
    made = {f"notification/case-{n}": os.urandom(32) for n in range(3)}
    wrapped = {name: await local.make(name, key, durable=False) for name, key in made.items()}
    assert synced == []
    for name, key in made.items():
        assert await local.unwrap(name, wrapped[name]) == key
        assert await local.escrowed(name) == wrapped[name]
    await local.sync()
    assert len(synced) == 2  # the key file and the escrow file
    await local.sync()
    assert len(synced) == 2  # nothing new to sync
    await local.make("notification/case-durable", os.urandom(32))
    assert len(synced) == 4  # a durable make syncs both files itself
    # What was written is what another process reads.
    other = LocalKeyFile(tmp_path / "keys" / "notification.keys")
    for name, key in made.items():
        assert await other.unwrap(name, wrapped[name]) == key
