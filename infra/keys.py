"""Key-encryption keys, outside the database: a small key-management interface and its two providers.

Each service seals a case's personal data under a data key of its own, and stores that data key only
*wrapped* by a key-encryption key (KEK) that the database never holds: one KEK per case per service,
named "<service>/<key_id>". Destroying the KEK here makes the wrapped data key in the database useless,
and with it every copy of it that PostgreSQL's data files and WAL may still hold: that is the wrapping
that can itself be destroyed.

Two providers:

- `LocalKeyFile`, for `leder up` and the tests: one file per service under `$LEDER_HOME/keys` (0600 in
  a 0700 directory) holding versioned 256-bit keys; writes are atomic (a temporary file, fsync, rename),
  and destroying a key rewrites the file without it.
- `VaultTransit`, for production: HashiCorp Vault's transit secrets engine. Why Vault: an ICB can run it
  on its own premises (no cloud account, no data leaving the NHS network); transit is encryption as a
  service, so the KEKs never leave Vault (we send a data key, it sends back its wrapping); it deletes
  one named key at a time (a case's), and rotation and rewrap (re-encrypt to the latest version without
  handing the plaintext back) are built in; HMAC under a key it holds gives matching without identifiers.

The key backup (escrow): each data key's wrapping is also kept by the key manager, beside its KEK (the
local provider's `<service>.escrow` file; a KV v2 secret in Vault), so a database restored from a backup
gets back the data keys made after the backup (leder.recovery). Only wrappings are kept, never a clear
key, and destroying a KEK deletes its escrowed wrapping with it: even a copy left elsewhere (a backup of
the escrow) unwraps under nothing once the KEK is gone.
"""

import asyncio
import base64
import contextlib
import fcntl
import hmac as hmac_
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

T = TypeVar("T")


class KeyDestroyed(Exception):
    """The key was destroyed (the case's retention ended), or never existed: nothing it wrapped opens."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class KeyManagerError(Exception):
    """The key manager answered something other than a key's absence (down, refused, misconfigured)."""


