"""What a consumer's parser refuses, and what it decodes (infra.inbox.parse_envelope, envelope_parser):
an event of a type the consumer acts on is validated whole and decoded once; one of a type it only
takes as read is not decoded, but must still be a valid envelope of a type (and version) this code
can read."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from events import Actor, Envelope, EventPayload
from events.allocation import CaseAwaitingAllocation
from events.notification import CaseOpened
from infra import inbox
from infra.inbox import Unprocessable, envelope_parser, parse_envelope, payload_of

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
CASE = UUID(int=7)
AWAITING = {
    "case_id": str(CASE),
    "notified_on": "2026-11-01",
    "deadline": "2027-05-01",
    "review_type": "initial",
    "focused_reasons": [],
    "organisations_involved": ["Southmead Hospital"],
}


def record(event_type: str, data: dict[str, Any], schema_version: int = 1) -> bytes:
    return Envelope(
        event_id=uuid4(),
        event_type=event_type,
        schema_version=schema_version,
        stream_id=str(CASE),
        case_id=CASE,
        stream_version=1,
        source="allocation",
        source_sequence=1,
        occurred_at=AT,
        recorded_at=AT,
        actor=Actor.system("allocation"),
        correlation_id="c",
        data=data,
    ).canonical()


def acts_on_awaiting(cls: type[EventPayload]) -> bool:
    return issubclass(cls, CaseAwaitingAllocation)


def reasons(raised: pytest.ExceptionInfo[Unprocessable]) -> list[str]:
    return [r["type"] for r in raised.value.reasons]


def test_a_type_acted_on_is_decoded_once_and_its_payload_handed_over() -> None:
    parse = envelope_parser(acts_on_awaiting)
    envelope = parse(record(CaseAwaitingAllocation.event_type, AWAITING))
    payload = payload_of(envelope)
    assert isinstance(payload, CaseAwaitingAllocation)
    assert payload == envelope.payload()
    assert payload_of(envelope) == payload  # asked again: decoded again, the same


def test_an_invalid_payload_of_a_type_acted_on_is_refused_naming_the_field() -> None:
    parse = envelope_parser(acts_on_awaiting)
    with pytest.raises(Unprocessable) as raised:
        parse(record(CaseAwaitingAllocation.event_type, {**AWAITING, "deadline": "not a date"}))
    assert [r["field"] for r in raised.value.reasons] == ["deadline"]


def test_a_type_only_taken_as_read_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[Envelope] = []
    monkeypatch.setattr(inbox, "_decode", decoded.append)
    parse = envelope_parser(acts_on_awaiting)
    # Not a valid CaseOpened: nothing here reads its payload, and its source validated what it sent.
    envelope = parse(record(CaseOpened.event_type, {"case_id": str(CASE)}))
    assert envelope.event_type == CaseOpened.event_type
    assert decoded == []


def test_an_unknown_type_or_a_version_no_upcaster_lifts_is_refused_by_either_parser() -> None:
    for parse in (parse_envelope, envelope_parser(acts_on_awaiting)):
        with pytest.raises(Unprocessable) as raised:
            parse(record("allocation.NoSuchEvent", {}))
        assert reasons(raised) == ["unknown_event_type"]
        with pytest.raises(Unprocessable) as raised:
            parse(record(CaseAwaitingAllocation.event_type, AWAITING, schema_version=99))
        assert reasons(raised) == ["unknown_event_type"]


def test_a_record_that_is_no_envelope_is_refused_by_either_parser() -> None:
    for parse in (parse_envelope, envelope_parser(acts_on_awaiting)):
        with pytest.raises(Unprocessable):
            parse(b'{"event_type": "allocation.CaseAwaitingAllocation"}')
