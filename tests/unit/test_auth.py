"""Bearer tokens: only a key the service was given (public halves only) makes a token it accepts, for
its issuer and audience, for no longer than its maximum lifetime; whatever a token's claims hold, a
refusal is Unauthenticated (a 401), never another exception (a 500)."""

import hashlib
import hmac
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.auth import (
    IssuerKeysUnavailable,
    TokenTrust,
    TokenVerifier,
    Unauthenticated,
)
from infra.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SYSTEM_ISSUER,
    SYSTEM_TOKEN_KEY,
    SYSTEM_TOKEN_PUBLIC_KEY,
    TOKEN_JWKS,
    TOKEN_SIGNING_KEY,
    TokenIssuer,
    jwks,
    key_id,
    private_pem,
    public_jwk,
    public_pem,
    token_key_files,
)

PEOPLE_KEY = Ed25519PrivateKey.generate()
SYSTEM_KEY = Ed25519PrivateKey.generate()
ISSUER = TokenIssuer(PEOPLE_KEY)
SYSTEM = TokenIssuer(SYSTEM_KEY, SYSTEM_ISSUER, system=True)


@pytest.fixture
def trust(tmp_path: Path) -> TokenTrust:
    (tmp_path / "jwks.json").write_text(json.dumps(jwks(PEOPLE_KEY.public_key())))
    (tmp_path / "system.pem").write_bytes(public_pem(SYSTEM_KEY.public_key()))
    return TokenTrust(jwks_file=tmp_path / "jwks.json", system_key_file=tmp_path / "system.pem")


@pytest.fixture
def verifier(trust: TokenTrust) -> TokenVerifier:
    return TokenVerifier(trust)


def claims(**changed: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "alice",
        "role": "lac",
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    return {k: v for k, v in (base | changed).items() if v is not None}


def signed(payload: dict[str, Any], key: Ed25519PrivateKey = PEOPLE_KEY, kid: str | None = None) -> str:
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid or key_id(key.public_key())})


def test_a_minted_token_verifies_to_its_caller(verifier: TokenVerifier) -> None:
    caller = verifier.verify(ISSUER.mint("alice", "lac", organisation="BNSSG ICB"))
    assert (caller.sub, caller.role, caller.organisation) == ("alice", "lac", "BNSSG ICB")
    assert caller.actor.kind == "user"
    partner = verifier.verify(ISSUER.mint("gp-sys", "partner_system", "L81001"))
    assert (partner.actor.kind, partner.organisation) == ("partner", "L81001")
    # An organisation is optional for the people who work in LeDeR.
    assert verifier.verify(ISSUER.mint("alice", "lac")).organisation is None


def test_an_unknown_role_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        ISSUER.mint("alice", "admin")


def test_the_people_key_cannot_mint_the_system_role_nor_the_system_key_a_person() -> None:
    with pytest.raises(ValueError, match="system key alone"):
        ISSUER.mint("audit-reconcile", "system")
    with pytest.raises(ValueError, match="system key alone"):
        SYSTEM.mint("alice", "lac")


def test_an_expired_token_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(ISSUER.mint("alice", "lac", ttl=timedelta(minutes=-5)))


