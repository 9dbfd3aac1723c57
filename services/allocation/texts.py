"""The free text about a case (why a conflict was declared, why it went back to the queue or was
reallocated, why it was reopened), sealed under the allocation service's own key for the case
(infra.sealing) as it is recorded, and opened only for the LAC. Once the key is destroyed (the case's
retention ended), every copy of the text, wherever it travelled, opens to None."""

from collections.abc import Callable
from uuid import UUID

from events.sealing import Sealed
from infra.db import Connection
from infra.sealing import DataKeys, KeyDestroyed, for_service, seal, unseal
from services.allocation.domain import Sealer

SERVICE = "allocation"
Opener = Callable[[Sealed | None], str | None]


def keys() -> DataKeys:
    """The service's data keys (handlers and projections have no runtime at hand)."""
    return for_service(SERVICE)


def key_id(case_id: UUID) -> str:
    """The case's key in the allocation service's data_keys: the case id."""
    return str(case_id)


async def sealer(conn: Connection, case_id: UUID) -> Sealer:
    """Seals text under the case's key, made on first use. Raises KeyDestroyed once it is destroyed."""
    name = key_id(case_id)
    key = await keys().key(conn, name, create=True)
    return lambda text: seal(key, name, text.encode())


async def opener(conn: Connection, case_id: UUID) -> Opener:
    """Opens the case's sealed texts; every text opens to None once the key is destroyed (or if the
    case never had one: then it has nothing sealed)."""
    name = key_id(case_id)
    try:
        key = await keys().key(conn, name)
    except KeyDestroyed:
        return lambda sealed: None

    def open_(sealed: Sealed | None) -> str | None:
        if sealed is None or sealed.key_id != name:  # another case's text never opens under this one
            return None
        return unseal(key, sealed).decode()

    return open_


def stored(sealed: Sealed) -> str:
    """A sealed value as the read model stores it: the sealed JSON, never the text."""
    return sealed.model_dump_json()


def from_store(value: str | None) -> Sealed | None:
    return None if value is None else Sealed.model_validate_json(value)
