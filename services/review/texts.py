"""The review's free text, sealed under the review service's own key for the case (infra.sealing) as it
is recorded, and opened only for those the domain lets read it. Once the key is destroyed (the case's
retention ended), every copy of the text, wherever it travelled, opens to None."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

from events.sealing import Sealed
from infra.db import Connection
from infra.sealing import DataKeys, KeyDestroyed, seal, unseal

Sealer = Callable[[str], Sealed]
Opener = Callable[[Sealed | None], str | None]


def key_id(case_id: UUID) -> str:
    """The case's key in the review service's data_keys: the case id."""
    return str(case_id)


async def sealer(keys: DataKeys, conn: Connection, case_id: UUID) -> Sealer:
    """Seals text under the case's key, made on first use. Raises KeyDestroyed once it is destroyed."""
    name = key_id(case_id)
    key = await keys.key(conn, name, create=True)
    return lambda text: seal(key, name, text.encode())


async def opener(keys: DataKeys, conn: Connection, case_id: UUID) -> Opener:
    """Opens the case's sealed texts; every text opens to None once the key is destroyed (or if the
    case never had one: then it has nothing sealed)."""
    name = key_id(case_id)
    try:
        key = await keys.key(conn, name)
    except KeyDestroyed:
        return lambda sealed: None

    def open_(sealed: Sealed | None) -> str | None:
        if sealed is None:
            return None
        if sealed.key_id != name:  # another case's text: never opened under this case's reading
            return None
        return unseal(key, sealed).decode()

    return open_


def sealed_in(value: Any) -> Sealed | None:
    """A sealed value as an event's data or a read model holds it (a dict, or its JSON), else None."""
    if isinstance(value, str) and value.startswith("{"):
        try:
            return Sealed.model_validate_json(value)
        except ValueError:
            return None
    if isinstance(value, dict) and set(value) == {"key_id", "nonce", "ciphertext"}:
        return Sealed.model_validate(value)
    return None


def opened_data(data: dict[str, Any], open_: Opener) -> dict[str, Any]:
    """An event's data with each sealed field opened (None once destroyed): the history reads as written."""
    out = {}
    for field, value in data.items():
        sealed = sealed_in(value) if isinstance(value, dict) else None
        out[field] = open_(sealed) if sealed is not None else value
    return out


def stored(sealed: Sealed | None) -> str | None:
    """A sealed value as the read model stores it: the sealed JSON, never the text."""
    return None if sealed is None else sealed.model_dump_json()
