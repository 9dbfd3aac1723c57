"""The relay reads each record's correlation id from the stored text without parsing the whole
envelope (infra.relay.correlation_id): it must give what parsing gives, whatever the text holds
(quotes, escapes and the key's own name in the actor, the causation id and the data)."""

import json
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from events import Actor, Envelope
from infra.relay import correlation_id

storable_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)
tricky_text = storable_text | st.sampled_from(
    ['"correlation_id":"x', '\\"correlation_id\\":\\"x', '"data":', '{"actor":{', "\\", '"']
)
data = st.dictionaries(tricky_text, tricky_text | st.integers(), max_size=4)


def _envelope(actor_id: str, causation: str | None, correlation: str, payload: dict[str, object]) -> Envelope:
    at = datetime(2026, 11, 30, 12, tzinfo=UTC)
    return Envelope(
        event_id=UUID(int=1),
        event_type="test.Thing",
        schema_version=1,
        stream_id="s",
        case_id=None,
        stream_version=1,
        source="test",
        source_sequence=1,
        occurred_at=at,
        recorded_at=at,
        actor=Actor(kind="user", id=actor_id, role=None),
        correlation_id=correlation,
        causation_id=causation,
        data=payload,
    )


@settings(max_examples=300, deadline=None)
@given(
    actor_id=tricky_text.filter(bool),
    causation=st.none() | tricky_text,
    correlation=tricky_text.filter(bool),
    payload=data,
)
def test_the_correlation_id_is_what_parsing_the_canonical_text_gives(
    actor_id: str, causation: str | None, correlation: str, payload: dict[str, object]
) -> None:
    text = _envelope(actor_id, causation, correlation, payload).canonical_text()
    assert correlation_id(text) == json.loads(text)["correlation_id"] == correlation


def test_text_not_in_canonical_form_is_parsed_whole() -> None:
    text = json.dumps(
        {"data": {"correlation_id": "inner"}, "correlation_id": "outer", "actor": {"id": "a"}}, indent=1
    )
    assert correlation_id(text) == "outer"
