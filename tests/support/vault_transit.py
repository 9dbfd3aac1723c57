"""A stand-in for HashiCorp Vault's transit secrets engine, for testing `infra.keys.VaultTransit`
against Vault's documented HTTP API (no Vault binary can run here): the endpoints the provider uses,
with Vault's request and response shapes, its `vault:v<N>:<base64>` ciphertexts and its errors
(`{"errors": [...]}`: 403 for a wrong token, 400 for a missing key or bad input, 404 on reads of what
does not exist, 204 where Vault answers no content).

    POST   /v1/<mount>/keys/<name>                  create (idempotent)
    GET    /v1/<mount>/keys/<name>                  read (404 if none)
    LIST   /v1/<mount>/keys  (or GET ?list=true)    names (404 if none)
    POST   /v1/<mount>/keys/<name>/config           {"deletion_allowed": true}
    DELETE /v1/<mount>/keys/<name>                  only once deletion is allowed
    POST   /v1/<mount>/keys/<name>/rotate
    POST   /v1/<mount>/encrypt/<name>               {"plaintext": b64} (creates a missing key: upsert)
    POST   /v1/<mount>/decrypt/<name>               {"ciphertext"} -> {"plaintext": b64}
    POST   /v1/<mount>/rewrap/<name>                {"ciphertext"} -> the latest version's
    POST   /v1/<mount>/hmac/<name>[/<algorithm>]    {"input": b64, "key_version"?} -> {"hmac": "vault:v1:.."}

and a KV version 2 mount (`kv_mount`, "secret" as Vault's dev server mounts it), as the key backup uses it:

    POST|PUT /v1/<kv>/data/<path>                   {"data": {...}} -> a new version's metadata
    GET      /v1/<kv>/data/<path>                   {"data": {"data", "metadata"}} (404 if none, or deleted)
    DELETE   /v1/<kv>/data/<path>                   soft delete of the latest version (undeletable; 204)
    DELETE   /v1/<kv>/metadata/<path>               every version and the metadata, for good (204)
"""

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from tests.support.oidc_provider import serve


@dataclass
class TransitKey:
    versions: list[bytes] = field(default_factory=lambda: [AESGCM.generate_key(bit_length=256)])
    created: list[int] = field(default_factory=lambda: [int(time.time())])
    deletion_allowed: bool = False

    def info(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "aes256-gcm96",
            "deletion_allowed": self.deletion_allowed,
            "derived": False,
            "exportable": False,
            "keys": {str(i): t for i, t in enumerate(self.created, 1)},
            "latest_version": len(self.versions),
            "min_decryption_version": 1,
            "min_encryption_version": 0,
            "supports_encryption": True,
            "supports_decryption": True,
        }


@dataclass
class Secret:
    """A KV version 2 secret: its versions' data, oldest first (None: that version soft-deleted)."""

    versions: list[dict[str, Any] | None] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "created_time": self.created[-1],
            "custom_metadata": None,
            "deletion_time": "" if self.versions[-1] is not None else self.created[-1],
            "destroyed": False,
            "version": len(self.versions),
        }


@dataclass
class FakeVault:
    token: str
    mount: str = "transit"
    keys: dict[str, TransitKey] = field(default_factory=dict)
    kv_mount: str = "secret"
    secrets: dict[str, Secret] = field(default_factory=dict)
    # Every request's method and path, for tests that check what reached Vault.
    requests: list[tuple[str, str]] = field(default_factory=list)


def _errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status)


def _data(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {"request_id": os.urandom(8).hex(), "lease_id": "", "renewable": False, "lease_duration": 0,
         "data": data, "wrap_info": None, "warnings": None, "auth": None}
    )  # fmt: skip


def _encrypt(key: TransitKey, plaintext: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key.versions[-1]).encrypt(nonce, plaintext, None)
    return f"vault:v{len(key.versions)}:" + base64.b64encode(nonce + sealed).decode()


def _decrypt(key: TransitKey, ciphertext: str) -> bytes:
    """Raises ValueError as Vault's 400 "invalid ciphertext"."""
    prefix, _, rest = ciphertext.partition(":")
    version, _, body = rest.partition(":")
    if prefix != "vault" or not version.startswith("v") or not version[1:].isdigit():
        raise ValueError("invalid ciphertext: no prefix")
    number = int(version[1:])
    if not 1 <= number <= len(key.versions):
        raise ValueError("invalid key version")
    try:
        raw = base64.b64decode(body, validate=True)
        return AESGCM(key.versions[number - 1]).decrypt(raw[:12], raw[12:], None)
    except (binascii.Error, InvalidTag) as failed:
        raise ValueError("cipher: message authentication failed") from failed


