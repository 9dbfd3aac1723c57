"""Personal data, minimum necessary: sealed with AES-256-GCM under one data key per case, held only
in this service's database. Destroying the key (crypto-shredding) makes every copy unreadable, on
every topic and in every other service, while the events themselves stay."""

import base64
import json
import os
from datetime import date
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from events.notification import SealedPersonalData
from events.partner import NextOfKin, PartnerNotification
from infra.db import Connection


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


class KeyDestroyed(Exception):
    """The data key was destroyed at the end of the retention period."""


def seal(key: bytes, key_id: str, details: PersonalDetails) -> SealedPersonalData:
    nonce = os.urandom(12)
    plaintext = details.model_dump_json().encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, key_id.encode())
    return SealedPersonalData(
        key_id=key_id,
        nonce=base64.b64encode(nonce).decode(),
        ciphertext=base64.b64encode(ciphertext).decode(),
    )


def unseal(key: bytes, sealed: SealedPersonalData) -> PersonalDetails:
    plaintext = AESGCM(key).decrypt(
        base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext), sealed.key_id.encode()
    )
    return PersonalDetails.model_validate(json.loads(plaintext))


async def data_key(conn: Connection, key_id: str, *, create: bool = False) -> bytes:
    """The key for `key_id`; made on first use when `create`. Raises KeyDestroyed once destroyed."""
    if create:
        await conn.execute(
            "INSERT INTO data_keys (key_id, key) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING",
            key_id,
            AESGCM.generate_key(bit_length=256),
        )
    row = await conn.fetchrow("SELECT key FROM data_keys WHERE key_id = $1", key_id)
    if row is None or row["key"] is None:
        raise KeyDestroyed(key_id)
    key: bytes = row["key"]
    return key


async def destroy_key(conn: Connection, key_id: str) -> None:
    await conn.execute(
        "UPDATE data_keys SET key = NULL, destroyed_at = now() WHERE key_id = $1 AND key IS NOT NULL", key_id
    )


async def unseal_with_stored_key(conn: Connection, sealed: SealedPersonalData) -> PersonalDetails | None:
    try:
        return unseal(await data_key(conn, sealed.key_id), sealed)
    except KeyDestroyed:
        return None


def dump(details: PersonalDetails) -> dict[str, Any]:
    return details.model_dump(mode="json")
