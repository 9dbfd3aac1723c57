"""Valid event data around the few fields a test is about.

Reports, pages and the replay read every event through the registry, as the payload of its type
(events/registry.py), so a test that writes an event's data straight into a table gives all of it:
`complete` keeps what the test gives (nested models too, such as a case's `facts`) and fills every
other required field with a plain value of its type, then checks the result is a valid payload."""

import types
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID, uuid4

from pydantic import BaseModel

from events.jsonschema import load_catalogue
from events.registry import payload_class

PLACEHOLDER_DATE = date(2026, 1, 1)


def complete(
    event_type: str, given: dict[str, Any] | None = None, case_id: UUID | None = None
) -> dict[str, Any]:
    """The data of a valid `event_type` (its current version), as JSON would carry it; its `case_id`
    (where the type has one and the test gives none) the case the test records it for."""
    load_catalogue()
    cls = payload_class(event_type)
    given = dict(given or {})
    if case_id is not None and "case_id" in cls.model_fields:
        given.setdefault("case_id", str(case_id))
    data = _filled(cls, given)
    cls.model_validate(data)  # a test that gives a wrong value hears about it here
    return data


def _filled(model: type[BaseModel], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(given)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key in out:
            inner = _model(info.annotation)
            if inner is not None and isinstance(out[key], dict):
                out[key] = _filled(inner, out[key])
            continue
        if info.is_required():
            out[key] = _value(info.annotation)
    return out


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _value(annotation: Any) -> Any:
    """A plain JSON value of the type: the first choice of a Literal, None where None is allowed."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _value(get_args(annotation)[0])
    if origin is Literal:
        return get_args(annotation)[0]
    if origin in (Union, types.UnionType):
        choices = get_args(annotation)
        return None if type(None) in choices else _value(choices[0])
    if origin in (list, set, frozenset, tuple):
        return []
    if origin is dict:
        return {}
    if (inner := _model(annotation)) is not None:
        return _filled(inner, {})
    plain: dict[Any, Any] = {
        UUID: lambda: str(uuid4()),
        date: PLACEHOLDER_DATE.isoformat,
        datetime: lambda: datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        str: lambda: "x",
        int: lambda: 1,
        float: lambda: 1.0,
        bool: lambda: False,
    }
    if annotation in plain:
        return plain[annotation]()
    raise TypeError(f"no placeholder for {annotation!r}: give the field in the test")
