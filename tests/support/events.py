"""Payloads used only by the platform's tests: the platform must work for any event."""

from pydantic import Field

from events import EventPayload, event, upcaster


@event("test.NoteRecorded", version=2)
class NoteRecorded(EventPayload):
    text: str = Field(max_length=200)
    author: str = "unknown"


@upcaster("test.NoteRecorded", from_version=1)
def _note_v1_to_v2(data: dict[str, object]) -> dict[str, object]:
    # Version 1 called the text `note` and had no author.
    return {"text": data["note"], "author": "unknown"}


@event("test.CounterIncremented")
class CounterIncremented(EventPayload):
    by: int = Field(ge=1)