class KeyManager(Protocol):
    async def create(self, name: str) -> None:
        """Make the KEK `name` if it does not exist (idempotent)."""

    async def wrap(self, name: str, plaintext: bytes) -> bytes:
        """`plaintext` (a data key) encrypted under the latest version of `name`."""

    async def make(self, name: str, plaintext: bytes, *, durable: bool = True) -> bytes:
        """A new case's data key: `create(name)`, `wrap(name, plaintext)` and `escrow` of the wrapping,
        returned, in one call (the local file takes one trip to its worker thread, not three).
        `durable=False`: the key and its wrapping may be durable only once `sync` returns, for a
        caller making many in one transaction, which calls `sync` before it commits."""

    async def sync(self) -> None:
        """Every key and wrapping made so far durable (after `make(durable=False)`)."""

    async def unwrap(self, name: str, wrapped: bytes) -> bytes:
        """Raises KeyDestroyed once `name` is destroyed, or if it never existed."""

    async def destroy(self, name: str) -> None:
        """Forget `name` for ever (idempotent, irreversible)."""

    async def rotate(self, name: str) -> None:
        """A new version of `name` for new wrappings; older versions still unwrap."""

    async def rewrap(self, name: str, wrapped: bytes) -> bytes:
        """`wrapped` re-encrypted to the latest version of `name`, the plaintext never leaving the key
        manager's side."""

    async def hmac(self, name: str, data: bytes) -> bytes:
        """A keyed hash of `data` under `name` (made on first use, never rotated or destroyed): equal
        inputs give equal outputs, so identifiers can be matched without being stored."""

    async def unwrap_many(self, wrappings: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Each (name, wrapped) as `unwrap` opens it, in order, with None where `unwrap` raises
        KeyDestroyed: for a rebuild, which opens every case's data key at once."""

    async def hmac_many(self, name: str, data: Sequence[bytes]) -> list[bytes]:
        """`hmac(name, d)` for each of `data`, in order."""

    async def names(self) -> list[str]:
        """The live wrapping keys (not the HMAC keys), for rotation."""

    async def escrow(self, name: str, wrapped: bytes) -> None:
        """Keep `wrapped` (the wrapping of `name`'s data key, never the key) as `name`'s key backup,
        replacing any kept before; durable when this returns."""

    async def escrowed(self, name: str) -> bytes | None:
        """The wrapping kept by `escrow`, or None if none was; raises KeyDestroyed once `name` is
        destroyed (its wrapping went with it)."""


# --- the local key file -------------------------------------------------------------------------------

_WRAP_FORMAT = b"\x01"  # a wrapping: format byte, 4-byte key version, 12-byte nonce, AES-256-GCM output
_HMAC_PREFIX = "hmac:"  # the HMAC keys' entries in the key file, kept apart from the wrapping keys
_SMALL_CHANGE = 16 * 1024  # bytes appended to the key file that a read in the event loop may take


@dataclass
class _Loaded:
    stamp: tuple[int, int, int]  # inode, bytes read, mtime
    keys: dict[str, list[bytes]]  # name -> its versions, oldest first
    # The last bytes read: a file that still starts with them was appended to, not replaced (an inode
    # number can be reused by a later rewrite).
    last: bytes = b""


class LocalKeyFile:
    """KEKs in one file of the service's own (`$LEDER_HOME/keys/<service>.keys`), 0600.

    One JSON object a line, `{"name", "version", "key"}`: creating or rotating appends a line (fsync),
    destroying rewrites the file without the name's lines (temporary file, fsync, rename), so the
    destroyed key's bytes are in no file. Several processes of one service may share the file: writes
    hold an exclusive lock, and each operation re-reads the file when it has changed.

    The escrowed wrappings are in a file beside it (`<service>.escrow`, 0600), one `{"name", "wrapped"}`
    a line, the last line of a name the one that counts: escrowing appends (fsync), destroying a key
    rewrites both files without the name, under the one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.escrow_path = path.with_suffix(".escrow")
        self._lock_path = path.with_name(path.name + ".lock")
        self._loaded = _Loaded((0, 0, 0), {})
        self._escrow_loaded: tuple[tuple[int, int, int], dict[str, bytes]] = ((0, 0, 0), {})
        # The event loop and worker threads both read the file: one reader at a time updates what was read.
        self._reading = threading.Lock()
        # An HMAC key is never rotated or destroyed: read once, it is the same for the process's life.
        self._hmac_keys: dict[str, bytes] = {}
        # The files written to by `make(durable=False)` since the last `sync`.
        self._unsynced: set[Path] = set()
        self._syncing = threading.Lock()

    # Writes (each ends in an fsync) run in a worker thread so the event loop never waits on the disk,
    # and so does reading the file whole (after a destroy rewrote it: with a case's key a line, large).
    # Other reads do not: a stat() of a local file, and a read of the few lines appended since, cost
    # less than a trip to the thread and back, which a new case would otherwise make several times.

    async def _versions_of(self, name: str) -> list[bytes]:
        if self._small_change():
            return self._versions(name)
        return await asyncio.to_thread(self._versions, name)

    def _small_change(self) -> bool:
        """Whether the file is as last read, or only appended to by a little since."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return True
        loaded = self._loaded.stamp
        return st.st_ino == loaded[0] and 0 <= st.st_size - loaded[1] <= _SMALL_CHANGE

    async def create(self, name: str) -> None:
        await asyncio.to_thread(self._create, name)

    async def wrap(self, name: str, plaintext: bytes) -> bytes:
        return _wrap(await self._versions_of(name), name, plaintext)

    async def make(self, name: str, plaintext: bytes, *, durable: bool = True) -> bytes:
        return await asyncio.to_thread(self._make, name, plaintext, durable)

    def _make(self, name: str, plaintext: bytes, durable: bool) -> bytes:
        self._create(name, durable=durable)
        wrapped = _wrap(self._versions(name), name, plaintext)
        self._escrow(name, wrapped, durable=durable)
        return wrapped

    async def sync(self) -> None:
        if self._unsynced:
            await asyncio.to_thread(self._sync)

    def _sync(self) -> None:
        # Taken before the fsyncs: a line written after them is another caller's to sync.
        with self._syncing:
            paths, self._unsynced = self._unsynced, set()
        for path in sorted(paths):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    async def unwrap(self, name: str, wrapped: bytes) -> bytes:
        return _open(await self._versions_of(name), name, wrapped)

    async def unwrap_many(self, wrappings: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        # One trip to the worker thread for all of them (the file read once if it changed), not one
        # each: a rebuild opens thousands.
        return await asyncio.to_thread(self._unwrap_many, list(wrappings))

    def _unwrap_many(self, wrappings: list[tuple[str, bytes]]) -> list[bytes | None]:
        keys = self._current()
        opened: list[bytes | None] = []
        for name, wrapped in wrappings:
            try:
                versions = keys.get(name)
                if not versions:
                    raise KeyDestroyed(name)
                opened.append(_open(versions, name, wrapped))
            except KeyDestroyed:
                opened.append(None)
        return opened

    async def destroy(self, name: str) -> None:
        await asyncio.to_thread(self._destroy, name)

    async def rotate(self, name: str) -> None:
        await asyncio.to_thread(self._rotate, name)

    async def rewrap(self, name: str, wrapped: bytes) -> bytes:
        return await self.wrap(name, await self.unwrap(name, wrapped))

    async def hmac(self, name: str, data: bytes) -> bytes:
        return hmac_.digest(await self._hmac_key(name), data, "sha256")

    async def hmac_many(self, name: str, data: Sequence[bytes]) -> list[bytes]:
        key = await self._hmac_key(name)
        return [hmac_.digest(key, d, "sha256") for d in data]

    async def _hmac_key(self, name: str) -> bytes:
        key = self._hmac_keys.get(name)
        if key is None:
            entry = _HMAC_PREFIX + name
            await asyncio.to_thread(self._create, entry)
            key = self._hmac_keys[name] = (await self._versions_of(entry))[0]
        return key

    async def names(self) -> list[str]:
        keys = await asyncio.to_thread(self._current)
        return sorted(n for n in keys if not n.startswith(_HMAC_PREFIX))

    async def escrow(self, name: str, wrapped: bytes) -> None:
        await asyncio.to_thread(self._escrow, name, wrapped)

    async def escrowed(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._escrowed, name)

    # --- the file ---

    def _versions(self, name: str) -> list[bytes]:
        versions = self._current().get(name)
        if not versions:
            raise KeyDestroyed(name)
        return versions

    def _create(self, name: str, *, durable: bool = True) -> None:
        if name in self._current():
            return
        with self._locked():
            if name not in self._current():
                self._append(name, 1, durable=durable)

    def _rotate(self, name: str) -> None:
        with self._locked():
            versions = self._current().get(name)
            if not versions:
                raise KeyDestroyed(name)
            self._append(name, len(versions) + 1)

    def _destroy(self, name: str) -> None:
        if name not in self._current() and name not in self._escrows():
            return
        with self._locked():
            keys = self._current()
            if name in keys:
                remaining = {n: v for n, v in keys.items() if n != name}
                lines = "".join(
                    _line(n, i, key) for n, versions in remaining.items() for i, key in enumerate(versions, 1)
                )
                _replace(self.path, lines)
            # The KEK first: were this process to stop here, the escrowed wrapping left behind unwraps
            # under nothing, and the next destroy of the name removes it.
            escrows = self._escrows()
            if name in escrows:
                _replace(
                    self.escrow_path,
                    "".join(_escrow_line(n, w) for n, w in escrows.items() if n != name),
                )

    def _escrow(self, name: str, wrapped: bytes, *, durable: bool = True) -> None:
        with self._locked():
            # Under the lock a destroy takes too: a wrapping is never kept for a key already destroyed.
            if not self._current().get(name):
                raise KeyDestroyed(name)
            self._write(self.escrow_path, _escrow_line(name, wrapped), durable)

    def _escrowed(self, name: str) -> bytes | None:
        if not self._current().get(name):
            raise KeyDestroyed(name)
        return self._escrows().get(name)

    def _escrows(self) -> dict[str, bytes]:
        """name -> its last escrowed wrapping, re-read whenever the file changed (it is read only to
        recover, and when destroying)."""
        try:
            st = self.escrow_path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._escrow_loaded[0]:
            return self._escrow_loaded[1]
        escrows: dict[str, bytes] = {}
        text = self.escrow_path.read_bytes()
        for line in text[: text.rfind(b"\n") + 1].decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                escrows[entry["name"]] = base64.b64decode(entry["wrapped"])
        self._escrow_loaded = (stamp, escrows)
        return escrows

    def _append(self, name: str, version: int, *, durable: bool = True) -> None:
        """Under the lock: one new key version, durable before it wraps anything (unless not `durable`:
        then before `sync` returns, which its caller awaits before it commits what it wrapped)."""
        self._write(self.path, _line(name, version, AESGCM.generate_key(bit_length=256)), durable)

    def _write(self, path: Path, line: str, durable: bool) -> None:
        """Under the lock: `line` appended to `path`, fsynced now, or by the next `sync`."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line)
            f.flush()
            if durable:
                os.fsync(f.fileno())
            else:
                with self._syncing:
                    self._unsynced.add(path)

    def _current(self) -> dict[str, list[bytes]]:
        """The keys as the file holds them now. Appends (creates, rotations, by any process) are read
        from where the last read ended; a rewrite (a destroy: a new inode) is read whole."""
        with self._reading:
            return self._read()

    def _read(self) -> dict[str, list[bytes]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._loaded = _Loaded((0, 0, 0), {})
            return self._loaded.keys
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        loaded = self._loaded
        if stamp == loaded.stamp:
            return loaded.keys
        appended = st.st_ino == loaded.stamp[0] and st.st_size >= loaded.stamp[1]
        with self.path.open("rb") as f:
            if appended and loaded.last:
                f.seek(loaded.stamp[1] - len(loaded.last))
                appended = f.read(len(loaded.last)) == loaded.last
            keys = loaded.keys if appended else {}
            offset = loaded.stamp[1] if appended else 0
            f.seek(offset)
            tail = f.read()
        complete = tail[: tail.rfind(b"\n") + 1]  # a line still being written is read next time
        for line in complete.decode().splitlines():
            if line.strip():
                entry = json.loads(line)
                versions = keys.setdefault(entry["name"], [])
                if entry["version"] == len(versions) + 1:
                    versions.append(base64.b64decode(entry["key"]))
        last = (loaded.last + complete)[-64:] if appended else complete[-64:]
        self._loaded = _Loaded((st.st_ino, offset + len(complete), st.st_mtime_ns), keys, last)
        return keys

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path.parent.chmod(0o700)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _wrap(versions: list[bytes], name: str, plaintext: bytes) -> bytes:
    """`plaintext` wrapped under the latest of `name`'s versions."""
    nonce = os.urandom(12)
    sealed = AESGCM(versions[-1]).encrypt(nonce, plaintext, name.encode())
    return _WRAP_FORMAT + len(versions).to_bytes(4, "big") + nonce + sealed


def _open(versions: list[bytes], name: str, wrapped: bytes) -> bytes:
    """A local wrapping opened under `name`'s versions."""
    if wrapped[:1] != _WRAP_FORMAT or len(wrapped) < 17:
        raise KeyManagerError(f"not a wrapping of the local key file: {name}")
    version = int.from_bytes(wrapped[1:5], "big")
    if not 1 <= version <= len(versions):
        raise KeyDestroyed(name)
    try:
        return AESGCM(versions[version - 1]).decrypt(wrapped[5:17], wrapped[17:], name.encode())
    except InvalidTag as wrong:
        raise KeyManagerError(f"the wrapping does not open under {name}") from wrong


def _line(name: str, version: int, key: bytes) -> str:
    return json.dumps({"name": name, "version": version, "key": base64.b64encode(key).decode()}) + "\n"


def _escrow_line(name: str, wrapped: bytes) -> str:
    return json.dumps({"name": name, "wrapped": base64.b64encode(wrapped).decode()}) + "\n"


def _replace(path: Path, text: str) -> None:
    """`path` holds `text` and nothing else, durably: a temporary file, fsync, rename, the folder fsync."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Vault's transit engine ---------------------------------------------------------------------------

_VAULT_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class VaultTransit:
    """KEKs as transit keys `leder-<service>-<key_id>` (aes256-gcm96); HMAC keys as `leder-hmac-...`.

    The API, as Vault documents it: POST keys/<n> creates, encrypt/<n> and decrypt/<n> take and give
    base64 plaintext, keys/<n>/rotate, rewrap/<n>, hmac/<n>; deleting takes keys/<n>/config
    deletion_allowed=true then DELETE keys/<n>. A missing key is a 400 "encryption key not found" on
    decrypt (or a 404 on reads).

    The escrowed wrappings are secrets of a KV version 2 mount (`kv_mount`), at
    `leder/data-keys/<transit key name>` ({"wrapped": the transit ciphertext}): written by POST
    <kv>/data/<path>, read by GET (404 when there is none), and on destroying the key deleted with every
    version and its metadata (DELETE <kv>/metadata/<path>: a DELETE of <kv>/data/<path> would only hide
    the latest version, which can be undeleted)."""

    def __init__(
        self,
        address: str,
        token: str,
        mount: str = "transit",
        *,
        kv_mount: str = "secret",
        timeout: float = 10.0,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"{address.rstrip('/')}/v1/",
            headers={"X-Vault-Token": token},
            timeout=timeout,
        )
        self._mount = mount.strip("/")
        self._kv = kv_mount.strip("/")
        self._hmac_ready: set[str] = set()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(self, name: str) -> None:
        await self._call("POST", f"keys/{_vault_key(name)}", {"type": "aes256-gcm96"}, name=name)

    async def wrap(self, name: str, plaintext: bytes) -> bytes:
        # Encrypting under a missing key would create it (Vault's upsert): a destroyed case's key must
        # stay destroyed, so the key must exist first.
        await self._exists(name)
        data = await self._call(
            "POST", f"encrypt/{_vault_key(name)}", {"plaintext": _b64(plaintext)}, name=name
        )
        return str(data["ciphertext"]).encode()

    async def make(self, name: str, plaintext: bytes, *, durable: bool = True) -> bytes:
        await self.create(name)
        wrapped = await self.wrap(name, plaintext)
        await self.escrow(name, wrapped)
        return wrapped

    async def sync(self) -> None:
        pass  # Vault has stored each key and secret before it answers

    async def unwrap(self, name: str, wrapped: bytes) -> bytes:
        data = await self._call(
            "POST", f"decrypt/{_vault_key(name)}", {"ciphertext": wrapped.decode()}, name=name
        )
        return base64.b64decode(data["plaintext"])

    async def destroy(self, name: str) -> None:
        key = _vault_key(name)
        try:
            await self._call("POST", f"keys/{key}/config", {"deletion_allowed": True}, name=name)
        except KeyDestroyed:
            pass  # destroyed before; its escrowed wrapping may still be there if that destroy stopped
        else:
            await self._call("DELETE", f"keys/{key}", None, name=name)
        # The KEK first: an escrowed wrapping left behind by a failure here unwraps under nothing.
        with contextlib.suppress(KeyDestroyed):
            await self._request("DELETE", f"{self._kv}/metadata/{_escrow_path(name)}", None, name=name)

    async def rotate(self, name: str) -> None:
        await self._exists(name)
        await self._call("POST", f"keys/{_vault_key(name)}/rotate", {}, name=name)

    async def rewrap(self, name: str, wrapped: bytes) -> bytes:
        data = await self._call(
            "POST", f"rewrap/{_vault_key(name)}", {"ciphertext": wrapped.decode()}, name=name
        )
        return str(data["ciphertext"]).encode()

    async def hmac(self, name: str, data: bytes) -> bytes:
        key = "leder-hmac-" + _VAULT_NAME.sub("-", name.replace("/", "-"))
        if key not in self._hmac_ready:
            await self._call("POST", f"keys/{key}", {"type": "aes256-gcm96"}, name=name)
            self._hmac_ready.add(key)
        # Version 1 always: a rotated HMAC key would stop matching what the index already holds.
        answer = await self._call(
            "POST", f"hmac/{key}/sha2-256", {"input": _b64(data), "key_version": 1}, name=name
        )
        return base64.b64decode(str(answer["hmac"]).rsplit(":", 1)[-1])

    async def unwrap_many(self, wrappings: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        # Transit decrypts a batch under one key only, and each case has its own: one request each,
        # a few at a time.
        async def opened(name: str, wrapped: bytes) -> bytes | None:
            try:
                return await self.unwrap(name, wrapped)
            except KeyDestroyed:
                return None

        return await _bounded([partial(opened, name, wrapped) for name, wrapped in wrappings])

    async def hmac_many(self, name: str, data: Sequence[bytes]) -> list[bytes]:
        return await _bounded([partial(self.hmac, name, d) for d in data])

    async def names(self) -> list[str]:
        try:
            data = await self._call("LIST", "keys", None, name="")
        except KeyDestroyed:  # Vault answers 404 when there are no keys at all
            return []
        found = []
        for key in data.get("keys", []):
            if key.startswith("leder-") and not key.startswith("leder-hmac-"):
                service, _, key_id = key.removeprefix("leder-").partition("-")
                found.append(f"{service}/{key_id}")
        return sorted(found)

    async def escrow(self, name: str, wrapped: bytes) -> None:
        # No check that the KEK still exists (a round trip per new case): a wrapping written just after
        # its KEK was destroyed unwraps under nothing, and `escrowed` answers KeyDestroyed for it.
        try:
            await self._request(
                "POST",
                f"{self._kv}/data/{_escrow_path(name)}",
                {"data": {"wrapped": wrapped.decode()}},
                name=name,
            )
        except KeyDestroyed as missing:  # a 404 on a write: no KV version 2 mount there
            raise KeyManagerError(f"Vault has no KV version 2 mount {self._kv!r} to escrow into") from missing

    async def escrowed(self, name: str) -> bytes | None:
        await self._exists(name)
        try:
            data = await self._request("GET", f"{self._kv}/data/{_escrow_path(name)}", None, name=name)
        except KeyDestroyed:
            return None
        secret = data.get("data") or {}
        return str(secret["wrapped"]).encode() if "wrapped" in secret else None

    async def _exists(self, name: str) -> None:
        await self._call("GET", f"keys/{_vault_key(name)}", None, name=name)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, name: str
    ) -> dict[str, Any]:
        """A request to the transit mount."""
        return await self._request(method, f"{self._mount}/{path}", body, name=name)

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, name: str
    ) -> dict[str, Any]:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.HTTPError as failed:
            raise KeyManagerError(f"Vault did not answer: {failed!r}") from failed
        if response.status_code == 204:
            return {}
        if response.status_code == 404 or (response.status_code == 400 and _missing_key(response)):
            raise KeyDestroyed(name)
        if response.status_code >= 400:
            raise KeyManagerError(
                f"Vault answered {response.status_code} to {method} {path}: {response.text}"
            )
        data: dict[str, Any] = response.json().get("data") or {}
        return data


async def _bounded(calls: Sequence[Callable[[], Awaitable[T]]], limit: int = 32) -> list[T]:
    """Every call's answer, in order, at most `limit` of them waiting on Vault at once."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _missing_key(response: httpx.Response) -> bool:
    with contextlib.suppress(ValueError):
        errors = [str(e) for e in response.json().get("errors", [])]
        return any("not found" in e or "no existing key" in e for e in errors)
    return False


def _vault_key(name: str) -> str:
    """ "notification/<key_id>" -> "leder-notification-<key_id>" (a transit key name has no slash)."""
    service, _, key_id = name.partition("/")
    return f"leder-{service}-{_VAULT_NAME.sub('-', key_id)}"


def _escrow_path(name: str) -> str:
    return f"leder/data-keys/{_vault_key(name)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- from the environment -----------------------------------------------------------------------------


def leder_home() -> Path:
    return Path(os.environ.get("LEDER_HOME", ".leder")).resolve()


def key_manager_from_env(service: str) -> KeyManager:
    """LEDER_KEY_MANAGER=local (the default: LEDER_KEY_DIR, else $LEDER_HOME/keys) or vault
    (LEDER_VAULT_ADDR, LEDER_VAULT_TOKEN or LEDER_VAULT_TOKEN_FILE, LEDER_VAULT_TRANSIT_MOUNT, and
    LEDER_VAULT_KV_MOUNT, the KV version 2 mount holding the data keys' backup, "secret" by default)."""
    kind = os.environ.get("LEDER_KEY_MANAGER", "local")
    if kind == "local":
        folder = Path(os.environ.get("LEDER_KEY_DIR") or leder_home() / "keys")
        return LocalKeyFile(folder / f"{service}.keys")
    if kind == "vault":
        address = os.environ.get("LEDER_VAULT_ADDR")
        token = os.environ.get("LEDER_VAULT_TOKEN")
        if not token and os.environ.get("LEDER_VAULT_TOKEN_FILE"):
            token = Path(os.environ["LEDER_VAULT_TOKEN_FILE"]).read_text().strip()
        if not address or not token:
            raise RuntimeError("LEDER_KEY_MANAGER=vault needs LEDER_VAULT_ADDR and LEDER_VAULT_TOKEN(_FILE)")
        return VaultTransit(
            address,
            token,
            os.environ.get("LEDER_VAULT_TRANSIT_MOUNT", "transit"),
            kv_mount=os.environ.get("LEDER_VAULT_KV_MOUNT", "secret"),
        )
    raise RuntimeError(f"LEDER_KEY_MANAGER must be local or vault, not {kind!r}")
