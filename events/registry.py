"""Event payloads, registered by type and version; older versions are upcast on read."""

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
    """Register a function lifting `event_type` data from `from_version` to `from_version + 1`."""

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
    version = schema_version
    while version < cls.schema_version:
        lift = _upcasters.get((event_type, version))
        if lift is None:
            raise UnknownEventType(event_type, version)
        data = lift(data)
        version += 1
    return cls.model_validate(data)


def registered_events() -> dict[str, type[EventPayload]]:
    return dict(_payloads)
