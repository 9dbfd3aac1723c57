"""Text the databases can store, checked at every door a message comes in by.

PostgreSQL's `text` and `jsonb` refuse the NUL character (U+0000), and no UTF-8 encoding holds a lone
surrogate (U+D800 to U+DFFF), which a Python string may carry though JSON on the wire may not. A
message holding either would be refused by the database only when a consumer applies its effects,
and the consumer would try it again and again. So every message a service consumes (the event
envelope, its actor, and the partner notification) is checked here first, and such text is refused
as invalid input that names the field it is in: a 422 at an HTTP door, the DLQ at a Kafka one.
"""

from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Location = tuple[str | int, ...]

UNSTORABLE = "unstorable_text"
# A validation context saying the input's text is known to be storable (json_may_hold_unstorable).
TEXT_CHECKED: dict[str, bool] = {"text_checked": True}


def json_may_hold_unstorable(raw: bytes | str) -> bool:
    """Whether JSON text can decode to an unstorable string. JSON writes a NUL only as the escape
    \\u0000 (a raw control character is invalid JSON) and a lone surrogate not at all (pydantic's
    parser refuses one), so JSON without that escape holds neither: a search in C, where the walk
    over every string would cost more than the rest of an envelope's validation."""
    return (b"\\u0000" in raw) if isinstance(raw, bytes) else ("\\u0000" in raw)


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None if it can."""
    if "\x00" in text:
        return "contains a NUL character (U+0000), which no stored text may hold"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (U+D800 to U+DFFF), which is not a character"
    return None


def unstorable_fields(value: Any, at: Location = ()) -> list[tuple[Location, str]]:
    """Each string in `value` (JSON-like: dicts, lists, strings, the keys of dicts too) that cannot
    be stored, with where it is and why."""
    found: list[tuple[Location, str]] = []
    if isinstance(value, str):
        why = unstorable(value)
        if why is not None:
            found.append((at, why))
    elif isinstance(value, dict):
        for key, item in value.items():
            where = (*at, key) if isinstance(key, str | int) else at
            if isinstance(key, str) and (why := unstorable(key)) is not None:
                found.append(((*at, key), f"its name {why}"))
                continue
            found += unstorable_fields(item, where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found += unstorable_fields(item, (*at, index))
    return found


def refuse_unstorable(value: Any, title: str) -> Any:
    """`value` itself if every string in it can be stored; else a ValidationError with one error
    (of type `unstorable_text`) per string that cannot, located where it is.

    For a model validator: pydantic keeps the locations of a ValidationError raised in one, so each
    error names its field as any other validation error does."""
    found = unstorable_fields(value) if _may_hold_unstorable(value) else []
    if found:
        raise ValidationError.from_exception_data(
            title,
            [
                InitErrorDetails(
                    type=PydanticCustomError(UNSTORABLE, why),
                    loc=tuple(_storable_key(part) for part in at),
                    input="(not shown)",
                )
                for at, why in found
            ],
        )
    return value


def _may_hold_unstorable(value: Any) -> bool:
    """Whether any string in `value` is unstorable: a tight pass (an event's envelope is checked on
    every read), before the walk that says where."""
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item or not (item.isascii() or _encodes(item)):
                return True
        elif kind is dict:
            pending += item.keys()
            pending += item.values()
        elif kind is list or kind is tuple:
            pending += item
        elif isinstance(item, str | dict | list | tuple):
            return True  # a subclass: let the walk judge it
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _storable_key(part: str | int) -> str | int:
    # A location is reported (in a DLQ header, a problem's errors) and may be stored: never let it
    # carry the character it reports.
    if isinstance(part, int):
        return part
    return part.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
