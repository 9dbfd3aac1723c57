"""Per-case data keys (infra.sealing) in a service's own `data_keys`, wrapped by the key manager."""

from pathlib import Path

import pytest

from infra.eventstore import EventStore
from infra.keys import KeyDestroyed, LocalKeyFile
from infra.sealing import DataKeys


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
