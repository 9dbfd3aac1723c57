"""infra.signing: what a signature covers, the pinned key set, and each reason a record is refused."""

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra import signing
from infra.inbox import Unprocessable
from infra.signing import (
    BadKeySet,
    EventVerifier,
    PinnedKeys,
    Signer,
    SigningKeyMissing,
    generate_key_set,
    jwk,
    key_id,
    parse_key_set,
)

PREFIX = "t1."
ALLOCATION_TOPIC = f"{PREFIX}leder.allocation.events"
ENVELOPE = json.dumps({"source": "allocation", "event_type": "allocation.ReviewerAllocated"}).encode()


@pytest.fixture
def key_set(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key_set(tmp_path / "events")


def headers_of(pairs: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode() for k, v in pairs}


def reason(verifier: EventVerifier, topic: str, value: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(Unprocessable) as refused:
        verifier.check(topic, value, headers)
    [only] = refused.value.reasons
    assert only["field"] == signing.SIGNATURE_HEADER
    return str(only["type"])


def test_a_key_set_has_each_services_private_key_for_its_owner_alone_and_every_public_key_pinned(
    key_set: tuple[Path, Path],
) -> None:
    key_dir, public_keys = key_set
    pinned = signing.read_key_set(public_keys)
    for service in signing.SERVICES:
        path = key_dir / f"{service}.pem"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        signer = signing.load_signer(service, key_dir)
        assert pinned[signer.key_id].service == service
    assert len(pinned) == len(signing.SERVICES)
    assert generate_key_set(key_dir) == key_set  # made once: again, the same keys
    assert signing.read_key_set(public_keys).keys() == pinned.keys()


def test_a_key_id_is_the_rfc_7638_thumbprint_of_the_key() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    document = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "?", "leder_service": "review"}]}
    with pytest.raises(BadKeySet, match="kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"):
        parse_key_set(document)


def test_a_record_signed_by_its_topics_service_verifies(key_set: tuple[Path, Path]) -> None:
    key_dir, public_keys = key_set
    signer = signing.load_signer("allocation", key_dir)
    verifier = EventVerifier(PinnedKeys(public_keys), PREFIX)
    verifier.check(ALLOCATION_TOPIC, ENVELOPE, headers_of(signer.headers(ALLOCATION_TOPIC, ENVELOPE)))


def test_each_forgery_is_refused_with_its_reason(key_set: tuple[Path, Path]) -> None:
    key_dir, public_keys = key_set
    verifier = EventVerifier(PinnedKeys(public_keys), PREFIX)
    allocation = signing.load_signer("allocation", key_dir)
    review = signing.load_signer("review", key_dir)
    stranger = Signer("allocation", Ed25519PrivateKey.generate())
    good = headers_of(allocation.headers(ALLOCATION_TOPIC, ENVELOPE))

    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, {}) == "signature_missing"
    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, {signing.KEY_ID_HEADER: allocation.key_id}) == (
        "signature_missing"
    )
    unknown = headers_of(stranger.headers(ALLOCATION_TOPIC, ENVELOPE))
    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, unknown) == "unknown_signing_key"
    by_review = headers_of(review.headers(ALLOCATION_TOPIC, ENVELOPE))
    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, by_review) == "signing_key_of_another_service"
    altered = ENVELOPE.replace(b"ReviewerAllocated", b"ReviewerAllocatee")
    assert reason(verifier, ALLOCATION_TOPIC, altered, good) == "bad_signature"
    garbled = good | {signing.SIGNATURE_HEADER: "not base64 at all!"}
    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, garbled) == "bad_signature"
    # The allocation service's own record, replayed onto the review service's topic: its signature
    # covers the topic, and the key is not the review service's either.
    review_topic = f"{PREFIX}leder.review.events"
    assert reason(verifier, review_topic, ENVELOPE, good) == "signing_key_of_another_service"
    # On a topic of the same name in another environment (another prefix): the signature names the topic.
    other_verifier = EventVerifier(PinnedKeys(public_keys), "t2.")
    assert reason(other_verifier, "t2.leder.allocation.events", ENVELOPE, good) == "bad_signature"
    # Signed by the allocation service, but naming another source: not what its topic carries.
    lying = json.dumps({"source": "review"}).encode()
    signed_lie = headers_of(allocation.headers(ALLOCATION_TOPIC, lying))
    assert reason(verifier, ALLOCATION_TOPIC, lying, signed_lie) == "source_not_its_topic"
    assert reason(verifier, f"{PREFIX}leder.partner.death-notifications", ENVELOPE, good) == (
        "not_a_service_topic"
    )


