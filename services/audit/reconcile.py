"""Reconciliation: compare the log with each service's event store and fetch what is missing.

Each service serves its events in sequence order (`GET /events?after=`); whatever sequence numbers
the log lacks, inside a gap or past its last entry, are fetched and logged."""

from collections.abc import Awaitable, Callable

from events import Envelope
from infra.eventstore import EventStore
from services.audit import log

# (source, after, limit) -> (canonical envelopes in sequence order, the source's last sequence)
Fetch = Callable[[str, int, int], Awaitable[tuple[list[str], int]]]


async def reconcile(store: EventStore, sources: list[str], fetch: Fetch, batch: int = 1000) -> dict[str, int]:
    filled: dict[str, int] = {}
    for source in sources:
        have = {
            r["source_sequence"]
            for r in await store.pool.fetch("SELECT source_sequence FROM audit_log WHERE source = $1", source)
        }
        after, added = 0, 0
        while True:
            envelopes, last = await fetch(source, after, batch)
            for raw in envelopes:
                envelope = Envelope.from_bytes(raw)
                if envelope.source_sequence not in have:
                    async with store.transaction() as conn:
                        added += await log.append(conn, raw.encode(), envelope)
                after = envelope.source_sequence
            if not envelopes or after >= last:
                break
        filled[source] = added
    return filled
