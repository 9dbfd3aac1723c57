"""Tests publish onto a service's topic as that service would: each record signed with the key of the
service whose topic it is (infra.signing), from the key set the test session made (tests/conftest.py)."""

import os
from pathlib import Path

from infra import signing

# The services' topics are `<prefix>leder.<service>.events`: the service whose topic it is signs.
_TOPIC_SUFFIX = ".events"


def topic_owner(topic: str) -> str | None:
    """The service whose events `topic` carries, whatever the test's prefix; None for other topics."""
    for service in signing.SERVICES:
        if topic == f"leder.{service}{_TOPIC_SUFFIX}" or topic.endswith(f".leder.{service}{_TOPIC_SUFFIX}"):
            return service
    return None


def signer(service: str, key_dir: Path | None = None) -> signing.Signer:
    """`service`'s signing key: the session's (LEDER_EVENT_SIGNING_KEY_DIR), or `key_dir`'s."""
    return signing.load_signer(service, key_dir)


def signed_headers(topic: str, value: bytes, key_dir: Path | None = None) -> list[tuple[str, bytes]]:
    """The headers that sign `value` on `topic` as its owner; none on a topic no service owns (the
    partner topic, a DLQ, a test's own)."""
    owner = topic_owner(topic)
    return [] if owner is None else signer(owner, key_dir).headers(topic, value)


def session_key_dir() -> Path:
    return Path(os.environ[signing.KEY_DIR_ENV])
