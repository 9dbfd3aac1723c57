"""Bearer JWTs (HS256) for the internal HTTP APIs: `sub`, `role` and an `organisation`, which a partner
system's token must name (it sends and reads that organisation's notifications only) and others may."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import structlog
from fastapi import Request

from events import Actor

ROLES = frozenset(
    {"partner_system", "lac", "reviewer", "senior_reviewer", "qa_panel", "governance", "ig_officer", "system"}
)
ISSUER = "leder"
# Roles whose every token names an organisation: what such a caller may see depends on it, so a token
# without one is refused at the door rather than let through with no organisation to hold it to.
ORGANISATION_REQUIRED = frozenset({"partner_system"})


class Unauthenticated(Exception):
    """No token, or one that does not verify: 401."""


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


def mint_token(
    secret: str, sub: str, role: str, organisation: str | None = None, ttl: timedelta = timedelta(hours=8)
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(sorted(ROLES))}")
    if role in ORGANISATION_REQUIRED and not (organisation and organisation.strip()):
        raise ValueError(f"a {role} token names its organisation: give one")
    now = datetime.now(UTC)
    claims: dict[str, object] = {"sub": sub, "role": role, "iss": ISSUER, "iat": now, "exp": now + ttl}
    if organisation:
        claims["organisation"] = organisation
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str) -> Caller:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], issuer=ISSUER, options={"require": ["sub", "exp", "iss"]}
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from exc
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated("token has no known role")
    organisation = claims.get("organisation")
    if organisation is not None and not isinstance(organisation, str):
        raise Unauthenticated("token's organisation is not a name")
    if role in ORGANISATION_REQUIRED and not (organisation and organisation.strip()):
        raise Unauthenticated(
            f"token names no organisation: a {role} token must name the organisation it acts for"
        )
    return Caller(sub=str(claims["sub"]), role=role, organisation=organisation or None)


def caller_from_request(request: Request, secret: str) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a bearer token is required")
    caller = verify_token(secret, token.strip())
    structlog.contextvars.bind_contextvars(caller=caller.sub, caller_role=caller.role)
    return caller


def require_roles(*roles: str) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency: the verified caller, if their role is one of `roles`."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    async def dependency(request: Request) -> Caller:
        caller = caller_from_request(request, request.app.state.jwt_secret)
        request.state.caller = caller
        if caller.role not in roles:
            raise Forbidden(f"role {caller.role!r} may not do this; needs one of {', '.join(roles)}")
        return caller

    return dependency
