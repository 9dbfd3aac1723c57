"""Issuing bearer tokens: the private keys that sign them and the public keys (a JWKS) the services are
given to check them. Only an issuer holds a signing key: the web application (for the person who signed
in), `leder token` under `leder up`, or in production the ICB's identity provider; no service does.

Two keys, two purposes. The people key signs tokens for people and partner systems (issuer
LEDER_TOKEN_ISSUER); the system key signs only the services' own `system` role (issuer SYSTEM_ISSUER),
which `leder audit reconcile` uses to read the other services' event feeds. Neither can sign the other's
tokens: a service refuses a `system` token signed by the people key and any other role signed by the
system key (infra.auth)."""

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from infra.ed25519 import b64url, key_id, raw_public_key

DEFAULT_ISSUER = "leder"
DEFAULT_AUDIENCE = "leder-services"
# The issuer of the services' own `system` tokens: never a person's issuer, so never confused with one.
SYSTEM_ISSUER = "leder-system"
SYSTEM_TOKEN_LIFETIME = timedelta(minutes=5)
PERSON_TOKEN_LIFETIME = timedelta(hours=8)

# What `leder up` keeps in LEDER_HOME.
TOKEN_SIGNING_KEY = "token-signing-key.pem"
TOKEN_JWKS = "token-jwks.json"
SYSTEM_TOKEN_KEY = "system-token-key.pem"
SYSTEM_TOKEN_PUBLIC_KEY = "system-token-public-key.pem"


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    x = b64url(raw_public_key(public))
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id(public), "alg": "EdDSA", "use": "sig"}


def jwks(*keys: Ed25519PublicKey) -> dict[str, Any]:
    """The JWKS document the services are given: every key listed (old and new during a rotation)."""
    return {"keys": [public_jwk(key) for key in keys]}


@dataclass(frozen=True)
class TokenIssuer:
    """Holds a signing key and mints tokens with it, for people and partner systems (or, made with
    `system=True` over the system key, the services' own `system` role and nothing else)."""

    key: Ed25519PrivateKey
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    system: bool = False

    @property
    def kid(self) -> str:
        return key_id(self.key.public_key())

    @classmethod
    def from_file(
        cls, path: Path | str, issuer: str = DEFAULT_ISSUER, audience: str = DEFAULT_AUDIENCE
    ) -> "TokenIssuer":
        return cls(read_private_key(Path(path)), issuer, audience)

    @classmethod
    def system_from_file(cls, path: Path | str, audience: str = DEFAULT_AUDIENCE) -> "TokenIssuer":
        return cls(read_private_key(Path(path)), SYSTEM_ISSUER, audience, system=True)

    def mint(
        self, sub: str, role: str, organisation: str | None = None, ttl: timedelta = PERSON_TOKEN_LIFETIME
    ) -> str:
        from infra.auth import ORGANISATION_REQUIRED, ROLES, SYSTEM_ROLE

        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(sorted(ROLES))}")
        if (role == SYSTEM_ROLE) != self.system:
            raise ValueError(
                "the system role is signed by the system key alone, and the system key signs nothing else"
            )
        if role in ORGANISATION_REQUIRED and not (organisation and organisation.strip()):
            raise ValueError(f"a {role} token names its organisation: give one")
        now = datetime.now(UTC)
        claims: dict[str, object] = {
            "sub": sub,
            "role": role,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
        }
        if organisation:
            claims["organisation"] = organisation
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})


def read_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def read_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _private_key_file(path: Path) -> Ed25519PrivateKey:
    """The key in `path`, made once (0600, only its owner reads it) if there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # made meanwhile by another command
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(private_pem(Ed25519PrivateKey.generate()))
    path.chmod(0o600)
    return read_private_key(path)


def token_key_files(folder: Path) -> tuple[Path, Path]:
    """`leder up`'s people key: the private key (0600) that only the web application and `leder token`
    are given, and the JWKS (readable by all) that every service verifies with."""
    private, document = folder / TOKEN_SIGNING_KEY, folder / TOKEN_JWKS
    key = _private_key_file(private)
    document.write_text(json.dumps(jwks(key.public_key()), indent=1) + "\n")
    return private, document


def system_key_files(folder: Path) -> tuple[Path, Path]:
    """`leder up`'s system key: the private key (0600) for `leder audit reconcile`, and the public key
    every service checks a `system` token with."""
    private, public = folder / SYSTEM_TOKEN_KEY, folder / SYSTEM_TOKEN_PUBLIC_KEY
    key = _private_key_file(private)
    public.write_bytes(public_pem(key.public_key()))
    return private, public
