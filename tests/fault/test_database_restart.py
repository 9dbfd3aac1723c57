"""Issue 9, fault 3: PostgreSQL restarts in the middle of a run of partner notifications (on the topic
and over HTTP) and the LAC's work. Services reconnect by themselves; each command either committed
wholly and said so, or answered an error and left nothing; nothing is half-written."""

import asyncio
import random
import time
from collections import Counter

import pytest

from events.topics import SERVICES
from tests.fault.conftest import System
from tests.fault.support import (
    Allocations,
    Sent,
    Stopwatch,
    Writer,
    check_allocation_queue,
    check_audit_whole,
    check_outcomes,
    check_projections,
    check_streams_whole,
    check_writes,
    notifications,
    opened_cases,
    outcomes,
    publish_paced,
    wait_for_audit,
    wait_for_outcomes,
    wait_until_allocation_has,
)

pytestmark = pytest.mark.slow
SEED = 9_003


async def test_postgres_restarts_mid_run_and_every_command_is_whole_or_absent(system: System) -> None:
    watch = Stopwatch("database restart")
    await system.wait_ready()
    watch.lap("ready")
    processes = {service: system.pid(service) for service in SERVICES}
    rng = random.Random(SEED)
    on_topic = notifications(400, SEED)
    over_http = notifications(2_000, SEED + 1)  # more than can be sent before the run is over
    writer = Writer(system)
    lac = Allocations(writer, rng)
    run_over = asyncio.Event()

    tried: list[Sent] = []

    async def a_partner_over_http(share: list[Sent]) -> None:
        for item in share:
            if run_over.is_set():
                return
            tried.append(item)
            await writer.notify(item.body)
            await asyncio.sleep(0.02)

    async def the_lac_at_work() -> None:
        while not run_over.is_set():
            await lac.step()
            await asyncio.sleep(0.02)

    publishing = asyncio.create_task(publish_paced(system, on_topic, per_second=100))
    working = [
        asyncio.create_task(a_partner_over_http(over_http[0::2])),
        asyncio.create_task(a_partner_over_http(over_http[1::2])),
        asyncio.create_task(the_lac_at_work()),
    ]
    await asyncio.sleep(1.5)
    began = time.monotonic()
    await asyncio.to_thread(system.restart_postgres)
    restarted = time.monotonic()
    # Keep the commands coming until each kind has succeeded again after the restart, by the
    # services' own reconnection (nothing here restarts them).
    deadline = restarted + 60
    while time.monotonic() < deadline:
        after = {w.what.split("/")[1] for w in writer.writes if w.succeeded and w.answered_at > restarted}
        if {"notifications", "cases"} <= after:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"no notification and allocation succeeded within 60s of the restart: {after}")
    run_over.set()
    await asyncio.gather(publishing, *working)
    await writer.aclose()
    failed = [w for w in writer.writes if not w.succeeded]
    kinds = Counter((w.status, w.what.split("/")[1]) for w in failed)
    watch.lap(
        f"PostgreSQL down and up again in {restarted - began:.1f}s; {len(writer.writes)} HTTP commands,"
        f" {len(failed)} answered an error or nothing: {dict(kinds)}"
    )

    # An error is said as one: 503 problem details (try again), never a bare 500.
    assert all(w.status in (None, 503) for w in failed), [(w.status, w.answer) for w in failed]
    assert all(w.answer.get("code") == "database_unavailable" for w in failed if w.status == 503)

    await system.wait_ready(timeout=90)
    watch.lap("every service ready again")
    assert {service: system.pid(service) for service in SERVICES} == processes, "a service was restarted"
    await check_writes(system, writer.writes, failures_left_nothing=True)
    await check_streams_whole(system)

    check_outcomes(on_topic, await wait_for_outcomes(system, on_topic))
    watch.lap("every notification on the topic has its outcome")
    # A partner whose notification was answered an error sends it again; then each has one outcome.
    taken = await outcomes(system)
    resend = Writer(system)
    for item in tried:
        if item.notification_id not in taken:
            again = await resend.notify(item.body)
            assert again.status == 201, again
            taken[item.notification_id] = []
    await resend.aclose()
    check_outcomes(tried, await wait_for_outcomes(system, tried))

    opened = await opened_cases(system)
    await wait_until_allocation_has(system, opened)
    await wait_for_audit(system)
    watch.lap("every case in allocation, every event in the audit log")
    await check_allocation_queue(system, opened)
    await check_projections(system)
    await check_audit_whole(system)
    watch.lap("checked")
