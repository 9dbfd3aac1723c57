"""Bearer JWTs for the internal HTTP APIs: `sub`, `role` and an `organisation`, which a partner
system's token must name (it sends and reads that organisation's notifications only) and others may.

A service holds no key that can sign a token: it verifies with public keys only (TokenTrust). A person's
or partner system's token is signed by their issuer (LEDER_TOKEN_ISSUER) with a key from its JWKS (a file,
LEDER_TOKEN_JWKS_FILE, or fetched, LEDER_TOKEN_JWKS_URL), for our audience (LEDER_TOKEN_AUDIENCE), and
lives no longer than LEDER_TOKEN_MAX_LIFETIME seconds. The services' own `system` role is signed by the
system key alone (LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE), which signs nothing else. Whatever a token holds,
a refusal is a 401, never a 500."""

import asyncio
import json
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Request

from events import Actor
from infra.ed25519 import key_id
from infra.logging import get_logger
from infra.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, SYSTEM_ISSUER, read_public_key

log = get_logger(__name__)

SYSTEM_ROLE = "system"
ROLES = frozenset(
    {
        "partner_system",
        "lac",
        "reviewer",
        "senior_reviewer",
        "qa_panel",
        "governance",
        "ig_officer",
        SYSTEM_ROLE,
    }
)
# Roles whose every token names an organisation: what such a caller may see depends on it, so a token
# without one is refused at the door rather than let through with no organisation to hold it to.
ORGANISATION_REQUIRED = frozenset({"partner_system"})
DEFAULT_MAX_LIFETIME = timedelta(hours=8)
# Asymmetric algorithms only, each tied to its kind of key: a token naming HS256 (signed with anything,
# a public key included) is refused before any key is looked at.
ALGORITHM_OF_KEY: dict[tuple[object, object], str] = {
    ("OKP", "Ed25519"): "EdDSA",
    ("EC", "P-256"): "ES256",
    ("RSA", None): "RS256",
}
# The clocks of issuer and service may differ a little.
LEEWAY = timedelta(seconds=30)
# Longer than any user id or ODS code; what a token names ends up in events and logs.
MAX_NAME_LENGTH = 256
# A fetched JWKS is fetched again after this long, or sooner for a key id it does not know (but not
# more often than REFETCH_SECONDS: tokens naming made-up key ids must not make us hammer the issuer).
JWKS_CACHE_SECONDS = 300.0
REFETCH_SECONDS = 30.0


class Unauthenticated(Exception):
    """No token, or one that does not verify: 401."""


class IssuerKeysUnavailable(Unauthenticated):
    """The JWKS could not be fetched and none is at hand: the token cannot be checked, so it is not
    accepted (a 401 that says why; the caller may try again)."""


class Forbidden(Exception):
    """A verified caller whose role may not do this: 403."""


@dataclass(frozen=True)
class Caller:
    sub: str
    role: str
    organisation: str | None = None

    @property
    def actor(self) -> Actor:
        kind = "partner" if self.role == "partner_system" else "user"
        return Actor(kind=kind, id=self.sub, role=self.role)


@dataclass(frozen=True)
class TokenTrust:
    """What a service trusts, as configured: whose tokens, checked with which public keys. With neither a
    JWKS file nor a URL, no person's token verifies (the offline commands, which take none)."""

    jwks_file: Path | None = None
    jwks_url: str | None = None
    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME
    system_key_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "TokenTrust":
        env = os.environ if environ is None else environ
        jwks_file, jwks_url = env.get("LEDER_TOKEN_JWKS_FILE"), env.get("LEDER_TOKEN_JWKS_URL")
        if not jwks_file and not jwks_url:
            raise RuntimeError(
                "LEDER_TOKEN_JWKS_FILE (or LEDER_TOKEN_JWKS_URL) must be set: the public keys of the"
                " issuer whose tokens this service accepts"
            )
        system_key = env.get("LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE")
        try:
            max_lifetime = timedelta(seconds=int(env.get("LEDER_TOKEN_MAX_LIFETIME", "28800")))
        except ValueError as bad:
            raise RuntimeError("LEDER_TOKEN_MAX_LIFETIME is a number of seconds") from bad
        return cls(
            jwks_file=Path(jwks_file) if jwks_file else None,
            jwks_url=None if jwks_file else jwks_url,
            issuer=env.get("LEDER_TOKEN_ISSUER") or DEFAULT_ISSUER,
            audience=env.get("LEDER_TOKEN_AUDIENCE") or DEFAULT_AUDIENCE,
            max_lifetime=max_lifetime,
            system_key_file=Path(system_key) if system_key else None,
        )


