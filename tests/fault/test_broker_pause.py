"""Issue 9, fault 2: the broker stops answering for 30 seconds (SIGSTOP, then SIGCONT) in the middle of
a run. Nothing is lost; commands keep succeeding meanwhile; the time to catch up is printed."""

import asyncio
import time

import pytest

from tests.fault.conftest import System
from tests.fault.support import (
    Stopwatch,
    Writer,
    check_allocation_queue,
    check_audit_whole,
    check_outcomes,
    check_writes,
    notifications,
    opened_cases,
    publish_paced,
    wait_for_audit,
    wait_for_outcomes,
    wait_until_allocation_has,
)

pytestmark = pytest.mark.slow
SEED = 9_002
PAUSE_SECONDS = 30


async def test_the_broker_stops_answering_for_30_seconds_mid_run(system: System) -> None:
    watch = Stopwatch("broker pause")
    await system.wait_ready()
    watch.lap("ready")
    sent = notifications(300, SEED)
    writer = Writer(system)
    # 100 a second: the pause comes a second into three seconds of publishing, so notifications are
    # taken before, held in the partners' producers during, and sent after it.
    publishing = asyncio.create_task(publish_paced(system, sent, per_second=100))
    await asyncio.sleep(1)
    system.pause_broker()
    try:
        await asyncio.sleep(2)
        # With the broker silent, commands still succeed: their events wait in the outbox.
        during = [
            await writer.post(
                "allocation",
                "/reviewers",
                {
                    "user_id": f"paused-{i}-{time.time_ns()}",
                    "name": f"Pat {i}",
                    "organisations": ["Sirona Care"],
                    "senior": False,
                    "capacity": 5,
                },
                "lac",
                ["allocation.ReviewerRegistered"],
            )
            for i in range(3)
        ]
        notified = await writer.notify(notifications(1, SEED + 1)[0].body)
        assert all(w.status == 201 for w in [*during, notified]), [(w.status, w.answer) for w in during]
        await asyncio.sleep(PAUSE_SECONDS - 2)
    finally:
        system.resume_broker()
    resumed = time.monotonic()
    await publishing
    await writer.aclose()

    check_outcomes(sent, await wait_for_outcomes(system, sent))
    opened = await opened_cases(system)
    await wait_until_allocation_has(system, opened)
    await wait_for_audit(system)
    caught_up = time.monotonic() - resumed
    watch.lap(
        f"broker paused {PAUSE_SECONDS}s: every notification taken, every case in the allocation queue and"
        f" every event in the audit log {caught_up:.1f}s after SIGCONT"
    )
    await system.wait_ready(timeout=60)
    await check_allocation_queue(system, opened)
    await check_writes(system, writer.writes, failures_left_nothing=True)
    await check_audit_whole(system)
    watch.lap("checked")
