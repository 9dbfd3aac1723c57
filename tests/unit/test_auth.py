from datetime import UTC, datetime, timedelta

import jwt
import pytest

from infra.auth import ISSUER, Unauthenticated, mint_token, verify_token

SECRET = "k" * 64


def test_a_minted_token_verifies_to_its_caller() -> None:
    caller = verify_token(SECRET, mint_token(SECRET, "alice", "lac", organisation="BNSSG ICB"))
    assert (caller.sub, caller.role, caller.organisation) == ("alice", "lac", "BNSSG ICB")
    assert caller.actor.kind == "user"
    partner = verify_token(SECRET, mint_token(SECRET, "gp-sys", "partner_system", "L81001"))
    assert (partner.actor.kind, partner.organisation) == ("partner", "L81001")
    # An organisation is optional for the people who work in LeDeR.
    assert verify_token(SECRET, mint_token(SECRET, "alice", "lac")).organisation is None


def test_an_unknown_role_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        mint_token(SECRET, "alice", "admin")


def test_an_expired_token_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, mint_token(SECRET, "alice", "lac", ttl=timedelta(seconds=-5)))


@pytest.mark.parametrize("organisation", [None, "", " "])
def test_a_partner_token_must_name_its_organisation(organisation: str | None) -> None:
    with pytest.raises(ValueError, match="names its organisation"):
        mint_token(SECRET, "gp-sys", "partner_system", organisation)
    now = datetime.now(UTC)
    claims: dict[str, object] = {"sub": "gp-sys", "role": "partner_system", "iss": ISSUER, "iat": now}
    claims |= {"exp": now + timedelta(minutes=5)}
    if organisation is not None:
        claims["organisation"] = organisation
    with pytest.raises(Unauthenticated, match="names no organisation"):
        verify_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_an_organisation_that_is_not_a_name_is_refused() -> None:
    now = datetime.now(UTC)
    claims = {"sub": "a", "role": "lac", "iss": ISSUER, "iat": now, "exp": now + timedelta(minutes=5)}
    with pytest.raises(Unauthenticated, match="not a name"):
        verify_token(SECRET, jwt.encode(claims | {"organisation": ["QHM"]}, SECRET, algorithm="HS256"))