def _keys_of(document: object) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWKS document by key id; keys we cannot use (symmetric ones, unknown
    curves, no id) are left out, never trusted."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document: no list of keys")
    keys: dict[str, jwt.PyJWK] = {}
    for data in document["keys"]:
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("kid"), str)
            or data.get("use", "sig") != "sig"
        ):
            continue
        algorithm = ALGORITHM_OF_KEY.get((data.get("kty"), data.get("crv")))
        if algorithm is None or data.get("alg", algorithm) != algorithm:
            continue
        try:
            keys[data["kid"]] = jwt.PyJWK(data, algorithm)
        except jwt.PyJWTError as unusable:
            log.warning("jwks_key_unusable", kid=data["kid"], error=str(unusable))
    return keys


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithm: str
    system: bool


class TokenVerifier:
    """Checks a bearer token against a TokenTrust: signature by a trusted key, issuer, audience,
    lifetime, and every claim's type. `verify` uses the keys at hand; `caller` (async) first fetches the
    JWKS when it is stale or does not hold the token's key id."""

    def __init__(self, trust: TokenTrust, client: httpx.AsyncClient | None = None) -> None:
        self.trust = trust
        self._client = client
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -math.inf
        self._fetching: asyncio.Lock | None = None
        self._file_stamp: tuple[float, int] | None = None
        self._system: tuple[str, Ed25519PublicKey] | None = None
        if trust.system_key_file is not None:
            public = read_public_key(trust.system_key_file)
            self._system = (key_id(public), public)
        if trust.jwks_file is not None:
            self._read_file()

    def _read_file(self) -> None:
        """(Re-)read the JWKS file if it changed: a key added for a rotation is trusted without a
        restart. A file that cannot be read at start-up stops the service; later, the keys stay."""
        assert self.trust.jwks_file is not None
        stat = self.trust.jwks_file.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._file_stamp:
            self._keys = _keys_of(json.loads(self.trust.jwks_file.read_text()))
            self._file_stamp = stamp

    def _key_for(self, kid: str) -> _Key | None:
        if self._system is not None and kid == self._system[0]:
            return _Key(self._system[1], "EdDSA", system=True)
        found = self._keys.get(kid)
        return _Key(found, found.algorithm_name, system=False) if found is not None else None

    async def caller(self, token: str) -> Caller:
        kid = _kid(token)
        if self._key_for(kid) is None:
            await self._refresh(unknown_kid=True)
        elif self.trust.jwks_url is not None and time.monotonic() - self._fetched_at > JWKS_CACHE_SECONDS:
            await self._refresh(unknown_kid=False)
        return self.verify(token)

    async def _refresh(self, unknown_kid: bool) -> None:
        if self.trust.jwks_file is not None:
            try:
                await asyncio.to_thread(self._read_file)
            except (OSError, ValueError) as failed:
                log.warning("jwks_file_unreadable", path=str(self.trust.jwks_file), error=repr(failed))
            return
        if self.trust.jwks_url is None:
            return
        if unknown_kid and time.monotonic() - self._fetched_at < REFETCH_SECONDS:
            return
        self._fetching = self._fetching or asyncio.Lock()
        async with self._fetching:
            if time.monotonic() - self._fetched_at < REFETCH_SECONDS:
                return  # fetched while this request waited
            try:
                client = self._client or httpx.AsyncClient(timeout=5)
                try:
                    response = await client.get(self.trust.jwks_url)
                    response.raise_for_status()
                    self._keys = _keys_of(response.json())
                finally:
                    if self._client is None:
                        await client.aclose()
            except (httpx.HTTPError, ValueError) as failed:
                # The keys we had stay trusted; none at all means no token can be checked now.
                log.warning("jwks_unavailable", url=self.trust.jwks_url, error=repr(failed))
                if not self._keys:
                    raise IssuerKeysUnavailable(
                        "the token issuer's keys cannot be fetched now: no token can be checked"
                    ) from failed
            finally:
                self._fetched_at = time.monotonic()

    def verify(self, token: str) -> Caller:
        kid = _kid(token)
        key = self._key_for(kid)
        if key is None:
            raise Unauthenticated("token signed by a key this service does not trust")
        issuer = SYSTEM_ISSUER if key.system else self.trust.issuer
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                issuer=issuer,
                audience=self.trust.audience,
                leeway=LEEWAY,
                options={"require": ["sub", "exp", "iat", "iss", "aud"], "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return _caller_of(claims, key.system, self.trust.max_lifetime)


def _kid(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("token names no key (kid)")
    return kid


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def storable_name(value: str) -> bool:
    """A name PostgreSQL can store as text and a log can show: no NUL, no lone surrogate, not blank,
    not absurdly long."""
    if not value.strip() or len(value) > MAX_NAME_LENGTH or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _caller_of(claims: dict[str, Any], system: bool, max_lifetime: timedelta) -> Caller:
    """The caller a verified token names, if every claim is of its type; a 401 otherwise."""
    issued, expires = claims.get("iat"), claims.get("exp")
    if not (_number(issued) and _number(expires)):
        raise Unauthenticated("token's iat and exp are not times")
    assert isinstance(issued, int | float) and isinstance(expires, int | float)
    if expires - issued > max_lifetime.total_seconds():
        raise Unauthenticated(
            f"token lives longer than this service accepts ({int(max_lifetime.total_seconds())} s)"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not storable_name(sub):
        raise Unauthenticated("token's sub is not a name (blank, too long, or holding a NUL)")
    role = claims.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise Unauthenticated("token has no known role")
    if (role == SYSTEM_ROLE) != system:
        raise Unauthenticated(
            "the system role is signed by the system key alone, and the system key signs nothing else"
        )
    organisation = claims.get("organisation")
    if organisation is not None:
        if not isinstance(organisation, str):
            raise Unauthenticated("token's organisation is not a name")
        if not organisation.strip():
            organisation = None  # a blank organisation names none
        elif not storable_name(organisation):
            raise Unauthenticated("token's organisation is not a name (too long, or holding a NUL)")
    if role in ORGANISATION_REQUIRED and not organisation:
        raise Unauthenticated(
            f"token names no organisation: a {role} token must name the organisation it acts for"
        )
    return Caller(sub=sub, role=role, organisation=organisation or None)


async def caller_from_request(request: Request, tokens: TokenVerifier) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer token is required")
    caller = await tokens.caller(token.strip())
    structlog.contextvars.bind_contextvars(caller=caller.sub, caller_role=caller.role)
    return caller


def require_roles(*roles: str) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency: the verified caller, if their role is one of `roles`."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    async def dependency(request: Request) -> Caller:
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            caller = await caller_from_request(request, request.app.state.tokens)
            request.state.caller = caller
        else:
            # The edge verified this request's token before reading its body (infra.http): once is enough.
            structlog.contextvars.bind_contextvars(caller=caller.sub, caller_role=caller.role)
        if caller.role not in roles:
            raise Forbidden(f"role {caller.role!r} may not do this; needs one of {', '.join(roles)}")
        return caller

    return dependency
