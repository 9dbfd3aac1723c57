"""The end of the retention period: crypto-shred cases whose records have been kept long enough.

The period for LeDeR records was not published (serious-incident records are kept 20 years), so it
is configurable: LEDER_RETENTION_YEARS, default 20."""

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from events import Actor
from infra.eventstore import Context
from infra.logging import get_logger
from infra.service import Runtime
from services.notification.handlers import destroy_expired

log = get_logger(__name__)
SWEEP_EVERY_SECONDS = 3600


def retention_years() -> int:
    return int(os.environ.get("LEDER_RETENTION_YEARS", "20"))


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    async def sweep() -> None:
        while True:
            try:
                destroyed = await destroy_expired(
                    runtime.store,
                    retention_years(),
                    datetime.now(UTC).date(),
                    Context(Actor.system("retention")),
                )
                if destroyed:
                    log.info("retention_destroyed_personal_data", cases=[str(c) for c in destroyed])
            except Exception as exc:  # a sweep that fails is tried again next time; the service goes on
                log.error("retention_sweep_failed", error=repr(exc))
            await asyncio.sleep(SWEEP_EVERY_SECONDS)

    return [sweep]
