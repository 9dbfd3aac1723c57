"""The end of the retention period: crypto-shred what has been kept long enough.

Cases: the period for LeDeR records was not published (serious-incident records are kept 20 years),
so it is configurable: LEDER_RETENTION_YEARS, default 20.

What never became a LeDeR case (a child's death referred to the CDOP, a notification not eligible, a
case found not eligible, a partner notification refused to the DLQ) has its own, short retention:
LEDER_NON_CASE_RETENTION_DAYS, default 90. The ICB's LeDeR policy (bnssg-leder-policy-framework)
sets no period for such records; it binds the programme to the data protection principles and to
sharing "only the minimum information necessary" (section 3.1); a child's death is the CDOP's to
review, with its own records. 90 days covers what this service still needs them for: the
partner learning the outcome, the LAC answering a question about the decision or a complaint, a
notification refused to the DLQ being put right and sent again. Duplicates are sealed under the
key of the case they were linked to: they are part of its record and are shredded with it (a case
found not eligible within the 90 days, an open one at the end of the case's retention)."""

import asyncio
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from events import Actor
from infra.eventstore import Context
from infra.logging import get_logger
from infra.service import Runtime
from services.notification.handlers import destroy_expired, destroy_expired_non_cases

log = get_logger(__name__)
SWEEP_EVERY_SECONDS = 3600  # LEDER_RETENTION_SWEEP_SECONDS; `leder up` sweeps often, for its simulated months
NON_CASE_RETENTION_DAYS = 90


def retention_years() -> int:
    return int(os.environ.get("LEDER_RETENTION_YEARS", "20"))


def non_case_retention_days() -> int:
    return int(os.environ.get("LEDER_NON_CASE_RETENTION_DAYS", str(NON_CASE_RETENTION_DAYS)))


def sweep_every_seconds() -> float:
    return float(os.environ.get("LEDER_RETENTION_SWEEP_SECONDS", str(SWEEP_EVERY_SECONDS)))


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    async def sweep() -> None:
        while True:
            context = Context(Actor.system("retention"))
            now = runtime.clock()  # the stack's clock, so `leder demo`'s simulated years reach the end too
            try:
                destroyed = await destroy_expired(runtime.store, retention_years(), now.date(), context)
                if destroyed:
                    log.info("retention_destroyed_personal_data", cases=[str(c) for c in destroyed])
                days = non_case_retention_days()
                brief = await destroy_expired_non_cases(runtime.store, days, now, context)
                if brief.cases or brief.notifications or brief.dead_letters:
                    log.info(
                        "non_case_retention_destroyed_personal_data",
                        retention_days=days,
                        cases=[str(c) for c in brief.cases],
                        notifications=[str(n) for n in brief.notifications],
                        dead_letters=len(brief.dead_letters),
                    )
            except Exception as exc:  # a sweep that fails is tried again next time; the service goes on
                log.error("retention_sweep_failed", error=repr(exc))
            await asyncio.sleep(sweep_every_seconds())

    return [sweep]
