"""A small but real OpenID Connect provider for tests: discovery, /authorize (approves the configured
person at once, as if they had signed in), /token (checks the client secret, the code and the PKCE
verifier against the challenge), /jwks, and RS256 ID tokens. Knobs make it misbehave the ways a
provider or an attacker might: refuse, send back another state, sign with a key it does not publish,
issue an expired token or one for another nonce."""

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

from infra.embedded import free_port


def rsa_key(kid: str) -> RSAKey:
    """An RS256 signing key, made with `cryptography`."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return RSAKey.import_key(pem, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    # The person /authorize approves: claims for their ID token (sub, name, roles...).
    person: dict[str, Any] = field(default_factory=dict)
    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: rsa_key("key-1"))
    # Misbehaviours, each off until a test sets it.
    deny: bool = False
    state_override: str | None = None
    nonce_override: str | None = None
    expires_in: int = 300
    sign_with: RSAKey | None = None
    # What happened, for tests to look at.
    codes: dict[str, Grant] = field(default_factory=dict)
    id_tokens: list[str] = field(default_factory=list)
    jwks_fetches: int = 0

    def reset(self) -> None:
        self.deny, self.state_override, self.nonce_override = False, None, None
        self.expires_in, self.sign_with = 300, None

    def rotate_key(self) -> None:
        self.key = rsa_key(f"key-{secrets.token_hex(4)}")

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + self.expires_in,
            "auth_time": now,
            **grant.claims,
        }
        nonce = self.nonce_override or grant.nonce
        if nonce:
            claims["nonce"] = nonce
        key = self.sign_with or self.key
        token = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
        self.id_tokens.append(token)
        return token


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def provider_app(p: OidcProvider) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": p.issuer,
            "authorization_endpoint": f"{p.issuer}/authorize",
            "token_endpoint": f"{p.issuer}/token",
            "jwks_uri": f"{p.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        p.jwks_fetches += 1
        return {"keys": [p.key.as_dict(private=False)]}

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> RedirectResponse | JSONResponse:
        q = request.query_params
        if q.get("client_id") != p.client_id or q.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        if "openid" not in (q.get("scope") or "").split():
            return JSONResponse({"error": "invalid_scope"}, status_code=400)
        redirect_uri = q["redirect_uri"]
        state = p.state_override or q.get("state") or ""
        if p.deny:
            return RedirectResponse(f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}")
        code = secrets.token_urlsafe(24)
        p.codes[code] = Grant(p.client_id, redirect_uri, q.get("nonce"), q["code_challenge"], dict(p.person))
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    @app.post("/token")
    async def token(
        grant_type: str = Form(),
        code: str = Form(),
        redirect_uri: str = Form(),
        code_verifier: str = Form(""),
        client_id: str | None = Form(None),
        client_secret: str | None = Form(None),
        authorization: str | None = Header(None),
    ) -> JSONResponse:
        if authorization and authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(password)
        if client_id != p.client_id or client_secret != p.client_secret:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = p.codes.pop(code, None)  # a code is good once
        if grant_type != "authorization_code" or grant is None or grant.redirect_uri != redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        if s256(code_verifier) != grant.challenge:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verifier"}, 400)
        return JSONResponse(
            {
                "access_token": secrets.token_urlsafe(32),
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": p.id_token(grant),
            }
        )

    return app


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """An ASGI app served by uvicorn in a thread of this process, until the block ends."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the app on port {port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def running_provider(client_id: str, client_secret: str, person: dict[str, Any]) -> Iterator[OidcProvider]:
    port = free_port()
    provider = OidcProvider(client_id, client_secret, person, issuer=f"http://127.0.0.1:{port}")
    with serve(provider_app(provider), port):
        yield provider
