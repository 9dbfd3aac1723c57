"""Issue 18, item 5: scale-out, shown. Two instances of every service, as `leder up --instances 2`
runs them, while partner notifications arrive steadily and the LAC works; mid-run one instance of each
service is killed with SIGKILL (the one publishing its events, so that the other's relay must take
over) and not started again. The survivors carry on: every notification has its one outcome, every
case reaches the allocation queue once, the audit log holds every event once.

Its own system (not the package's one-instance system): two instances of each of the five services on
the embedded stack."""

import asyncio
import random
import time
from collections.abc import Iterator

import pytest

from events.topics import SERVICES
from tests.fault.conftest import System, running_system
from tests.fault.support import (
    Allocations,
    Stopwatch,
    Writer,
    check_allocation_queue,
    check_audit_whole,
    check_outcomes,
    check_projections,
    check_streams_whole,
    check_writes,
    messages_handled,
    notifications,
    opened_cases,
    publish_paced,
    relay_holder,
    wait_for_audit,
    wait_for_outcomes,
    wait_until_allocation_has,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
SEED = 18_005
# 15 s of notifications at 20 a second; the kills come between 3 s and about 9 s in, so work is in
# flight in every service when its instance dies, and the survivors take the rest alone.
NOTIFICATIONS = 300
PER_SECOND = 20
INSTANCES = 2


@pytest.fixture(scope="module")
def two_of_each(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A test that kills an instance points its service at the survivor, as a load balancer would take
    the dead one out."""
    with running_system(tmp_path_factory.mktemp("two-instances"), instances=INSTANCES) as running:
        yield running


async def test_kill_9_one_of_two_instances_of_each_service(two_of_each: System) -> None:
    system = two_of_each
    watch = Stopwatch("two instances")
    began = watch.began
    await asyncio.to_thread(system.stack.wait_ready)
    watch.lap(f"{INSTANCES} instances of each service ready")
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
    handled_before_kill: dict[str, int] = {}

    async def kill_one_of_each() -> None:
        await asyncio.sleep(3)
        for service in rng.sample(SERVICES, len(SERVICES)):
            await asyncio.sleep(rng.uniform(0.2, 1.5))
            holder = await relay_holder(system, service)
            await asyncio.to_thread(system.kill, holder)
            handled_before_kill.update(
                {n: messages_handled(system, n) for n in system.stack.instances_of(service)}
            )
            survivor = next(n for n in system.stack.instances_of(service) if n != holder)
            system.urls[service] = system.stack.url(survivor)
            kills.append(f"{holder} at {time.monotonic() - began:.1f}s")

    publishing = asyncio.create_task(publish_paced(system, sent, PER_SECOND))
    working = asyncio.create_task(the_lac_at_work())
    try:
        await kill_one_of_each()
        await publishing
    finally:
        run_over.set()
        await working
        await writer.aclose()
    watch.lap(f"published {NOTIFICATIONS} notifications; killed, each the one publishing: {'; '.join(kills)}")

    # Both instances of each service took messages before one died: the consumer group shared the
    # partitions out between them, not all to one with the other idle.
    idle = {name: n for name, n in handled_before_kill.items() if n == 0}
    assert not idle, f"instances that had taken no message when one of their service was killed: {idle}"
    # The survivors alone from here: each service's relay moved to the other instance, and its consumer
    # groups gave the dead one's partitions to the other.
    for service in SERVICES:
        assert await relay_holder(system, service) == next(
            n for n in system.stack.instances_of(service) if system.stack.services[n].poll() is None
        )
    check_outcomes(sent, await wait_for_outcomes(system, sent))
    opened = await opened_cases(system)
    watch.lap("every notification has its outcome")
    await wait_until_allocation_has(system, opened)
    await wait_for_audit(system)
    await system.wait_ready(timeout=60)
    watch.lap("every case in allocation, every event in the audit log, every survivor ready")
    await check_allocation_queue(system, opened)
    await check_writes(system, writer.writes, failures_left_nothing=False)
    assert sum(w.succeeded for w in writer.writes) >= 10, "the LAC hardly worked: the run checks too little"
    await check_projections(system)
    await check_streams_whole(system)
    await check_audit_whole(system)
    watch.lap(
        f"checked: {len(opened)} cases opened in all, {sum(w.succeeded for w in writer.writes)} of"
        f" {len(writer.writes)} HTTP writes answered 2xx"
    )
