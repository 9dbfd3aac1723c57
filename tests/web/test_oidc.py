"""Production sign-in: OpenID Connect against a real provider running in the test (tests/support/
oidc_provider.py), the web application served by uvicorn with no development sign-in, in Chromium."""

import asyncio
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from infra import db
from infra.embedded import free_port
from infra.settings import database_url_for
from services.web import oidc
from services.web.app import create_app
from services.web.settings import CASE_SERVICES, OidcSettings, WebSettings
from tests.support import tokens
from tests.support.oidc_provider import OidcProvider, running_provider, s256, serve
from tests.support.web import assert_accessible, shoot

SHOTS = Path("/tmp/shots/oidc")
CLIENT_ID, CLIENT_SECRET = "leder-web", "client-secret-" + "y" * 20
# As a Keycloak realm would send her: realm roles nested, a username the services know her by.
ADA = {
    "sub": "f3a9c2e0-0000-4000-8000-000000000001",
    "preferred_username": "ada.lovelace",
    "name": "Ada Lovelace",
    "organisation": "QHM",
    "realm_access": {"roles": ["LeDeR-LAC", "offline_access", "LeDeR-QA", "LeDeR-Service", "system"]},
}
ROLE_MAP = {"LeDeR-LAC": "lac", "LeDeR-QA": "qa_panel", "LeDeR-Service": "system"}


