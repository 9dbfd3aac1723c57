"""Sealing personal data under per-case data keys, themselves stored only wrapped (infra.keys).

Key hierarchy: each service that holds personal data keeps, per case, a 256-bit AES-GCM *data key*
(it seals the case's values) in its own table `data_keys`, wrapped by the case's *key-encryption key*
"<service>/<key_id>" in the key manager. The database never holds a data key in clear. Destroying a
case (crypto-shredding) marks the row destroyed, forgets its wrapping, and destroys the KEK: the
wrapping still lying in old data-file pages or WAL then unwraps under nothing.

The key manager also keeps each data key's wrapping (its key backup, `KeyManager.escrow`), so a database
restored from a backup gets back the keys made after it (leder.recovery.restore_keys); a shredding
deletes that copy with the KEK, and a rotation replaces it with the new wrapping.

Every call that reads or writes `data_keys` takes the caller's connection, so it is part of the
caller's transaction (a case opened and its key, a shredding and its event, commit together).
"""

import base64
import os
from collections import OrderedDict
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.sealing import Sealed
from infra.db import Connection
from infra.keys import KeyDestroyed, KeyManager, key_manager_from_env

__all__ = [
    "DataKeys",
    "KeyDestroyed",
    "Sealed",
    "for_service",
    "install",
    "seal",
    "unseal",
]


