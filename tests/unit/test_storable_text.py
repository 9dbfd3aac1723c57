"""Text no database can store (a NUL, a lone surrogate) is refused in every message consumed, naming
the field it is in: the envelope (any field, the data at any depth, the actor) and the partner
notification."""

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from events import Actor, Envelope
from events.partner import InvalidNotification, parse_notification
from events.text import refuse_unstorable, unstorable
from tests.support.notifications import notification

ENVELOPE: dict[str, Any] = {
    "event_id": "6f1c2a94-3b7e-4d0a-9c55-1e2f3a4b5c6d",
    "event_type": "review.NoteAdded",
    "schema_version": 1,
    "stream_id": "6f1c2a94-3b7e-4d0a-9c55-1e2f3a4b5c6d",
    "case_id": "6f1c2a94-3b7e-4d0a-9c55-1e2f3a4b5c6d",
    "stream_version": 3,
    "source": "review",
    "source_sequence": 12,
    "occurred_at": "2026-10-05T09:00:00Z",
    "recorded_at": "2026-10-05T09:00:00Z",
    "actor": {"kind": "user", "id": "rae", "role": "reviewer"},
    "correlation_id": "c-1",
    "data": {"text": "spoke to the ward manager", "sealed": {"parts": ["a", "b"]}},
}


def refused_fields(raw: str | bytes) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as refused:
        Envelope.from_bytes(raw)
    return [
        (".".join(str(p) for p in e["loc"]), e["type"])
        for e in refused.value.errors()
        if e["type"] == "unstorable_text"
    ]


def with_(path: str, value: Any) -> dict[str, Any]:
    envelope = json.loads(json.dumps(ENVELOPE))
    *parents, last = path.split(".")
    at = envelope
    for part in parents:
        at = at[int(part)] if isinstance(at, list) else at[part]
    if isinstance(at, list):
        at[int(last)] = value
    else:
        at[last] = value
    return envelope


@pytest.mark.parametrize(
    "path",
    ["data.text", "data.sealed.parts.1", "actor.id", "actor.role", "correlation_id", "stream_id"],
)
def test_a_nul_anywhere_in_an_envelope_is_refused_naming_its_field(path: str) -> None:
    raw = json.dumps(with_(path, "a\u0000b"))
    assert refused_fields(raw) == [(path, "unstorable_text")]
    assert refused_fields(raw.encode()) == [(path, "unstorable_text")]


def test_a_nul_in_the_name_of_a_data_field_is_refused() -> None:
    raw = json.dumps(with_("data", {"te\u0000xt": "x"}))
    assert refused_fields(raw) == [("data.te\\x00xt", "unstorable_text")]


def test_text_that_only_looks_like_the_escape_is_taken() -> None:
    raw = json.dumps(with_("data.text", "C:\\u0000 is not a NUL"))
    assert Envelope.from_bytes(raw).data["text"] == "C:\\u0000 is not a NUL"


def test_an_envelope_or_actor_made_in_code_is_refused_too() -> None:
    with pytest.raises(ValidationError, match="unstorable_text"):
        Actor(kind="user", id="a\x00b")
    with pytest.raises(ValidationError) as refused:
        Envelope.model_validate(with_("data.text", "lone \ud800 surrogate"))
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [(("data", "text"), "unstorable_text")]


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_text_with_a_nul_in_it_is_refused_and_any_without_is_taken(before: str, after: str) -> None:
    assert refused_fields(json.dumps(with_("data.text", f"{before}\x00{after}"))) == [
        ("data.text", "unstorable_text")
    ]
    clean = (before + after).replace("\x00", "")
    assert Envelope.from_bytes(json.dumps(with_("data.text", clean))).data["text"] == clean


@pytest.mark.parametrize(
    "field",
    [
        "notifier.organisation",
        "notifier.name",
        "person.given_name",
        "person.family_name",
        "death.cause_of_death",
        "death.place_of_death_organisation",
        "circumstances.concerns_details",
        "next_of_kin.relationship",
    ],
)
def test_a_nul_in_a_partner_notification_is_refused_naming_its_field(field: str) -> None:
    body = notification(**{field: "Southmead\u0000Hospital"})
    with pytest.raises(InvalidNotification) as refused:
        parse_notification(json.dumps(body))
    assert [(e.field, e.type) for e in refused.value.errors] == [(field, "unstorable_text")]


def test_a_nul_in_a_partner_notifications_list_is_refused_naming_the_item() -> None:
    body = notification()
    body["organisations_involved"] = ["Sirona Care", "North Bristol\u0000NHS Trust"]
    with pytest.raises(InvalidNotification) as refused:
        parse_notification(json.dumps(body))
    assert [e.field for e in refused.value.errors] == ["organisations_involved.1"]


def test_what_is_unstorable() -> None:
    assert unstorable("Zoë O'Brien 😀") is None
    assert "NUL" in (unstorable("\x00") or "")
    assert "surrogate" in (unstorable("\udc00") or "")
    assert refuse_unstorable({"a": ["ok", 1, None]}, "M") == {"a": ["ok", 1, None]}