class Tee(io.TextIOBase):
    """The web app's log lines (it writes them to the stderr it found at start-up), kept for tests."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.text: list[str] = []

    def write(self, s: str) -> int:
        self.text.append(s)
        return int(self.inner.write(s))

    def flush(self) -> None:
        self.inner.flush()

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = [json.loads(x) for x in "".join(self.text).splitlines() if x.startswith("{")]
        return [line for line in lines if line.get("event") == name]


@dataclass
class Web:
    base: str
    settings: WebSettings
    log: Tee


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with running_provider(CLIENT_ID, CLIENT_SECRET, ADA) as p:
        yield p


@pytest.fixture(autouse=True)
def fresh_provider(provider: OidcProvider) -> None:
    provider.reset()
    provider.person = dict(ADA)


@pytest.fixture(scope="module")
def web(provider: OidcProvider, pg_server_url: str) -> Iterator[Web]:
    port = free_port()
    database = database_url_for(pg_server_url, f"leder_web_oidc_{uuid4().hex[:8]}")
    settings = WebSettings(
        # Nothing answers here: the pages these tests open call no service.
        service_urls={s: "http://127.0.0.1:9" for s in CASE_SERVICES},
        token_issuer=tokens.ISSUER,
        database_url=database,
        http_port=port,
        dev_sign_in=False,
        oidc=OidcSettings(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            roles_claim="realm_access.roles",
            role_map=ROLE_MAP,
            user_claim="preferred_username",
        ),
        public_url=f"http://127.0.0.1:{port}",
    )
    tee, stderr = Tee(sys.stderr), sys.stderr
    sys.stderr = tee  # only while the app starts: its logger keeps the stream it finds then
    try:
        with serve(create_app(settings), port) as base:
            sys.stderr = stderr
            yield Web(base, settings, tee)
    finally:
        sys.stderr = stderr
        asyncio.run(db.drop_database(database))


def sign_in_with_nhs_account(page: Page, web: Web, path: str = "/account") -> Response:
    page.goto(f"{web.base}{path}")
    with page.expect_response(lambda r: "/sign-in/callback" in r.url) as callback:
        page.get_by_role("button", name="Sign in with your NHS account").click()
    page.wait_for_load_state()
    return callback.value


def signed_in_person(page: Page, web: Web) -> bool:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    response = httpx.get(f"{web.base}/account", cookies=cookies)
    return response.status_code == 200


def test_signing_in_through_the_provider_lands_signed_in_with_the_mapped_roles(
    web: Web, provider: OidcProvider, page: Page
) -> None:
    page.goto(f"{web.base}/account")
    assert page.url == f"{web.base}/sign-in?next=/account"
    assert_accessible(page)
    shoot(page, SHOTS / "sign-in.png")
    sign_in_with_nhs_account(page, web)
    assert page.url == f"{web.base}/account"
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account")
    summary = page.locator(".nhsuk-summary-list")
    expect(summary).to_contain_text("Ada Lovelace")
    expect(summary).to_contain_text("ada.lovelace")
    expect(summary).to_contain_text("QHM")
    expect(summary).to_contain_text("Local Area Contact")
    expect(page.locator(".nhsuk-header__account")).to_contain_text("Ada Lovelace, Local Area Contact")
    # Her roles, mapped through the role map; `system` never, whoever grants it.
    labels = page.locator("input[name=role] + label")
    expect(labels).to_have_text(["Local Area Contact", "QA panel member"])
    assert_accessible(page)
    shoot(page, SHOTS / "account.png")
    cookie = next(c for c in page.context.cookies() if c["name"] == "leder_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    signed_in = web.log.events("signed_in")[-1]
    assert signed_in["sub"] == "ada.lovelace" and signed_in["roles"] == ["lac", "qa_panel"]
    assert signed_in["how"] == "oidc"
    logged = "".join(web.log.text)
    assert provider.id_tokens and not any(t in logged for t in provider.id_tokens)
    assert not any(t.split(".")[2] in logged for t in provider.id_tokens)


def test_the_provider_is_asked_for_a_code_with_pkce_state_and_nonce_and_a_replayed_callback_is_refused(
    web: Web, provider: OidcProvider
) -> None:
    provider.person = {**ADA, "realm_access": {"roles": ["LeDeR-QA"]}}
    with httpx.Client() as client:
        # An address elsewhere as `next` is dropped: she lands on her role's home.
        start = client.get(f"{web.base}/sign-in/oidc", params={"next": "//evil.example/x"})
        assert start.status_code == 303
        asked = parse_qs(urlsplit(start.headers["location"]).query)
        assert asked["response_type"] == ["code"] and asked["client_id"] == [CLIENT_ID]
        assert asked["code_challenge_method"] == ["S256"] and len(asked["code_challenge"][0]) == 43
        assert asked["redirect_uri"] == [f"{web.base}/sign-in/callback"]
        assert asked["state"][0] and asked["nonce"][0] and asked["state"] != asked["nonce"]
        assert "openid" in asked["scope"][0].split()
        back = client.get(start.headers["location"])
        callback = client.get(back.headers["location"])
        assert callback.status_code == 303 and callback.headers["location"] == "/qa"
        # The same answer from the provider, again (say from the browser's history): used up.
        replay = httpx.get(back.headers["location"], cookies=client.cookies)
        assert replay.status_code == 400 and "You could not be signed in" in replay.text


def test_the_provider_refuses_a_wrong_pkce_verifier(provider: OidcProvider) -> None:
    verifier = "v" * 64
    redirect_uri = "http://127.0.0.1:1/sign-in/callback"
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": "s",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }

    def token(with_verifier: str) -> httpx.Response:
        answer = httpx.get(f"{provider.issuer}/authorize", params=params)
        code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
        return httpx.post(
            f"{provider.issuer}/token",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                  "code_verifier": with_verifier},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )  # fmt: skip

    assert token("w" * 64).status_code == 400
    assert token(verifier).status_code == 200


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("state_override", "forged-state"),
        ("deny", True),
        ("nonce_override", "someone-elses-nonce"),
        ("expires_in", -300),
        ("sign_with", "unpublished key"),
    ],
)
def test_a_sign_in_that_does_not_check_out_is_refused_and_signs_nobody_in(
    web: Web, provider: OidcProvider, page: Page, knob: str, value: Any
) -> None:
    if value == "unpublished key":
        # Same key id as the published key, other key: only the signature tells them apart.
        from tests.support.oidc_provider import rsa_key

        value = rsa_key(provider.key.kid or "key-1")
    setattr(provider, knob, value)
    callback = sign_in_with_nhs_account(page, web)
    assert callback.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("You could not be signed in")
    expect(page.get_by_role("link", name="Go back to sign in")).to_be_visible()
    assert not signed_in_person(page, web)
    assert_accessible(page)
    shoot(page, SHOTS / f"refused-{knob}.png")


def test_a_person_with_no_leder_role_is_told_so_and_not_signed_in(
    web: Web, provider: OidcProvider, page: Page
) -> None:
    provider.person = {**ADA, "realm_access": {"roles": ["Finance", "LeDeR-Service", "system", "admin"]}}
    callback = sign_in_with_nhs_account(page, web)
    assert callback.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("You do not have access to LeDeR")
    assert not signed_in_person(page, web)
    assert web.log.events("sign_in_refused")[-1]["reason"] == "no_leder_role"
    assert_accessible(page)
    shoot(page, SHOTS / "no-access.png")


def test_partner_staff_whose_provider_names_no_organisation_are_told_so_and_not_signed_in(
    web: Web, provider: OidcProvider, page: Page
) -> None:
    partner = {k: v for k, v in ADA.items() if k != "organisation"}
    provider.person = {**partner, "realm_access": {"roles": ["partner_system"]}}
    callback = sign_in_with_nhs_account(page, web)
    assert callback.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Your NHS account does not name your organisation"
    )
    expect(page.get_by_role("link", name="Go back to sign in")).to_be_visible()
    assert not signed_in_person(page, web)
    assert web.log.events("sign_in_refused")[-1]["reason"] == "no_organisation"
    assert_accessible(page)
    shoot(page, SHOTS / "no-organisation.png")
    # Holding another role too does not let a partner without an organisation in.
    provider.person = {
        **partner,
        "organisation": " ",
        "realm_access": {"roles": ["partner_system", "LeDeR-QA"]},
    }
    page.context.clear_cookies()
    assert sign_in_with_nhs_account(page, web).status == 403
    assert not signed_in_person(page, web)
    # With her organisation named, she is in, as partner staff of it.
    provider.person = {**partner, "organisation": "L81001", "realm_access": {"roles": ["partner_system"]}}
    page.context.clear_cookies()
    sign_in_with_nhs_account(page, web)
    assert page.url == f"{web.base}/account"
    expect(page.locator(".nhsuk-summary-list")).to_contain_text("L81001")
    expect(page.locator(".nhsuk-summary-list")).to_contain_text("Partner staff")


def test_a_new_signing_key_is_fetched_once_when_a_token_names_it(
    web: Web, provider: OidcProvider, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in_with_nhs_account(page, web)  # the keys are cached now
    monkeypatch.setattr(oidc, "JWKS_REFETCH_AFTER", 0.0)
    provider.rotate_key()
    fetches = provider.jwks_fetches
    page.context.clear_cookies()
    sign_in_with_nhs_account(page, web)
    assert page.url == f"{web.base}/account"
    assert provider.jwks_fetches == fetches + 1


def test_there_is_no_development_sign_in(web: Web, page: Page) -> None:
    page.goto(f"{web.base}/sign-in")
    expect(page.get_by_role("button", name="Sign in with your NHS account")).to_be_visible()
    expect(page.locator("input[name=person]")).to_have_count(0)
    expect(page.get_by_text("Development")).to_have_count(0)
    forged = httpx.post(f"{web.base}/sign-in/dev", data={"person": "lac.alex"})
    assert forged.status_code in (404, 405)


def test_behind_tls_the_cookie_is_secure_and_the_provider_sends_people_back_over_https(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LEDER_WEB_PUBLIC_URL": "https://leder.example.nhs.uk/",
        "LEDER_OIDC_ISSUER": "https://idp.example.nhs.uk/realms/icb/",
        "LEDER_OIDC_CLIENT_ID": CLIENT_ID,
        "LEDER_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "LEDER_OIDC_ROLE_MAP": "LeDeR-LAC=lac, LeDeR-QA=qa_panel",
    }.items():
        monkeypatch.setenv(name, value)
    from_env = WebSettings.from_env()
    assert from_env.secure_cookies and from_env.public_url == "https://leder.example.nhs.uk"
    assert from_env.oidc is not None and from_env.oidc.issuer == "https://idp.example.nhs.uk/realms/icb"
    assert from_env.oidc.role_map == {"LeDeR-LAC": "lac", "LeDeR-QA": "qa_panel"}
    # It signs the services' tokens with the issuer's key (the session's, tests/conftest.py).
    assert from_env.token_issuer.kid == tokens.ISSUER.kid
    tls = replace(web.settings, secure_cookies=True, public_url="https://leder.example.nhs.uk")
    with serve(create_app(tls)) as base:
        start = httpx.get(f"{base}/sign-in/oidc")
    assert start.status_code == 303
    cookie = start.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    assert asked["redirect_uri"] == ["https://leder.example.nhs.uk/sign-in/callback"]
    assert start.headers["strict-transport-security"].startswith("max-age=")


def test_roles_are_read_from_the_claim_as_providers_send_them() -> None:
    settings = OidcSettings(issuer="https://idp", client_id="c", client_secret="s", role_map=ROLE_MAP)
    as_string = oidc.person_of({"sub": "u1", "name": "A B", "roles": "LeDeR-LAC reviewer system"}, settings)
    assert as_string.roles == ("lac", "reviewer")
    cis2 = oidc.roles_of([{"role_code": "LeDeR-QA"}, {"role_code": "R8000"}, "governance"], ROLE_MAP)
    assert cis2 == ("qa_panel", "governance")
    mapped_to_system = oidc.roles_of(["LeDeR-Service"], {"LeDeR-Service": "system"})
    assert mapped_to_system == ()
    nameless = oidc.person_of({"sub": "u2", "given_name": "Jo", "family_name": "Bloggs"}, settings)
    assert nameless.name == "Jo Bloggs" and nameless.roles == () and nameless.organisation is None
    for blank in ("", "  ", ["", " "], 7):
        assert oidc.person_of({"sub": "u3", "organisation": blank}, settings).organisation is None
    listed = oidc.person_of({"sub": "u4", "organisation": [" ", " L81001 "]}, settings)
    assert listed.organisation == "L81001"
