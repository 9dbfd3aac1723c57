"""The web application's configuration, read once from the environment at start-up."""

import os
from dataclasses import dataclass, field

from infra.settings import SERVICE_PORTS, database_url_for
from infra.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenIssuer

WEB_PORT = 8000
CASE_SERVICES = ("notification", "allocation", "review", "governance", "audit")


@dataclass(frozen=True)
class OidcSettings:
    """The ICB's identity provider (NHS CIS2, Entra ID, Keycloak...): all of it configuration."""

    issuer: str
    client_id: str
    client_secret: str
    # The claim that lists a person's roles, and how its values name ours ("LeDeR-LAC=lac,...");
    # values that already are our role names need no entry.
    roles_claim: str = "roles"
    role_map: dict[str, str] = field(default_factory=dict)
    # The claim the services know the person by (reviewers are registered with it).
    user_claim: str = "sub"
    name_claim: str = "name"
    organisation_claim: str = "organisation"
    scopes: str = "openid profile email"


@dataclass(frozen=True)
class WebSettings:
    service_urls: dict[str, str]
    # The token issuer's private key: the web application signs each call's token for the person
    # signed in; the services hold only its public key.
    token_issuer: TokenIssuer
    database_url: str
    http_port: int = WEB_PORT
    # Only `leder up` sets LEDER_WEB_DEV_SIGNIN: a page that lets anyone be anyone.
    dev_sign_in: bool = False
    oidc: OidcSettings | None = None
    # Behind TLS the session cookie is Secure (and HSTS is sent); `leder up` serves plain HTTP.
    secure_cookies: bool = False
    idle_timeout_minutes: int = 30
    # Who this instance says it is in the links it builds for the identity provider.
    public_url: str = f"http://127.0.0.1:{WEB_PORT}"

    @classmethod
    def from_env(cls) -> "WebSettings":
        env = os.environ
        urls = {
            service: env.get(f"LEDER_{service.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[service]}")
            for service in CASE_SERVICES
        }
        server = env.get("LEDER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        port = int(env.get("LEDER_WEB_PORT", env.get("LEDER_HTTP_PORT", WEB_PORT)))
        public_url = env.get("LEDER_WEB_PUBLIC_URL", f"http://127.0.0.1:{port}").rstrip("/")
        return cls(
            service_urls=urls,
            token_issuer=_token_issuer_from_env(env),
            database_url=env.get("LEDER_WEB_DATABASE_URL") or database_url_for(server, "leder_web"),
            http_port=port,
            dev_sign_in=env.get("LEDER_WEB_DEV_SIGNIN") == "1",
            oidc=_oidc_from_env(env),
            secure_cookies=public_url.startswith("https://"),
            idle_timeout_minutes=int(env.get("LEDER_WEB_IDLE_MINUTES", "30")),
            public_url=public_url,
        )


def _token_issuer_from_env(env: os._Environ[str] | dict[str, str]) -> TokenIssuer:
    key_file = env.get("LEDER_TOKEN_SIGNING_KEY_FILE")
    if not key_file:
        raise RuntimeError(
            "LEDER_TOKEN_SIGNING_KEY_FILE must be set: the private key the web application signs the"
            " services' tokens with (its public key is in the JWKS the services are given)"
        )
    return TokenIssuer.from_file(
        key_file,
        issuer=env.get("LEDER_TOKEN_ISSUER") or DEFAULT_ISSUER,
        audience=env.get("LEDER_TOKEN_AUDIENCE") or DEFAULT_AUDIENCE,
    )


def _oidc_from_env(env: os._Environ[str] | dict[str, str]) -> OidcSettings | None:
    issuer = env.get("LEDER_OIDC_ISSUER")
    if not issuer:
        return None
    secret = env.get("LEDER_OIDC_CLIENT_SECRET", "")
    if not secret and env.get("LEDER_OIDC_CLIENT_SECRET_FILE"):
        with open(env["LEDER_OIDC_CLIENT_SECRET_FILE"]) as f:
            secret = f.read().strip()
    role_map = dict(
        pair.split("=", 1) for pair in env.get("LEDER_OIDC_ROLE_MAP", "").split(",") if "=" in pair
    )
    return OidcSettings(
        issuer=issuer.rstrip("/"),
        client_id=env["LEDER_OIDC_CLIENT_ID"],
        client_secret=secret,
        roles_claim=env.get("LEDER_OIDC_ROLES_CLAIM", "roles"),
        role_map={k.strip(): v.strip() for k, v in role_map.items()},
        user_claim=env.get("LEDER_OIDC_USER_CLAIM", "sub"),
        name_claim=env.get("LEDER_OIDC_NAME_CLAIM", "name"),
        organisation_claim=env.get("LEDER_OIDC_ORGANISATION_CLAIM", "organisation"),
        scopes=env.get("LEDER_OIDC_SCOPES", "openid profile email"),
    )
