"""OpenID Connect sign-in with the ICB's identity provider (NHS CIS2, Entra ID, Keycloak...): the
authorization code flow with PKCE (S256), state and nonce. The provider's discovery document and keys
are fetched when first needed and kept a while; the ID token's signature, issuer, audience, expiry and
nonce are checked before anyone is signed in. Tokens are never logged or kept: only the person."""

import base64
import binascii
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from infra.auth import ORGANISATION_REQUIRED
from infra.logging import get_logger
from services.web.page import render, session_of
from services.web.roles import ROLE_NAMES
from services.web.sessions import Person
from services.web.settings import OidcSettings
from services.web.signin import home_of, safe_next

log = get_logger("web.oidc")

# Our roles, as a provider may grant them. `system` (the services' own identity) is not among them,
# whatever a provider or a role map says.
OUR_ROLES = frozenset(ROLE_NAMES) - {"system"}
# Asymmetric signatures only: a provider's keys are public, and "none" or HS* would let the token's
# bearer choose how it is checked.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
METADATA_TTL = 3600.0
JWKS_TTL = 3600.0
# A token signed with a key we have not seen refetches the keys, but not more often than this: a
# provider rotating keys is served at once, a stream of made-up key ids does not hammer it.
JWKS_REFETCH_AFTER = 30.0
# How long a person may spend at the provider between leaving and coming back.
PENDING_TTL = 600
CLOCK_SKEW = 60
TIMEOUT = httpx.Timeout(10.0)