def hs256(payload: dict[str, Any], secret: bytes, headers: dict[str, Any]) -> str:
    """An HS256 token made by hand: PyJWT itself will not use a public key as an HMAC secret, but an
    attacker's tooling will."""
    part = [
        jwt.utils.base64url_encode(json.dumps(x).encode())
        for x in ({"alg": "HS256", "typ": "JWT"} | headers, payload)
    ]
    signing_input = b".".join(part)
    signature = jwt.utils.base64url_encode(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


HS256_SECRETS = {
    "any secret": b"k" * 64,
    # The classic confusion: the verifier's own public key used as an HMAC secret.
    "the public key's PEM": public_pem(PEOPLE_KEY.public_key()),
    "the public JWK's x": public_jwk(PEOPLE_KEY.public_key())["x"].encode(),
}


@pytest.mark.parametrize("secret", HS256_SECRETS.values(), ids=HS256_SECRETS.keys())
@pytest.mark.parametrize("kid", [None, key_id(PEOPLE_KEY.public_key())], ids=["no kid", "the trusted kid"])
def test_an_hs256_token_signed_with_anything_is_refused(
    verifier: TokenVerifier, secret: bytes, kid: str | None
) -> None:
    token = hs256(claims(), secret, {"kid": kid} if kid else {})
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_an_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), "", algorithm="none", headers={"kid": key_id(PEOPLE_KEY.public_key())})
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_a_token_signed_by_a_key_the_service_was_not_given_is_refused(verifier: TokenVerifier) -> None:
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(Unauthenticated, match="does not trust"):
        verifier.verify(signed(claims(), stranger))
    # Naming the trusted key's id does not make a stranger's signature verify.
    with pytest.raises(Unauthenticated, match="Signature verification failed"):
        verifier.verify(signed(claims(), stranger, kid=key_id(PEOPLE_KEY.public_key())))


@pytest.mark.parametrize(
    "changed",
    [
        {"iss": "someone-else"},
        {"iss": SYSTEM_ISSUER},
        {"iss": None},
        {"aud": "another-service"},
        {"aud": ["another-service", DEFAULT_AUDIENCE]},
        {"aud": None},
    ],
    ids=["other issuer", "the system issuer", "no issuer", "other audience", "audience list", "no audience"],
)
def test_a_token_for_another_issuer_or_audience_is_refused(
    verifier: TokenVerifier, changed: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(claims(**changed)))


def test_a_token_living_longer_than_the_maximum_is_refused(tmp_path: Path, trust: TokenTrust) -> None:
    now = int(time.time())
    eight_hours_and_a_minute = claims(iat=now, exp=now + 8 * 3600 + 60)
    with pytest.raises(Unauthenticated, match="lives longer"):
        TokenVerifier(trust).verify(signed(eight_hours_and_a_minute))
    # The maximum is the service's to set.
    shorter = TokenVerifier(TokenTrust(jwks_file=trust.jwks_file, max_lifetime=timedelta(minutes=10)))
    with pytest.raises(Unauthenticated, match="lives longer"):
        shorter.verify(ISSUER.mint("alice", "lac", ttl=timedelta(minutes=11)))
    assert shorter.verify(ISSUER.mint("alice", "lac", ttl=timedelta(minutes=10))).sub == "alice"


@pytest.mark.parametrize(
    "changed",
    [
        {"iat": None},
        {"exp": None},
        {"iat": "1700000000"},
        {"iat": True},
        {"exp": [4102444800]},
        {"exp": 2**63},
        {"exp": 1e308},
        {"iat": int(time.time()) + 3600},
        {"nbf": int(time.time()) + 3600},
        {"nbf": "soon"},
    ],
    ids=[
        "no iat",
        "no exp",
        "iat a string",
        "iat a boolean",
        "exp a list",
        "exp past 2^63",
        "exp huge",
        "issued in the future",
        "not yet valid",
        "nbf a string",
    ],
)
def test_a_token_whose_times_are_missing_or_not_times_is_refused(
    verifier: TokenVerifier, changed: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(claims(**changed)))


