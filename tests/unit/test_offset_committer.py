"""The committer that commits a consumer's offsets behind its batches (infra.inbox.OffsetCommitter), over
a stand-in for the Kafka consumer: what it commits, and when."""

import asyncio
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from infra.inbox import OffsetCommitter

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class Consumer:
    """Commits recorded; each waits for `gate` while it is closed; the first `failures` raise."""

    def __init__(self, assigned: set[TopicPartition], failures: int = 0) -> None:
        self.assigned = assigned
        self.failures = failures
        self.commits: list[dict[TopicPartition, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise CommitFailedError("rebalanced")


def committer(consumer: Consumer) -> tuple[OffsetCommitter, "asyncio.Task[Any]"]:
    made = OffsetCommitter(consumer, "test")
    return made, asyncio.create_task(made.run())


async def stop(task: "asyncio.Task[Any]") -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_offsets_handed_over_during_a_commit_go_in_one_the_latest_of_each_partition_winning() -> None:
    consumer = Consumer({P0, P1})
    consumer.gate.clear()
    made, task = committer(consumer)
    made.hand_over({P0: 10, P1: 20})
    await asyncio.sleep(0)
    assert consumer.commits == [{P0: 10, P1: 20}]  # in flight
    made.hand_over({P0: 15})
    made.hand_over({P0: 12, P1: 25})  # a rewind: lower, and still what is committed
    consumer.gate.set()
    assert await made.flush()
    assert consumer.commits == [{P0: 10, P1: 20}, {P0: 12, P1: 25}]
    await stop(task)


async def test_a_partition_no_longer_assigned_is_not_committed_and_a_forgotten_one_neither() -> None:
    consumer = Consumer({P0})
    made, task = committer(consumer)
    made.hand_over({P0: 3, P1: 4})
    assert await made.flush()
    assert consumer.commits == [{P0: 3}]
    consumer.gate.clear()
    consumer.assigned = {P0, P1}
    made.hand_over({P0: 5})
    await asyncio.sleep(0)
    made.hand_over({P0: 6, P1: 7})
    made.forget({P1})  # revoked: its next consumer commits it
    consumer.gate.set()
    assert await made.flush()
    assert consumer.commits == [{P0: 3}, {P0: 5}, {P0: 6}]
    await stop(task)


async def test_a_failed_commit_is_logged_and_the_committer_goes_on() -> None:
    consumer = Consumer({P0}, failures=2)
    made, task = committer(consumer)
    for offset in (1, 2, 3):
        made.hand_over({P0: offset})
        assert await made.flush()
    assert consumer.commits == [{P0: 1}, {P0: 2}, {P0: 3}]
    assert consumer.failures == 0 and not task.done()
    await stop(task)


async def test_when_stopped_what_is_pending_is_committed_and_the_task_ends() -> None:
    consumer = Consumer({P0, P1})
    consumer.gate.clear()
    made, task = committer(consumer)
    made.hand_over({P0: 1})
    await asyncio.sleep(0)
    made.hand_over({P0: 2, P1: 9})
    task.cancel()
    await asyncio.sleep(0)
    consumer.gate.set()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert consumer.commits == [{P0: 1}, {P0: 2, P1: 9}]
