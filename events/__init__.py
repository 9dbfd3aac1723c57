"""The shared language of the LeDeR services: the envelope, payload registry and canonical JSON.

Services and partner systems share only this package.
"""

from events.canonical import canonical_bytes
from events.envelope import Actor, Envelope
from events.registry import (
    EventPayload,
    UnknownEventType,
    decode_payload,
    event,
    registered_events,
    upcaster,
)

__all__ = [
    "Actor",
    "Envelope",
    "EventPayload",
    "UnknownEventType",
    "canonical_bytes",
    "decode_payload",
    "event",
    "registered_events",
    "upcaster",
]

# Payloads register themselves when their module is imported. Importing every event module here makes
# the registry whole in every process, whatever its own code happens to name: a consumer must know
# every event on the topics it reads (the governance service observes allocation events but names
# none of them, and so dead-lettered them all).
from events import allocation, audit, governance, notification, review  # noqa: F401
