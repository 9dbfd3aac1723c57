"""The key managers' batch calls (a rebuild opens every case's data key at once): each answer is
the one-at-a-time call's, in order, with None where `unwrap` says the key is destroyed; a wrapping
that opens under no key of its name still fails the whole batch, as `unwrap` fails."""

import os

import pytest

from infra.keys import KeyDestroyed, KeyManagerError
from tests.integration.test_key_managers import Provider, provider, vault  # noqa: F401 (fixtures)


async def test_unwrap_many_opens_each_wrapping_as_unwrap_does_and_none_for_a_destroyed_key(
    provider: Provider,  # noqa: F811
) -> None:
    names = [f"notification/case-{i}" for i in range(5)]
    data_keys = [os.urandom(32) for _ in names]
    wrappings = []
    for name, key in zip(names, data_keys, strict=True):
        await provider.keys.create(name)
        wrappings.append((name, await provider.keys.wrap(name, key)))
    await provider.keys.rotate(names[1])  # an older version still opens
    await provider.keys.destroy(names[3])
    never = ("notification/never-made", wrappings[0][1])

    opened = await provider.keys.unwrap_many([*wrappings, never, wrappings[0]])

    assert opened == [data_keys[0], data_keys[1], data_keys[2], None, data_keys[4], None, data_keys[0]]
    for (name, wrapped), answer in zip(wrappings, opened, strict=False):
        if answer is None:
            with pytest.raises(KeyDestroyed):
                await provider.keys.unwrap(name, wrapped)
        else:
            assert await provider.keys.unwrap(name, wrapped) == answer
    assert await provider.keys.unwrap_many([]) == []


async def test_unwrap_many_fails_as_unwrap_fails_on_a_wrapping_of_another_key(
    provider: Provider,  # noqa: F811
) -> None:
    for name in ("notification/a", "notification/b"):
        await provider.keys.create(name)
    wrapped = await provider.keys.wrap("notification/a", os.urandom(32))
    with pytest.raises((KeyManagerError, KeyDestroyed)):
        await provider.keys.unwrap("notification/b", wrapped)
    with pytest.raises((KeyManagerError, KeyDestroyed)):
        await provider.keys.unwrap_many([("notification/a", wrapped), ("notification/b", wrapped)])


async def test_hmac_many_is_hmac_of_each(provider: Provider) -> None:  # noqa: F811
    data = [b"nhs_number:9434765919", b"name_and_dates:SMITH|1960-01-01|2026-01-01", b"nhs_number:9434765919"]
    many = await provider.keys.hmac_many("notification/person-index", data)
    assert many == [await provider.keys.hmac("notification/person-index", d) for d in data]
    assert many[0] == many[2] != many[1]
    assert many[0] != await provider.keys.hmac("notification/other-index", data[0])
    assert await provider.keys.hmac_many("notification/person-index", []) == []
