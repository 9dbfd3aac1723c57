"""The envelope every event travels in, on every topic and in every event store."""

import json
from datetime import UTC, datetime
from typing import Any, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from events.canonical import canonical_bytes, format_datetime
from events.registry import EventPayload, decode_payload
from events.text import TEXT_CHECKED, json_may_hold_unstorable, refuse_unstorable

ActorKind = Literal["user", "partner", "system"]


class Actor(BaseModel):
    """Who caused an event: a person signed in, a partner system, or the system itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ActorKind
    id: str = Field(min_length=1, max_length=200)
    role: str | None = Field(default=None, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        # The actor is stored in every event store and the audit log: no text PostgreSQL refuses.
        return value if info.context is TEXT_CHECKED else refuse_unstorable(value, cls.__name__)

    @classmethod
    def system(cls, name: str) -> "Actor":
        return cls(kind="system", id=name, role=None)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    event_type: str = Field(min_length=3, max_length=100, pattern=r"^[a-z_]+\.[A-Za-z0-9]+$")
    schema_version: int = Field(ge=1)
    # The aggregate's stream. For case aggregates it is the case id; other aggregates (a reviewer,
    # a QA panel) have streams of their own and may still concern a case.
    stream_id: str = Field(min_length=1, max_length=200)
    case_id: UUID | None
    stream_version: int = Field(ge=1)
    source: str = Field(min_length=1, max_length=50)
    source_sequence: int = Field(ge=1)
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime
    actor: Actor
    correlation_id: str = Field(min_length=1, max_length=100)
    causation_id: str | None = Field(default=None, max_length=100)
    data: dict[str, Any]
    # Which life of the source's store recorded the event (infra.fencing): a new epoch begins when the
    # store's database is restored from a backup, so two events at one place of a source's history
    # say which life each came from. Optional: events recorded before it existed have none.
    store_epoch: str | None = Field(default=None, min_length=1, max_length=100)

    @model_serializer(mode="wrap")
    def _without_absent_epoch(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # An envelope without an epoch serialises as it did before the field existed: its canonical
        # bytes, which the audit chain hashes and the relay signed, stay the same.
        dumped = handler(self)
        if isinstance(dumped, dict) and dumped.get("store_epoch") is None:
            dumped.pop("store_epoch", None)
        return dumped

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        # Every string, the data's at any depth and the names of its fields too: an envelope a
        # database cannot store is refused as it arrives, naming the field (events/text.py).
        return value if info.context is TEXT_CHECKED else refuse_unstorable(value, cls.__name__)

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    def payload(self) -> EventPayload:
        return decode_payload(self.event_type, self.schema_version, self.data)

    def canonical(self) -> bytes:
        return self.canonical_text().encode("utf-8")

    def canonical_text(self) -> str:
        """The canonical JSON of the envelope (events.canonical), as text: what every store keeps, the
        relay publishes and signs and the audit chain hashes.

        Written from the fields directly: the generic route (a model dump, then a serialiser asking
        what each value is) cost most of an append's time in Python. It takes that route still for
        data holding anything but plain JSON (a float, which canonical JSON refuses, included), so the
        text and the errors are the same either way (tests/unit/test_envelope_canonical.py)."""
        actor = self.actor
        if type(actor) is not Actor or not _plain_json(self.data):
            return canonical_bytes(self).decode("utf-8")
        occurred = format_datetime(self.occurred_at)
        # Most events occur when they are recorded: one instant, one text.
        recorded = occurred if self.recorded_at == self.occurred_at else format_datetime(self.recorded_at)
        fields: dict[str, Any] = {
            "actor": {"id": actor.id, "kind": actor.kind, "role": actor.role},
            "case_id": None if self.case_id is None else str(self.case_id),
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
            "data": self.data,
            "event_id": str(self.event_id),
            "event_type": self.event_type,
            "occurred_at": occurred,
            "recorded_at": recorded,
            "schema_version": self.schema_version,
            "source": self.source,
            "source_sequence": self.source_sequence,
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
        }
        if self.store_epoch is not None:
            fields["store_epoch"] = self.store_epoch
        return _CANONICAL.encode(fields)

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Self:
        # Every envelope read is checked; one whose JSON cannot hold such text is spared the walk.
        return cls.model_validate_json(raw, context=None if json_may_hold_unstorable(raw) else TEXT_CHECKED)

    @property
    def kafka_key(self) -> bytes:
        # The stream, so that a stream's events stay in one partition, in order. A case's own
        # stream is named by its case id, so case events are keyed by case.
        return self.stream_id.encode()


# events.canonical's options, without its fallback for values JSON has no form for: only plain JSON
# reaches this encoder.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# More values than any event holds: past it (or a value that contains itself) the generic route judges.
_PLAIN_JSON_LIMIT = 100_000


def _plain_json(value: Any) -> bool:
    """Whether `value` is made of dicts with string keys, lists, strings, ints, booleans and None
    only, exactly those types and not their subclasses: values both routes to canonical JSON write
    alike."""
    pending = [value]
    seen = 0
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        seen += 1
        if seen > _PLAIN_JSON_LIMIT:
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str:
                    return False
            pending += item.values()
        elif kind is list:
            pending += item
        else:
            return False
    return True