class SignInFailed(Exception):
    """The provider's answer cannot sign anyone in: why, in words for the person and for the log."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


class Provider:
    """The identity provider's discovery document and signing keys, cached."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("oidc_provider_unavailable", url=url, error=str(exc))
            raise SignInFailed(
                "provider_unavailable", "The NHS sign-in service is not answering.", 503
            ) from exc
        if not isinstance(data, dict):
            raise SignInFailed(
                "provider_unavailable", "The NHS sign-in service gave an answer we cannot read.", 503
            )
        return data

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._metadata_at > METADATA_TTL:
            data = await self._get_json(f"{self.settings.issuer}/.well-known/openid-configuration")
            # The document must be the configured issuer's own (OpenID Connect Discovery 1.0, 4.3).
            if str(data.get("issuer", "")).rstrip("/") != self.settings.issuer:
                log.warning("oidc_issuer_mismatch", configured=self.settings.issuer, found=data.get("issuer"))
                raise SignInFailed(
                    "issuer_mismatch", "The NHS sign-in service is not the one configured.", 503
                )
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(data.get(key), str):
                    raise SignInFailed(
                        "bad_discovery", f"The NHS sign-in service does not give its {key}.", 503
                    )
            self._metadata, self._metadata_at = data, time.monotonic()
        return self._metadata

    async def keys(self, kid: str | None) -> KeySet:
        """The provider's keys; fetched again once if the token names a key we do not have."""
        stale = self._keys is None or time.monotonic() - self._keys_at > JWKS_TTL
        unknown = kid is not None and self._keys is not None and not _has_kid(self._keys, kid)
        if stale or (unknown and time.monotonic() - self._keys_at > JWKS_REFETCH_AFTER):
            data = await self._get_json((await self.metadata())["jwks_uri"])
            try:
                self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise SignInFailed("bad_jwks", "The NHS sign-in service's keys cannot be read.", 503) from exc
            self._keys_at = time.monotonic()
        assert self._keys is not None
        return self._keys

    async def validate_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        metadata = await self.metadata()
        header = _header_of(id_token)
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = await self.keys(kid)
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = [a for a in SIGNING_ALGORITHMS if a in offered]
        try:
            token = jwt.decode(id_token, keys, algorithms=algorithms)
        except JoseError as exc:
            raise SignInFailed(
                f"id_token_{exc.error}", "The NHS sign-in service's answer could not be checked."
            ) from exc
        claims = dict(token.claims)
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_SKEW,
            iss={"essential": True, "value": metadata["issuer"]},
            aud={"essential": True, "value": self.settings.client_id},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInFailed(
                f"id_token_{exc.error}", "The NHS sign-in service's answer could not be checked."
            ) from exc
        # Several audiences: the token must have been issued to us (OpenID Connect Core 3.1.3.7).
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.settings.client_id:
            raise SignInFailed("id_token_azp", "The NHS sign-in service's answer was not meant for LeDeR.")
        return claims


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _header_of(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:  # a signed token (JWS compact); an encrypted one is not what we asked for
        raise SignInFailed("id_token_malformed", "The NHS sign-in service's answer could not be checked.")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise SignInFailed(
            "id_token_malformed", "The NHS sign-in service's answer could not be checked."
        ) from exc
    if not isinstance(header, dict):
        raise SignInFailed("id_token_malformed", "The NHS sign-in service's answer could not be checked.")
    return header


def claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by name, or by a dotted path into nested claims (Keycloak's `realm_access.roles`)."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_of(value: Any, role_map: Mapping[str, str]) -> tuple[str, ...]:
    """The provider's role values as our role names: mapped, unknown ones dropped, in order, once each."""
    if isinstance(value, str):
        values: list[Any] = value.replace(",", " ").split()
    elif isinstance(value, list):
        values = value
    else:
        return ()
    roles: list[str] = []
    for v in values:
        # NHS CIS2 lists role objects; the role's code is what a role map names.
        raw = v.get("role_code") if isinstance(v, Mapping) else v
        if not isinstance(raw, str):
            continue
        role = role_map.get(raw, raw)
        if role in OUR_ROLES and role not in roles:
            roles.append(role)
    return tuple(roles)


def person_of(claims: Mapping[str, Any], settings: OidcSettings) -> Person:
    sub = claim(claims, settings.user_claim)
    if not isinstance(sub, str) or not sub.strip():
        raise SignInFailed("no_user_claim", "The NHS sign-in service did not say who you are.")
    name = claim(claims, settings.name_claim)
    if not isinstance(name, str) or not name.strip():
        given, family = claims.get("given_name"), claims.get("family_name")
        name = " ".join(p for p in (given, family) if isinstance(p, str)) or sub
    organisation = claim(claims, settings.organisation_claim)
    if isinstance(organisation, list):
        organisation = next((o for o in organisation if isinstance(o, str) and o.strip()), None)
    return Person(
        sub=sub.strip(),
        name=name.strip(),
        roles=roles_of(claim(claims, settings.roles_claim), settings.role_map),
        # A blank organisation names none (a partner with none is refused at the callback).
        organisation=(organisation.strip() or None) if isinstance(organisation, str) else None,
    )


def router(settings: OidcSettings, public_url: str) -> APIRouter:
    routes = APIRouter()
    provider = Provider(settings)
    redirect_uri = public_url.rstrip("/") + "/sign-in/callback"

    def failed(request: Request, exc: SignInFailed) -> Response:
        log.warning("sign_in_failed", how="oidc", reason=exc.reason)
        return render(request, "sign_in_failed.html", status_code=exc.status, message=exc.message, retry=True)

    @routes.get("/sign-in/oidc")
    async def start(request: Request, next: str | None = None) -> Response:
        session = session_of(request)
        try:
            metadata = await provider.metadata()
        except SignInFailed as exc:
            return failed(request, exc)
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        # The only record of this sign-in's secrets: in our session, never in the browser's hands.
        session.scratch["oidc"] = {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": safe_next(next),
            "at": int(time.time()),
        }
        session.dirty = True
        url: str = prepare_grant_uri(
            metadata["authorization_endpoint"],
            client_id=settings.client_id,
            response_type="code",
            redirect_uri=redirect_uri,
            scope=settings.scopes,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return RedirectResponse(url, status_code=303)

    @routes.get("/sign-in/callback")
    async def callback(request: Request) -> Response:
        session = session_of(request)
        # One use only: whatever happens next, this sign-in's secrets are gone.
        pending = session.scratch.pop("oidc", None)
        session.dirty = True
        try:
            person = await _complete(request, pending)
        except SignInFailed as exc:
            return failed(request, exc)
        if not person.roles:
            log.warning("sign_in_refused", how="oidc", sub=person.sub, reason="no_leder_role")
            return render(
                request, "sign_in_failed.html", status_code=403, no_access=True, person_name=person.name
            )
        if person.organisation is None and ORGANISATION_REQUIRED & set(person.roles):
            # Partner staff notify, and read outcomes, in their organisation's name only: with no
            # organisation from the provider there is none to hold them to, so no way in.
            log.warning("sign_in_refused", how="oidc", sub=person.sub, reason="no_organisation")
            return render(
                request, "sign_in_failed.html", status_code=403, no_organisation=True, person_name=person.name
            )
        session.sign_in(person)
        log.info("signed_in", sub=person.sub, roles=list(person.roles), how="oidc")
        target = pending.get("next") if isinstance(pending, dict) else None
        return RedirectResponse(safe_next(target) or home_of(session.role), status_code=303)

    async def _complete(request: Request, pending: Any) -> Person:
        params = request.query_params
        if params.get("error"):
            if params["error"] == "access_denied":
                raise SignInFailed(
                    "access_denied", "You did not sign in with your NHS account, or it was refused."
                )
            raise SignInFailed(
                f"provider_{params['error'][:40]}", "The NHS sign-in service could not sign you in."
            )
        if not isinstance(pending, dict) or not isinstance(pending.get("state"), str):
            raise SignInFailed(
                "no_pending_sign_in", "This sign-in was not started here, or has already been used."
            )
        state = params.get("state") or ""
        if not hmac.compare_digest(state.encode(), pending["state"].encode()):
            raise SignInFailed(
                "state_mismatch", "This sign-in was not started here, or has already been used."
            )
        if time.time() - int(pending.get("at", 0)) > PENDING_TTL:
            raise SignInFailed("pending_expired", "This sign-in took too long.")
        code = params.get("code")
        if not code:
            raise SignInFailed("no_code", "The NHS sign-in service did not complete the sign-in.")
        metadata = await provider.metadata()
        token = await _exchange(metadata, code, pending["verifier"])
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("no_id_token", "The NHS sign-in service did not say who you are.")
        claims = await provider.validate_id_token(id_token, pending["nonce"])
        return person_of(claims, settings)

    async def _exchange(metadata: Mapping[str, Any], code: str, verifier: str) -> dict[str, Any]:
        """The code and our PKCE verifier for the tokens (RFC 6749 4.1.3, RFC 7636 4.5)."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        auth: httpx.BasicAuth | None = None
        offered = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if "client_secret_basic" in offered:
            # RFC 6749 2.3.1: the id and secret are form-encoded before they go into Basic.
            auth = httpx.BasicAuth(quote_plus(settings.client_id), quote_plus(settings.client_secret))
        else:
            data |= {"client_id": settings.client_id, "client_secret": settings.client_secret}
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, auth=auth) as http:
                response = await http.post(
                    metadata["token_endpoint"], data=data, headers={"Accept": "application/json"}
                )
            body = response.json()
        except httpx.HTTPError as exc:
            raise SignInFailed("token_unavailable", "The NHS sign-in service is not answering.", 503) from exc
        except ValueError:
            body = None
        if not isinstance(body, dict) or response.status_code != 200 or "error" in body:
            error = body.get("error") if isinstance(body, dict) else f"http_{response.status_code}"
            raise SignInFailed(
                f"token_{str(error)[:40]}", "The NHS sign-in service did not complete the sign-in."
            )
        return body

    return routes
