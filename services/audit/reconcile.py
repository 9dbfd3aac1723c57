"""Reconciliation: compare the log with each service's event store and fetch what is missing.

Each service serves its events in sequence order (`GET /events?after=`); whatever sequence numbers
the log lacks, inside a gap or past its last entry, are fetched and logged. Those it holds are
compared by hash: an event whose bytes differ from the logged one at the same sequence is a fork
(infra.inbox), reported and kept for /audit/forks, never logged and never taken for the same event.

A record that cannot be logged (not an envelope, text no database can store, another source's event,
an entry the database refuses as data) is reported, saying which record and why, and reconciliation
goes on with the next: one bad record never keeps the rest out of the log."""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from pydantic import ValidationError

from events import Envelope
from infra.eventstore import EventStore
from infra.inbox import (
    DATA_SQLSTATE_CLASSES,
    Fork,
    Held,
    content_hash,
    describe_error,
    record_fork,
    validation_reasons,
)
from infra.logging import get_logger
from services.audit import log

logger = get_logger(__name__)

# (source, after, limit) -> (canonical envelopes in sequence order, the source's last sequence)
Fetch = Callable[[str, int, int], Awaitable[tuple[list[str], int]]]


@dataclass(frozen=True)
class BadRecord:
    """A record a source served that was not logged, and why."""

    source: str
    # Its place in the source's sequence (the feed serves every sequence number in order).
    source_sequence: int
    event_id: str | None
    reason: str

    def describe(self) -> str:
        named = f" ({self.event_id})" if self.event_id else ""
        return f"{self.source} event {self.source_sequence}{named} not logged: {self.reason}"


Report = Callable[[BadRecord], None]


def _log_bad(bad: BadRecord) -> None:
    logger.error("reconcile_bad_record", record=bad.describe())


async def reconcile(
    store: EventStore, sources: list[str], fetch: Fetch, batch: int = 1000, report: Report = _log_bad
) -> dict[str, int]:
    """How many events of each source were added to the log; each record that could not be is
    given to `report`."""
    filled: dict[str, int] = {}
    for source in sources:
        # Each logged sequence number with the hash of its bytes: a feed's event at a number the log
        # holds is compared by hash, so a store that now says something else there is caught (a fork).
        have = {
            r["source_sequence"]: (str(r["event_id"]), bytes(r["content_hash"]).hex())
            for r in await store.pool.fetch(
                "SELECT source_sequence, event_id, content_hash FROM audit_log WHERE source = $1", source
            )
        }
        after, added = 0, 0
        while True:
            envelopes, last = await fetch(source, after, batch)
            for raw in envelopes:
                # A service's sequence has no holes: a record that is no envelope is the next one.
                sequence, event_id, reason = after + 1, _claimed_id(raw), None
                try:
                    envelope = Envelope.from_bytes(raw)
                    sequence, event_id = envelope.source_sequence, str(envelope.event_id)
                    if envelope.source != source:
                        reason = f"the {source} service served an event of source {envelope.source!r}"
                    elif (held := have.get(envelope.source_sequence)) is not None:
                        other = Held(event_id, content_hash(raw.encode()))
                        if not Held(*held).same_as(other):
                            raise Fork(
                                held=Held(*held),
                                other=other,
                                source=source,
                                source_sequence=sequence,
                                why="the service's feed has another event at a sequence the log holds",
                            )
                    else:
                        async with store.transaction() as conn:
                            added += await log.append(conn, raw.encode(), envelope)
                except Fork as fork:
                    # Never logged, never passed over: kept for /audit/forks and the audit's /readyz.
                    async with store.pool.acquire() as conn:
                        await record_fork(conn, "reconcile", fork)
                    reason = f"a fork: {fork.reasons[0]['message']}"
                except ValidationError as invalid:
                    reason = "; ".join(f"{r['field']}: {r['message']}" for r in validation_reasons(invalid))
                except UnicodeError as unencodable:
                    reason = f"not text: {unencodable}"
                except asyncpg.PostgresError as refused:
                    if str(refused.sqlstate or "")[:2] not in DATA_SQLSTATE_CLASSES:
                        raise  # the audit database away: not this record's fault, so not reported as it
                    reason = f"the audit database refused it: {describe_error(refused)}"
                if reason is not None:
                    report(BadRecord(source, sequence, event_id, reason))
                after = sequence if sequence > after else after + 1  # always on, whatever it says
            if not envelopes or after >= last:
                break
        filled[source] = added
    return filled


def _claimed_id(raw: str) -> str | None:
    """The event_id a record says it has, even when it is no valid envelope; shown to a person, so
    only when it is short printable text."""
    try:
        claimed = json.loads(raw)
    except ValueError:
        return None
    event_id = claimed.get("event_id") if isinstance(claimed, dict) else None
    return event_id if isinstance(event_id, str) and event_id.isprintable() and len(event_id) <= 100 else None