def seal(key: bytes, key_id: str, plaintext: bytes) -> Sealed:
    """`plaintext` under the data key `key`, bound to `key_id` (associated data)."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, key_id.encode())
    return Sealed(
        key_id=key_id,
        nonce=base64.b64encode(nonce).decode(),
        ciphertext=base64.b64encode(ciphertext).decode(),
    )


def unseal(key: bytes, sealed: Sealed) -> bytes:
    return AESGCM(key).decrypt(
        base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext), sealed.key_id.encode()
    )


class DataKeys:
    """One service's per-case data keys: made, unwrapped (and cached), destroyed, rotated."""

    def __init__(self, keys: KeyManager, service: str, *, cache_size: int = 4096) -> None:
        self.keys = keys
        self.service = service
        # key_id -> (its wrapping, the data key): projections open a case's values event after event
        # without asking the key manager each time. Checked against the row's wrapping on every use,
        # so a key destroyed (or rewrapped) by another process is never served from here.
        self._cache: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        self._cache_size = cache_size

    def kek(self, key_id: str) -> str:
        """The name of the case's key-encryption key in the key manager."""
        return f"{self.service}/{key_id}"

    async def key(
        self, conn: Connection, key_id: str, *, create: bool = False, new: bool = False, durable: bool = True
    ) -> bytes:
        """The data key of `key_id`, made on first use when `create`. Raises KeyDestroyed once the case
        was shredded (or, without `create`, if it never had a key). `new`: the caller expects no key
        yet (a case id it has just drawn), so it is made without a look first (should one exist after
        all, that one is the key). `durable=False`: a key made is durable in the key manager only once
        `sync` returns, which the caller awaits before it commits (a batch's keys synced at once)."""
        if new:
            made = await self._create(conn, key_id, durable)
            if made is not None:
                return made
        row = await conn.fetchrow("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = $1", key_id)
        if row is None and create:
            made = await self._create(conn, key_id, durable)
            if made is not None:
                return made
            row = await conn.fetchrow("SELECT wrapped, destroyed_at FROM data_keys WHERE key_id = $1", key_id)
        if row is None or row["wrapped"] is None or row["destroyed_at"] is not None:
            raise KeyDestroyed(key_id)
        wrapped: bytes = row["wrapped"]
        cached = self._cache.get(key_id)
        if cached is not None and cached[0] == wrapped:
            self._cache.move_to_end(key_id)
            return cached[1]
        key = await self.keys.unwrap(self.kek(key_id), wrapped)
        self._remember(key_id, wrapped, key)
        return key

    async def sync(self) -> None:
        """Every key made with `durable=False` durable in the key manager."""
        await self.keys.sync()

    async def _create(self, conn: Connection, key_id: str, durable: bool = True) -> bytes | None:
        """A new data key for `key_id`, or None if another's (or a destroyed one's) row was there first."""
        key, wrapped = await self._made(key_id, durable)
        # A concurrent creator may win: then its key is the case's, and ours is never used.
        won = await conn.fetchval(
            "INSERT INTO data_keys (key_id, wrapped) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING"
            " RETURNING true",
            key_id,
            wrapped,
        )
        if not won:
            await self._lost(conn, key_id)
            return None
        self._remember(key_id, wrapped, key)
        return key

    async def new_keys(self, conn: Connection, key_ids: Sequence[str]) -> dict[str, bytes]:
        """`key(conn, k, create=True, new=True, durable=False)` of each (ids just drawn), their rows
        written in one statement: the keys made, by id; an id whose row another wrote first is left
        out (its key, or KeyDestroyed, is `key`'s to tell)."""
        made = [(key_id, *await self._made(key_id, durable=False)) for key_id in key_ids]
        won = {
            r["key_id"]
            for r in await conn.fetch(
                "INSERT INTO data_keys (key_id, wrapped) SELECT * FROM unnest($1::text[], $2::bytea[])"
                " ON CONFLICT (key_id) DO NOTHING RETURNING key_id",
                [m[0] for m in made],
                [m[2] for m in made],
            )
        }
        keys = {}
        for key_id, key, wrapped in made:
            if key_id in won:
                self._remember(key_id, wrapped, key)
                keys[key_id] = key
            else:
                await self._lost(conn, key_id)
        return keys

    async def _made(self, key_id: str, durable: bool) -> tuple[bytes, bytes]:
        """A new data key for `key_id` and its wrapping, escrowed (the row is the caller's to write)."""
        key = AESGCM.generate_key(bit_length=256)
        # The backup (escrow) before the row: once the row commits, its wrapping is kept outside the
        # database too. Should the transaction roll back, the key manager keeps the wrapping of a key
        # nothing was sealed under: harmless, and replaced when the case's key is made again.
        return key, await self.keys.make(self.kek(key_id), key, durable=durable)

    async def _lost(self, conn: Connection, key_id: str) -> None:
        """Another's row for `key_id` was there first: our escrow may have replaced the winner's (written
        before its row), so its wrapping is kept again. The insert waited for the winner's commit, so
        this comes after the winner's escrow."""
        name = self.kek(key_id)
        winner = await conn.fetchval(
            "SELECT wrapped FROM data_keys WHERE key_id = $1 AND destroyed_at IS NULL", key_id
        )
        if winner is not None:
            await self.keys.escrow(name, winner)
        else:
            # The case was shredded: the key-encryption key just made goes the way of the first.
            await self.keys.destroy(name)

    def cached(self, key_id: str) -> tuple[bytes, bytes] | None:
        """The wrapping and the data key of `key_id` as this process last made or read them, unchecked:
        whoever relies on it must check, in the statement that does, that the row still holds that
        wrapping and is not destroyed (as `key` does on every call)."""
        return self._cache.get(key_id)

    async def destroy(self, conn: Connection, key_id: str) -> None:
        """Shred `key_id`: the row marked destroyed without its wrapping, then the KEK destroyed, last.
        If the key manager fails, the caller's transaction fails and nothing is marked (the sweep tries
        again); if the commit fails after it, the key is gone anyway: it fails towards forgetting."""
        self._cache.pop(key_id, None)
        await conn.execute(
            "INSERT INTO data_keys (key_id, wrapped, destroyed_at) VALUES ($1, NULL, now())"
            " ON CONFLICT (key_id) DO UPDATE SET wrapped = NULL,"
            " destroyed_at = coalesce(data_keys.destroyed_at, now())",
            key_id,
        )
        await self.keys.destroy(self.kek(key_id))

    async def seal_text(self, conn: Connection, key_id: str, text: str) -> Sealed:
        """`text` sealed under the case's key (made if need be)."""
        return seal(await self.key(conn, key_id, create=True), key_id, text.encode())

    async def open_text(self, conn: Connection, sealed: Sealed) -> str | None:
        """The text, or None once the case's key is destroyed."""
        opened = await self.open_bytes(conn, sealed)
        return None if opened is None else opened.decode()

    async def seal_bytes(self, conn: Connection, key_id: str, plaintext: bytes) -> Sealed:
        return seal(await self.key(conn, key_id, create=True), key_id, plaintext)

    async def open_bytes(self, conn: Connection, sealed: Sealed) -> bytes | None:
        try:
            key = await self.key(conn, sealed.key_id)
        except KeyDestroyed:
            return None
        return unseal(key, sealed)

    async def hmac(self, purpose: str, value: str) -> str:
        """A keyed hash (hex) of `value` under the service's never-destroyed key "<service>/<purpose>":
        for matching identifiers that are not stored."""
        digest = await self.keys.hmac(f"{self.service}/{purpose}", value.encode())
        return digest.hex()

    async def rotate(self, conn: Connection, *, batch: int = 500) -> int:
        """Rotate the KEK of every live data key and rewrap it to the new version: the data keys, and
        so every sealed value, stay as they are. Returns how many were rewrapped."""
        rewrapped = 0
        after = ""
        while True:
            rows = await conn.fetch(
                "SELECT key_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL AND key_id > $1"
                " ORDER BY key_id LIMIT $2",
                after,
                batch,
            )
            if not rows:
                return rewrapped
            for row in rows:
                name = self.kek(row["key_id"])
                await self.keys.rotate(name)
                new = await self.keys.rewrap(name, row["wrapped"])
                # The same data key, wrapped under the new version: the backup can take it before the row.
                await self.keys.escrow(name, new)
                await conn.execute(
                    "UPDATE data_keys SET wrapped = $2 WHERE key_id = $1 AND wrapped = $3",
                    row["key_id"],
                    new,
                    row["wrapped"],
                )
                rewrapped += 1
            after = rows[-1]["key_id"]

    def _remember(self, key_id: str, wrapped: bytes, key: bytes) -> None:
        self._cache[key_id] = (wrapped, key)
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


# Each process holds one DataKeys per service it runs, built from the environment (LEDER_KEY_MANAGER)
# at start-up, like its settings. Handlers, projections and the rebuild CLI reach it by the service's
# name, as they have no runtime; tests install one over a key file of their own.
_services: dict[str, DataKeys] = {}


def for_service(service: str) -> DataKeys:
    """The service's DataKeys: the one installed, else one over the key manager of the environment."""
    keys = _services.get(service)
    if keys is None:
        keys = _services[service] = DataKeys(key_manager_from_env(service), service)
    return keys


def install(keys: DataKeys | None, service: str | None = None) -> DataKeys | None:
    """Make `keys` the service's (None: back to the environment's); returns the one it replaces."""
    name = keys.service if keys is not None else service
    assert name is not None
    previous = _services.pop(name, None)
    if keys is not None:
        _services[name] = keys
    return previous
