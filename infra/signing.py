"""Signed events: each service signs every record its relay publishes; every consumer of a service's
topic checks the signature against that service's pinned public keys before it reads the record.

Without this, anyone who can write to the broker is any service (a forged `ReviewerAllocated` names its
own reviewer). With it, the broker can drop or delay records but not forge or move them.

- The private key: Ed25519, one PEM file per service, `$LEDER_EVENT_SIGNING_KEY_DIR/<service>.pem`
  (production mounts only the service's own file there). Never in a database.
- The public keys every consumer pins: a JWKS-style file, `LEDER_EVENT_PUBLIC_KEYS_FILE`, each key an
  OKP/Ed25519 JWK with `leder_service` naming the service it speaks for. A key's id is its RFC 7638 JWK
  thumbprint, so a new key is a new id: rotation adds the new key to the file (old ones stay, for the
  records they signed) before the service signs with it; a key taken out of the file is refused.
- What is signed: the record's value bytes exactly as published, with the topic's name before them
  (`signed_message`), so a record cannot be replayed onto another topic. The signature and key id
  travel in the record's headers (`leder_signature`, base64url; `leder_key_id`).
"""

import base64
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from events.topics import SERVICES, service_topic
from infra.ed25519 import b64url, key_id, raw_public_key
from infra.inbox import Delivery, Unprocessable, read_envelope

KEY_DIR_ENV = "LEDER_EVENT_SIGNING_KEY_DIR"
PUBLIC_KEYS_ENV = "LEDER_EVENT_PUBLIC_KEYS_FILE"
SIGNATURE_HEADER = "leder_signature"
KEY_ID_HEADER = "leder_key_id"
PUBLIC_KEYS_NAME = "public-keys.json"
_DOMAIN = b"leder-event-v1\n"


class SigningKeyMissing(RuntimeError):
    """The service has no key to sign with, or no pinned keys to verify with: it must not start."""


class BadKeySet(ValueError):
    """The pinned public keys file is not what it should be."""


def signed_message(topic: str, value: bytes) -> bytes:
    """What a signature covers: a fixed label, the topic's name, and the record's value bytes. (A topic
    name cannot hold a newline, so the parts cannot be confused.)"""
    return _DOMAIN + topic.encode() + b"\n" + value


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk(service: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    """The key as the pinned file holds it."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(raw_public_key(public_key)),
        "kid": key_id(public_key),
        "use": "sig",
        "leder_service": service,
    }


@dataclass(frozen=True)
class Signer:
    """A service's signing key."""

    service: str
    private_key: Ed25519PrivateKey
    key_id: str = field(init=False)  # computed once: every record published names it

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(self.private_key.public_key()))

    def sign(self, topic: str, value: bytes) -> bytes:
        return self.private_key.sign(signed_message(topic, value))

    def headers(self, topic: str, value: bytes) -> list[tuple[str, bytes]]:
        """The record headers that carry the signature of `value` on `topic`."""
        return [
            (SIGNATURE_HEADER, b64url(self.sign(topic, value)).encode()),
            (KEY_ID_HEADER, self.key_id.encode()),
        ]


def write_private_key(path: Path) -> Ed25519PrivateKey:
    """A new key in a new PEM file only its owner reads (0600, whatever the umask); never overwrites."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyMissing(f"{path} is not an Ed25519 private key")
    return key


def load_signer(service: str, key_dir: Path | None = None) -> Signer:
    """The service's signing key, from `key_dir` (default: LEDER_EVENT_SIGNING_KEY_DIR)."""
    if key_dir is None:
        configured = os.environ.get(KEY_DIR_ENV)
        if not configured:
            raise SigningKeyMissing(f"{KEY_DIR_ENV} is not set: the {service} service cannot sign its events")
        key_dir = Path(configured)
    path = key_dir / f"{service}.pem"
    if not path.is_file():
        raise SigningKeyMissing(f"no event signing key for the {service} service at {path}")
    return Signer(service, read_private_key(path))


@dataclass(frozen=True)
class PinnedKey:
    service: str
    public_key: Ed25519PublicKey
    # The same key for libsodium, which checks a signature in half the time OpenSSL takes.
    verify_key: VerifyKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "verify_key", VerifyKey(raw_public_key(self.public_key)))


def parse_key_set(document: Any) -> dict[str, PinnedKey]:
    """Key id -> pinned key, from a JWKS-style document; BadKeySet names the first thing wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise BadKeySet('the pinned public keys are not a {"keys": [...]} document')
    pinned: dict[str, PinnedKey] = {}
    for n, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            raise BadKeySet(f"key {n} is not an object")
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
            raise BadKeySet(f"key {n} is not an Ed25519 (OKP) key")
        if entry.get("use", "sig") != "sig":
            raise BadKeySet(f"key {n} is not a signing key")
        service = entry.get("leder_service")
        if service not in SERVICES:
            raise BadKeySet(f"key {n} names no known service (leder_service: {service!r})")
        try:
            public_key = Ed25519PublicKey.from_public_bytes(_unb64url(str(entry.get("x", ""))))
        except ValueError as exc:
            raise BadKeySet(f"key {n}'s x is not an Ed25519 public key") from exc
        kid = key_id(public_key)
        # The id is the key's fingerprint: one that is not cannot be trusted to name the key.
        if entry.get("kid") != kid:
            raise BadKeySet(f"key {n}'s kid is not its thumbprint ({kid})")
        pinned[kid] = PinnedKey(service, public_key)
    return pinned


def read_key_set(path: Path) -> dict[str, PinnedKey]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadKeySet(f"cannot read the pinned public keys at {path}: {exc}") from exc
    return parse_key_set(document)


def write_key_set(path: Path, keys: Iterable[Mapping[str, str]]) -> None:
    """Write the pinned file (readable by all: it holds public keys only), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"keys": list(keys)}, indent=2) + "\n")
    partial.replace(path)


