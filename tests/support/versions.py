"""Version 2 of two consumed events, registered only inside a test (`second_versions`), to show that
whatever reads another service's events reads each version alike through the registry's upcasters.

Each renames fields on the wire, the kind of change a producer makes that a raw-dict reader breaks on
(silently: a `.get` of the old name finds nothing). The Python attribute keeps its name (an alias is
the wire's), so the readers' code is the code a real version 2 would be read by once its class had
replaced version 1's: the payload's fields, never the published JSON's keys."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import Field

from events import registry
from events.allocation import ReviewerAllocated
from events.notification import CaseFacts, CaseOpened, FocusedReason


class ReviewerAllocatedV2(ReviewerAllocated):
    """Version 2: the reviewers are named `reviewer_sub` and `senior_reviewer_sub` (the token's claim)."""

    reviewer_user_id: str = Field(alias="reviewer_sub")
    senior_reviewer_user_id: str = Field(alias="senior_reviewer_sub")


class CaseOpenedV2(CaseOpened):
    """Version 2: `facts` is `case_facts`, `focused_reasons` is `reasons_for_focused_review`."""

    facts: CaseFacts = Field(alias="case_facts")
    focused_reasons: list[FocusedReason] = Field(alias="reasons_for_focused_review")


def _renamed(data: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    # Strict, as a real upcaster may be: version 1 data has every old name. A version 2 read as if it
    # were a version 1 (its schema version lost on the way) fails here rather than passing unnoticed.
    missing = set(renames) - set(data)
    if missing:
        raise KeyError(f"not version 1 data: no {sorted(missing)}")
    return {renames.get(key, key): value for key, value in data.items()}


def reviewer_allocated_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return _renamed(
        data,
        {"reviewer_user_id": "reviewer_sub", "senior_reviewer_user_id": "senior_reviewer_sub"},
    )


def case_opened_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return _renamed(data, {"facts": "case_facts", "focused_reasons": "reasons_for_focused_review"})


# Each event type: its version 2 class and the upcaster from version 1.
SECOND_VERSIONS: dict[str, tuple[type[registry.EventPayload], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "allocation.ReviewerAllocated": (ReviewerAllocatedV2, reviewer_allocated_v1_to_v2),
    "notification.CaseOpened": (CaseOpenedV2, case_opened_v1_to_v2),
}


@contextmanager
def second_versions() -> Iterator[None]:
    """Within the block, version 2 is the current version of each of SECOND_VERSIONS, with its
    upcaster from version 1; afterwards the registry is as it was. (The registry registers with
    `@event` at import, once; a test's version must not outlive the test, so it is set and undone
    here on the registry's own tables.)"""
    saved_payloads = dict(registry._payloads)
    saved_upcasters = dict(registry._upcasters)
    try:
        for event_type, (cls, lift) in SECOND_VERSIONS.items():
            cls.event_type, cls.schema_version = event_type, 2
            registry._payloads[event_type] = cls
            registry._upcasters[(event_type, 1)] = lift
        yield
    finally:
        registry._payloads.clear()
        registry._payloads.update(saved_payloads)
        registry._upcasters.clear()
        registry._upcasters.update(saved_upcasters)


def as_version_2(event_type: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The schema version and data a producer at version 2 would publish for this version 1 data."""
    if event_type not in SECOND_VERSIONS:
        return 1, data
    return 2, SECOND_VERSIONS[event_type][1](data)
