"""Personal data, minimum necessary: sealed with AES-256-GCM under one data key per case, which this
service stores only wrapped by the case's key-encryption key in the key manager (infra.sealing).
Destroying the key (crypto-shredding) makes every copy unreadable, on every topic and in every other
service, while the events themselves stay."""

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict

from events.notification import SealedPersonalData
from events.partner import NextOfKin, PartnerNotification
from infra import sealing
from infra.db import Connection
from infra.keys import KeyDestroyed

__all__ = [
    "KeyDestroyed",
    "PersonalDetails",
    "data_key",
    "destroy_key",
    "keys_of_new_cases",
    "seal",
    "sync_keys",
    "unseal",
]

SERVICE = "notification"


class PersonalDetails(BaseModel):
    """What identifies the person and the people around them: the reviewer needs it, no one else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nhs_number: str | None
    given_name: str
    family_name: str
    date_of_birth: date
    postcode: str
    notifier_name: str
    notifier_email: str | None
    notifier_phone: str | None
    next_of_kin: NextOfKin | None
    cause_of_death: str | None
    concerns_details: str | None

    @classmethod
    def of(cls, n: PartnerNotification) -> "PersonalDetails":
        return cls(
            nhs_number=n.person.nhs_number,
            given_name=n.person.given_name,
            family_name=n.person.family_name,
            date_of_birth=n.person.date_of_birth,
            postcode=n.person.postcode,
            notifier_name=n.notifier.name,
            notifier_email=n.notifier.email,
            notifier_phone=n.notifier.phone,
            next_of_kin=n.next_of_kin,
            cause_of_death=n.death.cause_of_death,
            concerns_details=n.circumstances.concerns_details,
        )


def keys() -> sealing.DataKeys:
    return sealing.for_service(SERVICE)


def seal(key: bytes, key_id: str, details: PersonalDetails) -> SealedPersonalData:
    return sealing.seal(key, key_id, details.model_dump_json().encode())


def unseal(key: bytes, sealed: SealedPersonalData) -> PersonalDetails:
    return PersonalDetails.model_validate(json.loads(sealing.unseal(key, sealed)))


async def data_key(
    conn: Connection, key_id: str, *, create: bool = False, new: bool = False, durable: bool = True
) -> bytes:
    """The key for `key_id`; made on first use when `create` (without a look first when `new`: a case
    id just drawn; durable only after `sync_keys` when not `durable`). Raises KeyDestroyed once destroyed."""
    return await keys().key(conn, key_id, create=create, new=new, durable=durable)


async def keys_of_new_cases(conn: Connection, key_ids: Sequence[str]) -> dict[str, bytes]:
    """`data_key(conn, k, create=True, new=True, durable=False)` of each (case ids just drawn), their rows
    written together: by id, each key made; one whose row was there first is left out (`data_key`'s)."""
    return await keys().new_keys(conn, key_ids)


async def sync_keys() -> None:
    """The keys made with `durable=False` durable: before the transaction that holds their rows commits."""
    await keys().sync()


async def destroy_key(conn: Connection, key_id: str) -> None:
    await keys().destroy(conn, key_id)


async def unseal_with_stored_key(conn: Connection, sealed: SealedPersonalData) -> PersonalDetails | None:
    try:
        return unseal(await data_key(conn, sealed.key_id), sealed)
    except KeyDestroyed:
        return None


def dump(details: PersonalDetails) -> dict[str, Any]:
    return details.model_dump(mode="json")