def test_rotation_an_older_pinned_key_still_verifies_and_an_unpinned_one_is_refused(
    key_set: tuple[Path, Path], tmp_path: Path
) -> None:
    key_dir, public_keys = key_set
    old = signing.load_signer("allocation", key_dir)
    new = Signer("allocation", signing.write_private_key(tmp_path / "rotated" / "allocation.pem"))
    verifier = EventVerifier(PinnedKeys(public_keys), PREFIX)
    # Not pinned yet: refused. Pinned (the file changed; no restart): verifies, and so does the old key.
    by_new = headers_of(new.headers(ALLOCATION_TOPIC, ENVELOPE))
    assert reason(verifier, ALLOCATION_TOPIC, ENVELOPE, by_new) == "unknown_signing_key"
    signing.add_to_key_set(public_keys, "allocation", new.private_key.public_key())
    verifier.check(ALLOCATION_TOPIC, ENVELOPE, by_new)
    by_old = headers_of(old.headers(ALLOCATION_TOPIC, ENVELOPE))
    verifier.check(ALLOCATION_TOPIC, ENVELOPE, by_old)
    # The old key unpinned (retired): what it signs is refused.
    document = json.loads(public_keys.read_text())
    document["keys"] = [k for k in document["keys"] if k["kid"] != old.key_id]
    public_keys.write_text(json.dumps(document))
    assert reason(EventVerifier(PinnedKeys(public_keys), PREFIX), ALLOCATION_TOPIC, ENVELOPE, by_old) == (
        "unknown_signing_key"
    )


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda k: k | {"kid": "made-up"}, "thumbprint"),
        (lambda k: k | {"leder_service": "mallory"}, "no known service"),
        (lambda k: k | {"crv": "X25519"}, "Ed25519"),
        (lambda k: k | {"use": "enc"}, "not a signing key"),
        (lambda k: k | {"x": "AAAA"}, "not an Ed25519 public key"),
    ],
)
def test_a_pinned_key_that_is_not_what_it_says_refuses_the_whole_file(
    change: Callable[[dict[str, str]], dict[str, str]], complaint: str
) -> None:
    entry = jwk("review", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(BadKeySet, match=complaint):
        parse_key_set({"keys": [change(entry)]})


def test_a_service_without_its_key_or_the_pinned_keys_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(signing.KEY_DIR_ENV, raising=False)
    monkeypatch.delenv(signing.PUBLIC_KEYS_ENV, raising=False)
    with pytest.raises(SigningKeyMissing, match=signing.KEY_DIR_ENV):
        signing.load_signer("review")
    with pytest.raises(SigningKeyMissing, match=signing.PUBLIC_KEYS_ENV):
        signing.verifier_from_env()
    monkeypatch.setenv(signing.KEY_DIR_ENV, str(tmp_path))
    with pytest.raises(SigningKeyMissing, match=r"review\.pem"):
        signing.load_signer("review")


def test_the_signature_is_the_same_for_the_same_record_so_a_republished_one_verifies(
    key_set: tuple[Path, Path],
) -> None:
    signer = signing.load_signer("review", key_set[0])
    assert signer.sign("leder.review.events", b"{}") == signer.sign("leder.review.events", b"{}")
    assert key_id(signer.private_key.public_key()) == signer.key_id
    assert os.environ.get(signing.KEY_DIR_ENV)  # the session's key set (tests/conftest.py) is in place


def test_leder_events_keygen_pins_a_rotated_key_beside_the_old_one_and_never_overwrites_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from leder.cli import main

    pinned = tmp_path / "public-keys.json"
    first = ["events", "keygen", "--service", "review", "--out", str(tmp_path / "k1")]
    assert main([*first, "--public-keys", str(pinned)]) == 0
    assert (
        main(
            [
                "events",
                "keygen",
                "--service",
                "review",
                "--out",
                str(tmp_path / "k2"),
                "--public-keys",
                str(pinned),
            ]
        )
        == 0
    )
    keys = signing.read_key_set(pinned)
    assert {signing.load_signer("review", tmp_path / k).key_id for k in ("k1", "k2")} == keys.keys()
    assert {k.service for k in keys.values()} == {"review"}
    capsys.readouterr()
    assert main(first) == 1  # the key is there already: a rotation writes a new one elsewhere
    assert "exists" in capsys.readouterr().err