def vault_app(vault: FakeVault) -> FastAPI:
    app = FastAPI()
    base = f"/v1/{vault.mount}"

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Response:
        vault.requests.append((request.method, request.url.path))
        if request.headers.get("X-Vault-Token") != vault.token:
            return _errors(403, "permission denied")
        response: Response = await call_next(request)
        return response

    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw:
            return {}
        parsed: dict[str, Any] = await request.json()
        return parsed

    @app.api_route(base + "/keys", methods=["LIST", "GET"])
    async def list_keys(request: Request) -> Response:
        if request.method == "GET" and request.query_params.get("list") != "true":
            return _errors(405, "unsupported operation")
        if not vault.keys:
            return _errors(404)
        return _data({"keys": sorted(vault.keys)})

    @app.post(base + "/keys/{name}")
    async def create(name: str, request: Request) -> Response:
        kind = (await body(request)).get("type", "aes256-gcm96")
        if kind != "aes256-gcm96":
            return _errors(400, f"unknown key type {kind}")
        key = vault.keys.setdefault(name, TransitKey())
        return _data(key.info(name))

    @app.get(base + "/keys/{name}")
    async def read(name: str) -> Response:
        key = vault.keys.get(name)
        return _errors(404) if key is None else _data(key.info(name))

    @app.post(base + "/keys/{name}/config")
    async def config(name: str, request: Request) -> Response:
        key = vault.keys.get(name)
        if key is None:
            return _errors(400, f"no existing key named {name} could be found")
        settings = await body(request)
        if "deletion_allowed" in settings:
            key.deletion_allowed = bool(settings["deletion_allowed"])
        return _data(key.info(name))

    @app.delete(base + "/keys/{name}")
    async def delete(name: str) -> Response:
        key = vault.keys.get(name)
        if key is not None and not key.deletion_allowed:
            return _errors(400, "deletion is not allowed for this key")
        vault.keys.pop(name, None)
        return Response(status_code=204)

    @app.post(base + "/keys/{name}/rotate")
    async def rotate(name: str) -> Response:
        key = vault.keys.get(name)
        if key is None:
            return _errors(400, "key not found")
        key.versions.append(AESGCM.generate_key(bit_length=256))
        key.created.append(int(time.time()))
        return _data(key.info(name))

    @app.post(base + "/encrypt/{name}")
    async def encrypt(name: str, request: Request) -> Response:
        try:
            plaintext = base64.b64decode((await body(request))["plaintext"], validate=True)
        except (KeyError, binascii.Error):
            return _errors(400, "failed to base64-decode plaintext")
        key = vault.keys.setdefault(name, TransitKey())  # Vault's upsert
        return _data({"ciphertext": _encrypt(key, plaintext), "key_version": len(key.versions)})

    async def opened(name: str, request: Request) -> tuple[TransitKey, bytes] | Response:
        """The key and the ciphertext's plaintext, or the error Vault answers (decrypt and rewrap)."""
        key = vault.keys.get(name)
        if key is None:
            return _errors(400, "encryption key not found")
        try:
            return key, _decrypt(key, str((await body(request)).get("ciphertext", "")))
        except ValueError as invalid:
            return _errors(400, str(invalid))

    @app.post(base + "/decrypt/{name}")
    async def decrypt(name: str, request: Request) -> Response:
        found = await opened(name, request)
        if isinstance(found, Response):
            return found
        return _data({"plaintext": base64.b64encode(found[1]).decode()})

    @app.post(base + "/rewrap/{name}")
    async def rewrap(name: str, request: Request) -> Response:
        found = await opened(name, request)
        if isinstance(found, Response):
            return found
        key, plaintext = found
        return _data({"ciphertext": _encrypt(key, plaintext), "key_version": len(key.versions)})

    @app.post(base + "/hmac/{name}")
    @app.post(base + "/hmac/{name}/{algorithm}")
    async def keyed_hash(name: str, request: Request, algorithm: str = "sha2-256") -> Response:
        key = vault.keys.get(name)
        if key is None:
            return _errors(400, "encryption key not found")
        digests = {"sha2-256": hashlib.sha256, "sha2-512": hashlib.sha512}
        if algorithm not in digests:
            return _errors(400, f"unsupported algorithm {algorithm}")
        request_body = await body(request)
        version = int(request_body.get("key_version") or len(key.versions))
        if not 1 <= version <= len(key.versions):
            return _errors(400, "invalid key version")
        try:
            data = base64.b64decode(request_body["input"], validate=True)
        except (KeyError, binascii.Error):
            return _errors(400, "unable to decode input as base64")
        digest = hmac.new(key.versions[version - 1], data, digests[algorithm]).digest()
        return _data({"hmac": f"vault:v{version}:" + base64.b64encode(digest).decode()})

    kv = f"/v1/{vault.kv_mount}"

    @app.api_route(kv + "/data/{path:path}", methods=["POST", "PUT"])
    async def write_secret(path: str, request: Request) -> Response:
        data = (await body(request)).get("data")
        if not isinstance(data, dict):
            return _errors(400, "no data provided")
        secret = vault.secrets.setdefault(path, Secret())
        secret.versions.append(data)
        secret.created.append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return _data(secret.metadata())

    @app.get(kv + "/data/{path:path}")
    async def read_secret(path: str) -> Response:
        secret = vault.secrets.get(path)
        if secret is None or secret.versions[-1] is None:
            return _errors(404)
        return _data({"data": secret.versions[-1], "metadata": secret.metadata()})

    @app.delete(kv + "/data/{path:path}")
    async def delete_latest(path: str) -> Response:
        secret = vault.secrets.get(path)
        if secret is not None:
            secret.versions[-1] = None
        return Response(status_code=204)

    @app.delete(kv + "/metadata/{path:path}")
    async def delete_secret(path: str) -> Response:
        vault.secrets.pop(path, None)
        return Response(status_code=204)

    return app


@contextmanager
def running_vault(token: str = "test-root-token", mount: str = "transit") -> Iterator[tuple[FakeVault, str]]:
    """The stand-in served on a free port: (its state, its address)."""
    vault = FakeVault(token, mount)
    with serve(vault_app(vault)) as address:
        yield vault, address
