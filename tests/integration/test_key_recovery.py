"""`leder recover` gives a restored database back the data keys made after its backup, from the key
manager's backup of their wrappings (leder.recovery.restore_keys), without bringing back a shredded one."""

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from infra.eventstore import EventStore
from infra.keys import KeyDestroyed, LocalKeyFile
from infra.sealing import DataKeys, Sealed, seal
from leder.recovery import Recovered, RecoveryRefused, mark_shredded_since, restore_keys


def data_keys(folder: Path) -> DataKeys:
    return DataKeys(LocalKeyFile(folder / "review.keys"), "review")


async def _sealed(store: EventStore, keys: DataKeys, key_id: str, text: str) -> Sealed:
    async with store.transaction() as conn:
        return await keys.seal_text(conn, key_id, text)


def _event(stream_id: str, data: dict[str, Any]) -> str:
    """An envelope's text as recovery reads the events it puts back (only what it looks at)."""
    return json.dumps({"stream_id": stream_id, "case_id": None, "data": data})


async def _lose_rows(store: EventStore, *key_ids: str) -> None:
    """As a restore from a backup taken before these keys were made does."""
    await store.pool.execute("DELETE FROM data_keys WHERE key_id = ANY($1)", list(key_ids))


async def test_keys_made_after_the_backup_come_back_and_a_shredded_one_does_not(
    store: EventStore, tmp_path: Path
) -> None:
    keys = data_keys(tmp_path)
    await _sealed(store, keys, "case-kept", "in the backup")
    restored = await _sealed(store, keys, "case-a", "made after the backup")
    shredded = await _sealed(store, keys, "case-b", "shredded after the backup")
    async with store.transaction() as conn:
        await keys.destroy(conn, "case-b")
    # A key made before the key backup existed: its KEK, but no escrowed wrapping.
    await keys.keys.create("review/case-c")
    unbacked = seal(os.urandom(32), "case-c", b"never escrowed")
    # A backup that is not of the key the events sealed under (it opens under the KEK all the same).
    other = await _sealed(store, keys, "case-d", "sealed under the key the row holds")
    await keys.keys.escrow("review/case-d", await keys.keys.wrap("review/case-d", AESGCM.generate_key(256)))
    # A case of before the backup shredded since: the restored row is live, its KEK destroyed.
    before = await _sealed(store, keys, "case-e", "in the backup, shredded since")
    backed_up = await store.pool.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-e'")
    async with store.transaction() as conn:
        await keys.destroy(conn, "case-e")
    await store.pool.execute(
        "UPDATE data_keys SET wrapped = $1, destroyed_at = NULL WHERE key_id = 'case-e'", backed_up
    )
    await _lose_rows(store, "case-a", "case-b", "case-d")

    recovered = Recovered("review", "review-events", 0)
    missing = {"case-a": restored, "case-b": shredded, "case-c": unbacked, "case-d": other}
    put_back = [_event("case-e", {"text": before.model_dump()}), _event("case-kept", {})]
    async with store.transaction() as conn:
        await mark_shredded_since(conn, data_keys(tmp_path), put_back, recovered)
        await restore_keys(conn, data_keys(tmp_path), missing, recovered)

    assert recovered.restored_keys == ["case-a"]
    assert recovered.shredded_keys == ["case-e", "case-b"]
    assert sorted(recovered.lost_keys) == ["case-c", "case-d"]
    assert "no backup" in recovered.lost_keys["case-c"]
    assert "does not open" in recovered.lost_keys["case-d"]
    said = "\n".join(recovered.lines())
    assert "restored 1 data key made after the backup" in said
    assert "kept shredded: 2 data keys whose" in said and "NOT RECOVERED: 2 data keys" in said
    fresh = data_keys(tmp_path)  # another process: nothing cached
    async with store.transaction() as conn:
        assert await fresh.open_text(conn, restored) == "made after the backup"
        assert await fresh.open_text(conn, shredded) is None
        # The shredded case's key is never made again.
        with pytest.raises(KeyDestroyed):
            await fresh.key(conn, "case-b", create=True)
        for key_id in ("case-b", "case-e"):
            row = await conn.fetchrow("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = $1", key_id)
            assert row is not None and row["wrapped"] is None and row["destroyed_at"] is not None
        # A live key of before the backup is left as it is.
        assert await conn.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-kept'") is not None


async def test_another_key_manager_is_refused_before_it_shreds_every_missing_key(
    store: EventStore, tmp_path: Path
) -> None:
    keys = data_keys(tmp_path / "the-services")
    await _sealed(store, keys, "case-kept", "in the backup")
    lost = await _sealed(store, keys, "case-a", "made after the backup")
    await _lose_rows(store, "case-a")

    elsewhere = data_keys(tmp_path / "another-key-dir")
    with pytest.raises(RecoveryRefused, match="none of the key-encryption keys"):
        async with store.transaction() as conn:
            await restore_keys(conn, elsewhere, {"case-a": lost}, Recovered("review", "review-events", 0))
    assert await store.pool.fetchval("SELECT count(*) FROM data_keys WHERE key_id = 'case-a'") == 0
    # The service's own key manager brings it back.
    recovered = Recovered("review", "review-events", 0)
    async with store.transaction() as conn:
        await restore_keys(conn, keys, {"case-a": lost}, recovered)
        assert await keys.open_text(conn, lost) == "made after the backup"
    assert recovered.restored_keys == ["case-a"]
