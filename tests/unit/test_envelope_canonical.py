"""An envelope's canonical text is written from its fields directly (Envelope.canonical_text), and the
event stores draft envelopes checking that text for unstorable characters instead of walking every
value (infra.eventstore._drafted). Signatures and audit leaf hashes are over these bytes: both must be
exactly what the generic route (events.canonical.canonical_bytes over the whole model) gives, and
refuse exactly what it refused."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from events import Actor, Envelope, canonical_bytes
from events.text import TEXT_CHECKED
from infra.eventstore import _drafted

# Any character at all, unstorable ones (NUL, lone surrogates), controls, U+2028 and astral ones too.
any_text = st.text(st.characters(), max_size=30)
storable_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)

plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**200) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=25,
)
# Values the generic route writes, or refuses, in its own way: floats, tuples, UUIDs, datetimes.
odd_json = st.recursive(
    plain_json
    | st.floats(allow_nan=True)
    | st.uuids()
    | st.datetimes(timezones=st.just(UTC))
    | st.tuples(st.integers()),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=-7, minutes=-30)), timezone(timedelta(hours=13))]
    ),
)
actors = st.builds(
    Actor,
    kind=st.sampled_from(["user", "partner", "system"]),
    id=storable_text.filter(bool),
    role=st.none() | storable_text.map(lambda t: t[:50]),
)


def fields_strategy(
    data: st.SearchStrategy[Any], text: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "event_id": st.uuids(),
            "event_type": st.sampled_from(["test.NoteRecorded", "case.Notified", "x.Y"]),
            "schema_version": st.integers(1, 5),
            "stream_id": text.filter(bool),
            "case_id": st.none() | st.uuids(),
            "stream_version": st.integers(1, 10**6),
            "source": text.filter(bool),
            "source_sequence": st.integers(1, 10**12),
            "occurred_at": times,
            "recorded_at": times,
            "actor": actors,
            "correlation_id": text.filter(bool),
            "causation_id": st.none() | text,
            "data": st.dictionaries(any_text, data, max_size=6),
            "store_epoch": st.none() | text.filter(bool),
        }
    )


def generic(envelope: Envelope) -> bytes:
    return canonical_bytes(envelope)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(fields_strategy(plain_json, storable_text))
def test_the_canonical_text_is_the_generic_routes_bytes(fields: dict[str, Any]) -> None:
    # Unstorable text in the data too: an envelope made without the check (a read of a checked
    # text) must still write as it always did.
    try:
        envelope = Envelope.model_validate(fields, context=TEXT_CHECKED)
    except ValidationError:
        return
    try:
        expected = generic(envelope)
    except ValueError:
        with pytest.raises(ValueError):
            envelope.canonical()
        return
    assert envelope.canonical() == expected
    assert envelope.canonical_text() == expected.decode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(fields_strategy(odd_json, storable_text))
def test_data_with_values_of_other_kinds_is_written_or_refused_as_before(fields: dict[str, Any]) -> None:
    try:
        envelope = Envelope.model_validate(fields)
    except ValidationError:
        return
    try:
        expected = generic(envelope)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc), match=str(exc)[:40].replace("(", r"\(").replace(")", r"\)")):
            envelope.canonical()
        return
    assert envelope.canonical() == expected


def test_known_forms_are_kept() -> None:
    at = datetime(999, 3, 1, 17, 0, 0, 5, tzinfo=timezone(timedelta(hours=5)))
    envelope = Envelope(
        event_id=UUID(int=1),
        event_type="test.NoteRecorded",
        schema_version=2,
        stream_id="s\u2028\U0001f600",
        case_id=UUID(int=2),
        stream_version=3,
        source="src",
        source_sequence=4,
        occurred_at=at,
        recorded_at=at,
        actor=Actor(kind="user", id="é", role=None),
        correlation_id='c"\\\n\x1f\x7f',
        causation_id=None,
        data={"b": [1, True, None, {"z": "\t", "a": 2**70}], "a": ""},
    )
    assert envelope.canonical() == generic(envelope)
    assert (
        envelope.canonical()
        == (
            '{"actor":{"id":"é","kind":"user","role":null},"case_id":"00000000-0000-0000-0000-000000000002",'
            '"causation_id":null,"correlation_id":"c\\"\\\\\\n\\u001f\x7f","data":{"a":"","b":[1,true,null,'
            '{"a":1180591620717411303424,"z":"\\t"}]},"event_id":"00000000-0000-0000-0000-000000000001",'
            '"event_type":"test.NoteRecorded","occurred_at":"0999-03-01T12:00:00.000005Z",'
            '"recorded_at":"0999-03-01T12:00:00.000005Z","schema_version":2,"source":"src",'
            '"source_sequence":4,"stream_id":"s\u2028\U0001f600","stream_version":3}'
        ).encode()
    )
    with_epoch = envelope.model_copy(update={"store_epoch": "e1"})
    assert with_epoch.canonical() == generic(with_epoch)
    assert with_epoch.canonical().endswith(
        b'"source_sequence":4,"store_epoch":"e1","stream_id":"s\xe2\x80\xa8\xf0\x9f\x98\x80","stream_version":3}'
    )


def old_draft(fields: dict[str, Any]) -> tuple[Envelope, str]:
    """How the stores drafted an envelope before: validated in full, then the generic route."""
    draft = Envelope(**fields)
    return draft, canonical_bytes(draft).decode()


def outcome(draft: Any, fields: dict[str, Any]) -> Any:
    try:
        envelope, text = draft(fields)
    except ValidationError as exc:
        return ("refused", exc.errors(include_url=False, include_input=False))
    except (TypeError, ValueError) as exc:
        return (type(exc), str(exc))
    return (envelope, text)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(fields_strategy(plain_json | odd_json, any_text | st.text(max_size=120)))
def test_a_draft_is_made_or_refused_as_before(fields: dict[str, Any]) -> None:
    # NULs, lone surrogates, floats, fields too long: the same envelope and text, or the same refusal.
    assert outcome(_drafted, fields) == outcome(old_draft, fields)


@pytest.mark.parametrize(
    "data",
    [{"t": "a\x00b"}, {"t": "\ud800"}, {"\x00": 1}, {"t": 1.5, "u": "\x00"}, {"t": "\\u0000"}, {"t": [0.5]}],
)
def test_unstorable_and_odd_data_are_refused_as_before(data: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "event_id": UUID(int=1),
        "event_type": "test.NoteRecorded",
        "schema_version": 2,
        "stream_id": "s",
        "case_id": None,
        "stream_version": 1,
        "source": "src",
        "source_sequence": 1,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "recorded_at": datetime(2026, 1, 1, tzinfo=UTC),
        "actor": Actor.system("x"),
        "correlation_id": "c",
        "causation_id": None,
        "data": data,
        "store_epoch": None,
    }
    assert outcome(_drafted, fields) == outcome(old_draft, fields)
