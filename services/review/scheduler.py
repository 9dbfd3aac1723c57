"""The six-month clock: records ReviewDeadlineApproaching at 4 and 5 months and ReviewOverdue at 6,
once each. Which milestones are recorded is in each review's events, so a restart repeats nothing."""

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from events import Actor
from infra.eventstore import Context
from infra.logging import get_logger
from infra.service import Runtime
from services.review.handlers import record_deadlines

log = get_logger(__name__)


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    every = float(os.environ.get("LEDER_DEADLINE_SWEEP_SECONDS", "600"))

    async def sweep() -> None:
        while True:
            try:
                recorded = await record_deadlines(
                    runtime.store, runtime.today(), Context(Actor.system("scheduler"))
                )
                if recorded:
                    log.info("deadline_events_recorded", count=recorded)
            except Exception as exc:  # tried again next time; the service goes on
                log.error("deadline_sweep_failed", error=repr(exc))
            await asyncio.sleep(every)

    return [sweep]
