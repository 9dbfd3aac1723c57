"""The audit log's high-water marks, published on the audit topic (issue 20).

A service whose database is restored from a backup compares its store with its own topic's last records
(infra.fencing). That topic may no longer hold them: a broker rebuilt empty, or a quiet topic whose
records all passed their retention. The audit log holds every event it was sent, so it publishes, per
service, the highest source sequence it holds: a store below it lost events the rest of the system saw,
and fences itself.

Published when a mark moves, checked every LEDER_AUDIT_HIGH_WATER_SECONDS, and once a day even when
nothing moved, so a record younger than any retention is always on the topic."""

import asyncio
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from uuid import uuid4

from events import Actor
from events.audit import LogHighWaterMarked
from infra.db import Connection
from infra.eventstore import Context
from infra.logging import get_logger
from infra.service import Runtime
from services.audit import log, store
from services.audit.consumers import SOURCES

SYSTEM = Actor.system("audit")
REPUBLISH_SECONDS = 86_400.0
logger = get_logger(__name__)


async def high_water(conn: Connection, sources: Sequence[str]) -> dict[str, int]:
    """Per source, the highest source_sequence the log holds (a backward index scan each); a source
    the log has nothing of is left out."""
    marks: dict[str, int] = {}
    for source in sources:
        highest = await conn.fetchval("SELECT max(source_sequence) FROM audit_log WHERE source = $1", source)
        if highest is not None:
            marks[source] = highest
    return marks


class HighWater:
    """What was last published, so that only a move (or a day's silence) publishes again."""

    def __init__(self, sources: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.sources = tuple(sources)
        self.clock = clock
        self.published: dict[str, int] | None = None
        self.published_at = 0.0

    async def publish_if_moved(self, runtime: Runtime) -> LogHighWaterMarked | None:
        async with runtime.pool.acquire() as conn, conn.transaction():
            marks = await high_water(conn, self.sources)
            stale = self.clock() - self.published_at >= REPUBLISH_SECONDS
            if not marks or (marks == self.published and not stale):
                return None
            mark = LogHighWaterMarked(highest=marks, log_size=await log.log_size(conn))
            await store.record(runtime.store, conn, mark, Context(SYSTEM, f"high-water-{uuid4()}"))
        self.published, self.published_at = marks, self.clock()
        return mark


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    every = float(os.environ.get("LEDER_AUDIT_HIGH_WATER_SECONDS", "30"))
    marks = HighWater(SOURCES)

    async def publish() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                published = await marks.publish_if_moved(runtime)
                if published is not None:
                    logger.info("high_water_marked", highest=published.highest)
            except Exception as exc:  # published next time; the service goes on
                logger.error("high_water_failed", error=repr(exc))

    return [publish]
