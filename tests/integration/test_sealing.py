"""Per-case data keys (infra.sealing) in a service's own `data_keys`, wrapped by the key manager."""

import asyncio
from pathlib import Path

import pytest

from infra.eventstore import EventStore
from infra.keys import KeyDestroyed, LocalKeyFile
from infra.sealing import DataKeys, Sealed, unseal


def data_keys(tmp_path: Path) -> DataKeys:
    return DataKeys(LocalKeyFile(tmp_path / "review.keys"), "review")


async def test_sealed_text_opens_until_the_key_is_destroyed_and_the_key_is_never_made_again(
    store: EventStore, tmp_path: Path
) -> None:
    keys = data_keys(tmp_path)
    async with store.transaction() as conn:
        sealed = await keys.seal_text(conn, "case-1", "pen portrait: loved the allotment")
        assert sealed.key_id == "case-1"
        assert "allotment" not in sealed.ciphertext
        assert await keys.open_text(conn, sealed) == "pen portrait: loved the allotment"
        row = await conn.fetchrow("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = 'case-1'")
        assert row is not None
        assert row["wrapped"] is not None and row["destroyed_at"] is None
        assert await keys.key(conn, "case-1") not in row["wrapped"]

    async with store.transaction() as conn:
        await keys.destroy(conn, "case-1")
        await keys.destroy(conn, "case-1")  # idempotent
    async with store.transaction() as conn:
        assert await keys.open_text(conn, sealed) is None
        with pytest.raises(KeyDestroyed):
            await keys.seal_text(conn, "case-1", "written after shredding")
        with pytest.raises(KeyDestroyed):
            await keys.key(conn, "case-1", create=True)
    assert "review/case-1" not in await keys.keys.names()


async def test_a_shredding_that_rolls_back_forgets_nothing_in_the_database_but_the_kek_stays_gone(
    store: EventStore, tmp_path: Path
) -> None:
    """The key manager is asked last, inside the caller's transaction: if the commit then fails, the
    row still says live but its wrapping opens under nothing (failing towards forgetting)."""
    keys = data_keys(tmp_path)
    async with store.transaction() as conn:
        sealed = await keys.seal_text(conn, "case-2", "notes")

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned):
        async with store.transaction() as conn:
            await keys.destroy(conn, "case-2")
            raise Abandoned
    async with store.transaction() as conn:
        assert await conn.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-2'") is not None
        assert await keys.open_text(conn, sealed) is None
        with pytest.raises(KeyDestroyed):
            await keys.key(conn, "case-2")


async def test_another_process_destroying_a_key_is_seen_despite_the_cache(
    store: EventStore, tmp_path: Path
) -> None:
    mine, theirs = data_keys(tmp_path), data_keys(tmp_path)
    async with store.transaction() as conn:
        sealed = await mine.seal_text(conn, "case-3", "family comments")
        assert await mine.open_text(conn, sealed) == "family comments"  # now cached
        await theirs.destroy(conn, "case-3")
        assert await mine.open_text(conn, sealed) is None


async def test_never_sealed_is_destroyed_for_good_too(store: EventStore, tmp_path: Path) -> None:
    keys = data_keys(tmp_path)
    async with store.transaction() as conn:
        await keys.destroy(conn, "notification-without-a-case")
        with pytest.raises(KeyDestroyed):
            await keys.key(conn, "notification-without-a-case", create=True)


async def test_hmac_is_per_service_and_purpose(store: EventStore, tmp_path: Path) -> None:
    keys = data_keys(tmp_path)
    assert await keys.hmac("person-index", "nhs_number:9434765919") == await keys.hmac(
        "person-index", "nhs_number:9434765919"
    )
    assert await keys.hmac("person-index", "a") != await keys.hmac("other", "a")


async def test_the_key_manager_keeps_each_data_keys_wrapping_through_rotation_until_shredding(
    store: EventStore, tmp_path: Path
) -> None:
    keys = data_keys(tmp_path)
    async with store.transaction() as conn:
        sealed = await keys.seal_text(conn, "case-4", "lived with his sister")
    wrapped = await store.pool.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-4'")
    assert await keys.keys.escrowed("review/case-4") == wrapped

    async with store.transaction() as conn:
        assert await keys.rotate(conn) == 1
    rewrapped = await store.pool.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-4'")
    assert rewrapped != wrapped
    assert await keys.keys.escrowed("review/case-4") == rewrapped

    # The backup alone opens the case's values (as after a restore that lost the row).
    backup = await keys.keys.escrowed("review/case-4")
    assert backup is not None
    assert unseal(await keys.keys.unwrap("review/case-4", backup), sealed) == b"lived with his sister"

    async with store.transaction() as conn:
        await keys.destroy(conn, "case-4")
    with pytest.raises(KeyDestroyed):
        await keys.keys.escrowed("review/case-4")


async def test_the_backup_is_of_the_key_that_won_when_two_make_a_case_key_at_once(
    store: EventStore, tmp_path: Path
) -> None:
    """Each creator escrows its wrapping before its row; the one whose row loses must not leave its own
    (a key nothing was sealed under) as the case's backup."""
    first, second = data_keys(tmp_path), data_keys(tmp_path)
    async with store.transaction() as conn:
        winner = await first.seal_text(conn, "case-5", "first")
        racing = asyncio.create_task(_seal_in_own_transaction(store, second, "case-5"))
        await asyncio.sleep(0.5)  # the second has escrowed its key and waits on the first's row
        assert not racing.done()
    loser = await racing
    row = await store.pool.fetchval("SELECT wrapped FROM data_keys WHERE key_id = 'case-5'")
    assert await first.keys.escrowed("review/case-5") == row
    key = await first.keys.unwrap("review/case-5", row)
    assert unseal(key, winner) == b"first" and unseal(key, loser) == b"second"


async def _seal_in_own_transaction(store: EventStore, keys: DataKeys, key_id: str) -> Sealed:
    async with store.transaction() as conn:
        return await keys.seal_text(conn, key_id, "second")


async def test_a_key_made_as_new_where_one_exists_is_the_existing_one(
    store: EventStore, tmp_path: Path
) -> None:
    """`new` only spares the look first: the key already there is the case's, and one destroyed stays
    destroyed (its key-encryption key is not made again)."""
    keys = data_keys(tmp_path)
    async with store.transaction() as conn:
        first = await keys.key(conn, "case-new", create=True)
        assert await keys.key(conn, "case-new", create=True, new=True) == first
        assert await keys.key(conn, "case-fresh", create=True, new=True) == await keys.key(conn, "case-fresh")
        await keys.destroy(conn, "case-new")
    async with store.transaction() as conn:
        with pytest.raises(KeyDestroyed):
            await keys.key(conn, "case-new", create=True, new=True)
    assert "review/case-new" not in await keys.keys.names()
    assert "review/case-fresh" in await keys.keys.names()
