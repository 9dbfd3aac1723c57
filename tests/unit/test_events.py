"""The shared language: canonical JSON, the envelope, the payload registry and published schemas."""

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events import Actor, Envelope, UnknownEventType, canonical_bytes, decode_payload
from events.jsonschema import SCHEMA_DIR, render, schemas
from tests.support.events import CounterIncremented, NoteRecorded

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_one_byte_string_per_value(value: object) -> None:
    once = canonical_bytes(value)
    assert canonical_bytes(json.loads(once)) == once
    assert b"\n" not in once and b": " not in once


def test_canonical_json_sorts_keys_and_writes_utc() -> None:
    tz = timezone(timedelta(hours=5))
    value = {"b": 1, "a": datetime(2026, 3, 1, 17, 0, tzinfo=tz), "u": UUID(int=1)}
    assert canonical_bytes(value) == (
        b'{"a":"2026-03-01T12:00:00.000000Z","b":1,"u":"00000000-0000-0000-0000-000000000001"}'
    )


@pytest.mark.parametrize("value", [1.5, {"x": [0.1]}, datetime(2026, 1, 1)])
def test_canonical_json_refuses_values_with_more_than_one_form(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        canonical_bytes(value)


def make_envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "event_id": uuid4(),
        "event_type": "test.NoteRecorded",
        "schema_version": 2,
        "stream_id": "c1",
        "case_id": None,
        "stream_version": 1,
        "source": "test",
        "source_sequence": 1,
        "occurred_at": datetime(2026, 1, 1, tzinfo=UTC),
        "recorded_at": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        "actor": Actor(kind="user", id="alice", role="lac"),
        "correlation_id": "c",
        "causation_id": None,
        "data": {"text": "hello", "author": "a"},
    }
    return Envelope.model_validate(fields | overrides)


# Any text a database can store: a NUL is refused (tests/unit/test_storable_text.py).
@given(
    st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=200),
    st.datetimes(timezones=st.just(UTC)),
)
def test_an_envelope_round_trips_to_the_same_bytes(text: str, when: datetime) -> None:
    envelope = make_envelope(data={"text": text, "author": "a"}, occurred_at=when)
    raw = envelope.canonical()
    assert Envelope.from_bytes(raw) == envelope
    assert Envelope.from_bytes(raw).canonical() == raw


def test_envelope_times_are_kept_in_utc() -> None:
    local = datetime(2026, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    assert make_envelope(occurred_at=local).occurred_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_type", "no-namespace"),
        ("schema_version", 0),
        ("stream_version", 0),
        ("source_sequence", 0),
        ("occurred_at", datetime(2026, 1, 1)),
        ("actor", {"kind": "robot", "id": "x"}),
        ("surprise", 1),
    ],
)
def test_an_envelope_with_a_bad_field_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        make_envelope(**{field: value})
    assert refused.value.errors()[0]["loc"][0] == field


def test_reading_an_old_version_upcasts_it() -> None:
    assert decode_payload("test.NoteRecorded", 1, {"note": "old"}) == NoteRecorded(
        text="old", author="unknown"
    )
    assert make_envelope(schema_version=1, data={"note": "x"}).payload() == NoteRecorded(text="x")


def test_unknown_types_and_future_versions_are_refused() -> None:
    with pytest.raises(UnknownEventType):
        decode_payload("test.Nothing", 1, {})
    with pytest.raises(UnknownEventType):
        decode_payload("test.CounterIncremented", 2, {"by": 1})


def test_payloads_reject_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CounterIncremented.model_validate({"by": 1, "extra": True})


def test_the_published_json_schemas_are_current() -> None:
    """Run `leder schemas` after changing an event, and commit what it writes."""
    wanted = schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(wanted), "events/schemas/ is stale: run `leder schemas`"
    for name, schema in wanted.items():
        assert on_disk[name] == render(schema), f"events/schemas/{name} is stale: run `leder schemas`"
    assert all(not name.startswith("test.") for name in wanted)
