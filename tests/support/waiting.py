import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from tests.support.signing import signed_headers

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail with its last answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached after {timeout}s; last: {result!r}")
        await asyncio.sleep(interval)


async def read_topic(
    bootstrap: str, topic: str, at_least: int, timeout: float = 30.0
) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(records) < at_least:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout}s, wanted {at_least}")
            batch = await consumer.getmany(timeout_ms=200)
            for part in batch.values():
                records += part
        return records
    finally:
        await consumer.stop()


async def publish_raw(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Publish as the topic's owner would: on a service's topic, each record signed with that service's
    key (tests/support/signing.py). `headers`: these instead of the signature (a forger's)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            sent = signed_headers(topic, value) if headers is None else headers
            await producer.send_and_wait(topic, key=key, value=value, headers=sent)
    finally:
        await producer.stop()
