"""Event payloads, registered by type and version; older versions are upcast on read.

Whatever reads an event (its own service's stream, another service's events it observed, the audit
log) decodes it here with the schema version it was written in, and gets the payload of the version
the code knows. Upcasters are kept by message type, so versioned messages that are not events (the
partner notification, events/partner.py) are lifted the same way with `upcast`."""

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict


class EventPayload(BaseModel):
    """The data of one event. Subclasses are registered with @event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int]


class UnknownEventType(LookupError):
    def __init__(self, event_type: str, schema_version: int) -> None:
        super().__init__(f"unknown event type {event_type!r} version {schema_version}")
        self.event_type = event_type
        self.schema_version = schema_version


P = TypeVar("P", bound=type[EventPayload])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_payloads: dict[str, type[EventPayload]] = {}
_upcasters: dict[tuple[str, int], Upcaster] = {}


def event(event_type: str, version: int = 1) -> Callable[[P], P]:
    """Register the current version of a payload. Only the latest version has a class; older versions
    are dicts that upcasters lift one version at a time."""

    def register(cls: P) -> P:
        existing = _payloads.get(event_type)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise ValueError(
                f"{event_type} is registered twice ({existing.__qualname__}, {cls.__qualname__})"
            )
        cls.event_type = event_type
        cls.schema_version = version
        _payloads[event_type] = cls
        return cls

    return register


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function lifting `event_type` data from `from_version` to `from_version + 1`.
    `event_type` may also name a versioned message that is not an event (see `upcast`)."""

    def register(fn: Upcaster) -> Upcaster:
        _upcasters[(event_type, from_version)] = fn
        return fn

    return register


def payload_class(event_type: str, schema_version: int = 0) -> type[EventPayload]:
    cls = _payloads.get(event_type)
    if cls is None or schema_version > cls.schema_version:
        raise UnknownEventType(event_type, schema_version)
    return cls


def decode_payload(event_type: str, schema_version: int, data: dict[str, Any]) -> EventPayload:
    """Validate `data` as the latest version of `event_type`, upcasting older versions first."""
    cls = payload_class(event_type, schema_version)
    return cls.model_validate(upcast(event_type, schema_version, cls.schema_version, data))


def upcast(message_type: str, from_version: int, to_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """`data` of `message_type` lifted from `from_version` to `to_version`, one version at a time;
    UnknownEventType if a step has no upcaster."""
    version = from_version
    while version < to_version:
        lift = _upcasters.get((message_type, version))
        if lift is None:
            raise UnknownEventType(message_type, version)
        data = lift(data)
        version += 1
    return data


def can_upcast(message_type: str, from_version: int, to_version: int) -> bool:
    return all((message_type, v) in _upcasters for v in range(from_version, to_version))


def registered_events() -> dict[str, type[EventPayload]]:
    return dict(_payloads)