@pytest.mark.parametrize(
    "changed",
    [
        {"role": ["lac"]},
        {"role": {"lac": True}},
        {"role": None},
        {"role": 7},
        {"role": "superuser"},
        {"sub": "ali\x00ce"},
        {"sub": "ali\ud800ce"},
        {"sub": 12345},
        {"sub": {"id": "alice"}},
        {"sub": ""},
        {"sub": "a" * 1000},
        {"organisation": ["QHM"]},
        {"organisation": {"ods": "QHM"}},
        {"organisation": "South\x00mead"},
        {"organisation": 42},
    ],
    ids=[
        "role a list",
        "role an object",
        "no role",
        "role a number",
        "role unknown",
        "NUL in sub",
        "lone surrogate in sub",
        "sub a number",
        "sub an object",
        "sub empty",
        "sub too long",
        "organisation a list",
        "organisation an object",
        "NUL in organisation",
        "organisation a number",
    ],
)
def test_a_claim_of_the_wrong_type_or_unstorable_is_refused_as_unauthenticated(
    verifier: TokenVerifier, changed: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(signed(claims(**changed)))


@pytest.mark.parametrize("organisation", [None, "", " "])
def test_a_partner_token_must_name_its_organisation(
    verifier: TokenVerifier, organisation: str | None
) -> None:
    with pytest.raises(ValueError, match="names its organisation"):
        ISSUER.mint("gp-sys", "partner_system", organisation)
    token = signed(claims(sub="gp-sys", role="partner_system", organisation=organisation))
    with pytest.raises(Unauthenticated, match="names no organisation"):
        verifier.verify(token)


def test_the_system_role_verifies_only_when_the_system_key_signed_it(verifier: TokenVerifier) -> None:
    caller = verifier.verify(SYSTEM.mint("audit-reconcile", "system", ttl=timedelta(minutes=5)))
    assert (caller.sub, caller.role) == ("audit-reconcile", "system")
    # The people key (the web application's, `leder token`'s) cannot make one...
    with pytest.raises(Unauthenticated, match="system key alone"):
        verifier.verify(signed(claims(role="system")))
    # ...nor the system key any other role, nor for the people issuer's name.
    with pytest.raises(Unauthenticated, match="system key alone"):
        verifier.verify(signed(claims(iss=SYSTEM_ISSUER), SYSTEM_KEY))
    with pytest.raises(Unauthenticated, match="issuer"):
        verifier.verify(signed(claims(role="system"), SYSTEM_KEY))


def test_a_service_given_no_system_key_accepts_no_system_token(trust: TokenTrust) -> None:
    without = TokenVerifier(TokenTrust(jwks_file=trust.jwks_file))
    with pytest.raises(Unauthenticated, match="does not trust"):
        without.verify(SYSTEM.mint("audit-reconcile", "system", ttl=timedelta(minutes=5)))


def test_a_symmetric_key_in_the_jwks_is_never_trusted(tmp_path: Path) -> None:
    secret = b"s" * 64
    oct_key = {
        "kty": "oct",
        "k": jwt.utils.base64url_encode(secret).decode(),
        "kid": "shared",
        "alg": "HS256",
    }
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [oct_key, public_jwk(PEOPLE_KEY.public_key())]}))
    verifier = TokenVerifier(TokenTrust(jwks_file=tmp_path / "jwks.json"))
    with pytest.raises(Unauthenticated, match="does not trust"):
        verifier.verify(jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "shared"}))
    assert verifier.verify(ISSUER.mint("alice", "lac")).sub == "alice"


async def test_an_es256_key_from_the_identity_provider_verifies() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    provider = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(provider.public_key(), as_dict=True) | {"kid": "idp-1"}
    keys = {"keys": [jwk]}
    verifier = TokenVerifier(TokenTrust(jwks_url="https://idp.example/jwks"), _serving(keys))
    token = jwt.encode(claims(), provider, algorithm="ES256", headers={"kid": "idp-1"})
    assert (await verifier.caller(token)).sub == "alice"


async def test_a_key_added_to_the_jwks_file_is_trusted_without_a_restart(
    tmp_path: Path, verifier: TokenVerifier, trust: TokenTrust
) -> None:
    successor = Ed25519PrivateKey.generate()
    token = TokenIssuer(successor).mint("alice", "lac")
    assert trust.jwks_file is not None
    trust.jwks_file.write_text(json.dumps(jwks(PEOPLE_KEY.public_key(), successor.public_key()), indent=2))
    assert (await verifier.caller(token)).sub == "alice"
    assert (await verifier.caller(ISSUER.mint("bob", "lac"))).sub == "bob"  # the old key, still listed


