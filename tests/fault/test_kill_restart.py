"""Issue 9, fault 1: each service is killed with SIGKILL at a random moment while 600 partner
notifications arrive and the LAC works, and started again. Nothing is lost, doubled or half-written."""

import asyncio
import random
import time

import pytest

from events.topics import SERVICES
from tests.fault.conftest import System
from tests.fault.support import (
    Allocations,
    Stopwatch,
    Writer,
    check_allocation_queue,
    check_audit_whole,
    check_outcomes,
    check_projections,
    check_writes,
    notifications,
    opened_cases,
    publish_paced,
    wait_for_audit,
    wait_for_outcomes,
    wait_until_allocation_has,
)

# Five restarts and the checks after them: allow a slow machine more than the default 300 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
SEED = 9_001
# The five kills come within about 17 s (a pause of 0.2-2.5 s before each, then the restart), so
# notifications arrive throughout: 20 s of them at 30 a second, faster than the services take them
# on a loaded two-core machine (about 17 a second), so that each kill finds work in flight. (2,000 at
# 200 a second arrived in the first 10 s and left a backlog that took 100 s to drain after the last
# kill, proving nothing more.)
NOTIFICATIONS = 600
PER_SECOND = 30


async def test_kill_9_each_service_in_turn_while_notifications_arrive(system: System) -> None:
    watch = Stopwatch("kill -9")
    began = watch.began
    await system.wait_ready()
    watch.lap("ready")
    rng = random.Random(SEED)
    sent = notifications(NOTIFICATIONS, SEED)
    writer = Writer(system)
    lac = Allocations(writer, rng)
    run_over = asyncio.Event()

    async def the_lac_at_work() -> None:
        while not run_over.is_set():
            await lac.step()
            await asyncio.sleep(0.05)

    kills: list[str] = []

    async def kill_each_in_turn() -> None:
        for service in rng.sample(SERVICES, len(SERVICES)):
            await asyncio.sleep(rng.uniform(0.2, 2.5))
            await asyncio.to_thread(system.kill, service)
            at = time.monotonic() - began
            await asyncio.to_thread(system.start, service)
            kills.append(f"{service} at {at:.1f}s (back after {time.monotonic() - began - at:.1f}s)")

    publishing = asyncio.create_task(publish_paced(system, sent, PER_SECOND))
    working = asyncio.create_task(the_lac_at_work())
    try:
        await kill_each_in_turn()
        await publishing
    finally:
        run_over.set()
        await working
        await writer.aclose()
    watch.lap(f"published {NOTIFICATIONS} notifications; killed and started again: {'; '.join(kills)}")

    check_outcomes(sent, await wait_for_outcomes(system, sent))
    opened = await opened_cases(system)
    watch.lap("every notification has its outcome")
    await wait_until_allocation_has(system, opened)
    await wait_for_audit(system)
    await system.wait_ready(timeout=60)
    watch.lap("every case in allocation, every event in the audit log, every service ready")
    await check_allocation_queue(system, opened)
    await check_writes(system, writer.writes, failures_left_nothing=False)
    assert sum(w.succeeded for w in writer.writes) >= 10, "the LAC hardly worked: the run checks too little"
    await check_projections(system)
    await check_audit_whole(system)
    watch.lap(
        f"checked: {len(opened)} cases opened in all, {sum(w.succeeded for w in writer.writes)} of"
        f" {len(writer.writes)} HTTP writes answered 2xx"
    )
