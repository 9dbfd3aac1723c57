"""The tests' token issuer: one people key and one system key for the whole session, made in memory
(tests/conftest.py writes their public halves where the services look: LEDER_TOKEN_JWKS_FILE and
LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE). A test mints as the issuer would; a stack a test starts with
`leder up`'s own keys is reached with `issuer_of(its folder)`."""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.auth import SYSTEM_ROLE, TokenTrust
from infra.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    PERSON_TOKEN_LIFETIME,
    SYSTEM_ISSUER,
    SYSTEM_TOKEN_KEY,
    SYSTEM_TOKEN_PUBLIC_KEY,
    TOKEN_JWKS,
    TOKEN_SIGNING_KEY,
    TokenIssuer,
    jwks,
    key_id,
    private_pem,
    public_pem,
)

PEOPLE_KEY = Ed25519PrivateKey.generate()
SYSTEM_KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(PEOPLE_KEY, DEFAULT_ISSUER, DEFAULT_AUDIENCE)
SYSTEM = TokenIssuer(SYSTEM_KEY, SYSTEM_ISSUER, DEFAULT_AUDIENCE, system=True)


def token(
    sub: str, role: str, organisation: str | None = None, ttl: timedelta = PERSON_TOKEN_LIFETIME
) -> str:
    """A token as the issuer would sign it (the `system` role as the system key would)."""
    if role == SYSTEM_ROLE:
        return SYSTEM.mint(sub, role, ttl=min(ttl, timedelta(minutes=5)))
    return ISSUER.mint(sub, role, organisation, ttl=ttl)


def signed(claims: dict[str, object], key: Ed25519PrivateKey = PEOPLE_KEY) -> str:
    """Any claims at all (of any type, or missing), signed by the session's people key with its key id:
    what a token's claims alone must get refused for."""
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": key_id(key.public_key())})


def bearer(sub: str, role: str, organisation: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, role, organisation)}"}


def write_key_files(folder: Path) -> dict[str, str]:
    """The session's keys in files as `leder up` lays them out, and the environment naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        TOKEN_SIGNING_KEY: private_pem(PEOPLE_KEY),
        TOKEN_JWKS: (json.dumps(jwks(PEOPLE_KEY.public_key())) + "\n").encode(),
        SYSTEM_TOKEN_KEY: private_pem(SYSTEM_KEY),
        SYSTEM_TOKEN_PUBLIC_KEY: public_pem(SYSTEM_KEY.public_key()),
    }
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content)
        path.chmod(0o600 if name in (TOKEN_SIGNING_KEY, SYSTEM_TOKEN_KEY) else 0o644)
    return {
        "LEDER_TOKEN_JWKS_FILE": str(folder / TOKEN_JWKS),
        "LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE": str(folder / SYSTEM_TOKEN_PUBLIC_KEY),
        "LEDER_TOKEN_SIGNING_KEY_FILE": str(folder / TOKEN_SIGNING_KEY),
        "LEDER_SYSTEM_TOKEN_KEY_FILE": str(folder / SYSTEM_TOKEN_KEY),
    }


def trust() -> TokenTrust:
    """What a service a test runs in-process trusts: the session's keys (the env conftest set)."""
    return TokenTrust.from_env()


@contextmanager
def environment(folder: Path) -> Iterator[dict[str, str]]:
    """The session's key files in `folder`, named in this process's environment while it lasts."""
    names = write_key_files(folder)
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield names
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def issuer_of(folder: Path) -> TokenIssuer:
    """The issuer of a stack `leder up` (leder.stack) started from `folder`: its people key."""
    return TokenIssuer.from_file(folder / TOKEN_SIGNING_KEY)
