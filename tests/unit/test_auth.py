from datetime import timedelta

import pytest

from infra.auth import Unauthenticated, mint_token, verify_token

SECRET = "k" * 64


def test_a_minted_token_verifies_to_its_caller() -> None:
    caller = verify_token(SECRET, mint_token(SECRET, "alice", "lac", organisation="BNSSG ICB"))
    assert (caller.sub, caller.role, caller.organisation) == ("alice", "lac", "BNSSG ICB")
    assert caller.actor.kind == "user"
    assert verify_token(SECRET, mint_token(SECRET, "gp-sys", "partner_system")).actor.kind == "partner"


def test_an_unknown_role_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        mint_token(SECRET, "alice", "admin")


def test_an_expired_token_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, mint_token(SECRET, "alice", "lac", ttl=timedelta(seconds=-5)))
