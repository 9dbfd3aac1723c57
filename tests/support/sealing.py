"""A text sealed as another service would seal it, for tests that publish that service's events:
the consumer under test holds no key for it, as in the running system."""

import os

from events.sealing import Sealed
from infra.sealing import seal

_ELSEWHERE = os.urandom(32)


def sealed(text: str, key_id: str = "another-service-case") -> Sealed:
    return seal(_ELSEWHERE, key_id, text.encode())