def _serving(document: dict[str, Any], fetched: list[str] | None = None) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if fetched is not None:
            fetched.append(str(request.url))
        return httpx.Response(200, json=document)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_a_fetched_jwks_is_cached_and_made_up_key_ids_do_not_refetch_it_each_time() -> None:
    fetched: list[str] = []
    client = _serving(jwks(PEOPLE_KEY.public_key()), fetched)
    verifier = TokenVerifier(TokenTrust(jwks_url="https://idp.example/jwks"), client)
    for _ in range(3):
        assert (await verifier.caller(ISSUER.mint("alice", "lac"))).sub == "alice"
    stranger = Ed25519PrivateKey.generate()
    for _ in range(20):
        with pytest.raises(Unauthenticated, match="does not trust"):
            await verifier.caller(signed(claims(), stranger))
    assert len(fetched) == 1


async def test_an_issuer_whose_keys_cannot_be_fetched_gets_a_401_that_says_so() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route to the identity provider", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    verifier = TokenVerifier(TokenTrust(jwks_url="https://idp.example/jwks"), client)
    with pytest.raises(IssuerKeysUnavailable, match="cannot be fetched"):
        await verifier.caller(ISSUER.mint("alice", "lac"))


def test_a_service_must_be_told_whose_keys_to_trust() -> None:
    with pytest.raises(RuntimeError, match="LEDER_TOKEN_JWKS_FILE"):
        TokenTrust.from_env({})
    trust = TokenTrust.from_env(
        {
            "LEDER_TOKEN_JWKS_URL": "https://idp.example/jwks",
            "LEDER_TOKEN_ISSUER": "https://idp.example",
            "LEDER_TOKEN_AUDIENCE": "leder-api",
            "LEDER_TOKEN_MAX_LIFETIME": "3600",
        }
    )
    assert (trust.jwks_url, trust.issuer, trust.audience) == (
        "https://idp.example/jwks",
        "https://idp.example",
        "leder-api",
    )
    assert trust.max_lifetime == timedelta(hours=1)


def test_garbage_is_refused(verifier: TokenVerifier) -> None:
    kid_a_list = hs256(claims(), b"k" * 64, {"kid": ["a", "b"]})
    for token in ("not-a-jwt", "a.b.c", "", "e30.e30.", datetime.now(UTC).isoformat(), kid_a_list):
        with pytest.raises(Unauthenticated):
            verifier.verify(token)


def test_leder_token_keys_makes_private_keys_for_the_issuers_and_public_halves_for_the_services(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "leder.cli", "token-keys", "--out", str(tmp_path / "keys")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    keys = tmp_path / "keys"
    for private in (TOKEN_SIGNING_KEY, SYSTEM_TOKEN_KEY):
        assert oct((keys / private).stat().st_mode & 0o777) == "0o600", private
    trust = TokenTrust(jwks_file=keys / TOKEN_JWKS, system_key_file=keys / SYSTEM_TOKEN_PUBLIC_KEY)
    issuer = TokenIssuer.from_file(keys / TOKEN_SIGNING_KEY)
    system = TokenIssuer.system_from_file(keys / SYSTEM_TOKEN_KEY)
    assert TokenVerifier(trust).verify(issuer.mint("alice", "lac")).role == "lac"
    assert TokenVerifier(trust).verify(system.mint("audit-reconcile", "system")).role == "system"
    # Made again: the same keys (a token already out stays good), their public halves rewritten.
    assert token_key_files(keys)[0].read_bytes() == private_pem(issuer.key)
    assert TokenVerifier(trust).verify(issuer.mint("bob", "lac")).sub == "bob"
