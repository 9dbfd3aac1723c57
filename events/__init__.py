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