def add_to_key_set(path: Path, service: str, public_key: Ed25519PublicKey) -> dict[str, str]:
    """Pin another key (a rotation keeps every older key, to verify what it signed): idempotent."""
    existing: list[dict[str, str]] = json.loads(path.read_text())["keys"] if path.exists() else []
    entry = jwk(service, public_key)
    if all(k.get("kid") != entry["kid"] for k in existing):
        existing.append(entry)
    parse_key_set({"keys": existing})  # never write a file verifiers would refuse
    write_key_set(path, existing)
    return entry


def generate_key_set(folder: Path, services: Iterable[str] = SERVICES) -> tuple[Path, Path]:
    """Every service's signing key (`<service>.pem`, made once) and the pinned file of their public keys
    (`public-keys.json`, keeping keys pinned before): `leder up`'s, and the tests'."""
    public_keys = folder / PUBLIC_KEYS_NAME
    for service in services:
        path = folder / f"{service}.pem"
        key = read_private_key(path) if path.exists() else write_private_key(path)
        add_to_key_set(public_keys, service, key.public_key())
    return folder, public_keys


class PinnedKeys:
    """The pinned public keys, from LEDER_EVENT_PUBLIC_KEYS_FILE; read again when a record names a key
    not pinned and the file has changed since, so pinning a new key needs no restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.keys: dict[str, PinnedKey] = {}
        self._read()

    @classmethod
    def from_env(cls) -> "PinnedKeys":
        configured = os.environ.get(PUBLIC_KEYS_ENV)
        if not configured:
            raise SigningKeyMissing(f"{PUBLIC_KEYS_ENV} is not set: events cannot be verified")
        return cls(Path(configured))

    def _read(self) -> None:
        stat = self.path.stat()
        self.keys = read_key_set(self.path)
        self._stamp = (stat.st_mtime_ns, stat.st_size)

    def get(self, kid: str) -> PinnedKey | None:
        if kid not in self.keys:
            try:
                stat = self.path.stat()
                if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                    self._read()
            except (OSError, BadKeySet):
                pass  # a file half-written or broken: keep what was pinned, refuse the record
        return self.keys.get(kid)


def _refused(kind: str, message: str) -> Unprocessable:
    return Unprocessable([{"field": SIGNATURE_HEADER, "type": kind, "message": message}])


class EventVerifier:
    """The inbox's verify hook for the services' topics (infra.inbox.InboxConsumer(verify=...))."""

    def __init__(self, pinned: PinnedKeys, topic_prefix: str = "") -> None:
        self.pinned = pinned
        self.owners = {service_topic(service, topic_prefix): service for service in SERVICES}

    def owner(self, topic: str) -> str | None:
        """The service whose events `topic` carries; None for any other topic."""
        return self.owners.get(topic)

    def __call__(self, raw: bytes, delivery: Delivery) -> None:
        self.check(delivery.topic, raw, delivery.headers)

    def check(self, topic: str, value: bytes, headers: Mapping[str, str]) -> None:
        """Unprocessable, with the reason, unless `value` is signed on `topic` by a pinned key of the
        service that owns `topic` and the envelope names that service as its source."""
        owner = self.owner(topic)
        if owner is None:
            raise _refused("not_a_service_topic", f"{topic} is no service's topic: nothing on it is trusted")
        signature, kid = headers.get(SIGNATURE_HEADER), headers.get(KEY_ID_HEADER)
        if not signature or not kid:
            missing = f"the record is not signed (no {SIGNATURE_HEADER} or {KEY_ID_HEADER} header)"
            raise _refused("signature_missing", missing)
        pinned = self.pinned.get(kid)
        if pinned is None:
            raise _refused("unknown_signing_key", f"key id {kid} is not among the pinned public keys")
        if pinned.service != owner:
            raise _refused(
                "signing_key_of_another_service",
                f"signed with a key of the {pinned.service} service on the {owner} service's topic",
            )
        try:
            pinned.verify_key.verify(signed_message(topic, value), _unb64url(signature))
        except (BadSignatureError, ValueError):
            raise _refused("bad_signature", f"the signature does not verify with key {kid}") from None
        source = _source(value)
        if source is not None and source != owner:
            raise _refused(
                "source_not_its_topic", f"an event whose source is {source!r} on the {owner} service's topic"
            )


def _source(value: bytes) -> str | None:
    """The envelope's source, if it names one (a record that is no envelope is for the parser to refuse).
    Read as the inbox reads the record next (read_envelope keeps it, so it is parsed once); only a
    record that is no valid envelope is read as plain JSON."""
    try:
        return read_envelope(value).source
    except ValueError:  # pydantic's ValidationError among them
        pass
    try:
        document = json.loads(value)
    except ValueError:
        return None
    source = document.get("source") if isinstance(document, dict) else None
    return source if isinstance(source, str) else None


def verifier_from_env(topic_prefix: str = "") -> EventVerifier:
    return EventVerifier(PinnedKeys.from_env(), topic_prefix)
