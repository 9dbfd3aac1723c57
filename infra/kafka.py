"""Kafka wiring shared by relays, consumers and tools.

The embedded broker (tansu) has no idempotent or transactional producer, so producers here never ask
for one: ordering comes from one in-flight batch per partition, duplicates are absorbed by inboxes.
"""

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

# How long the broker may hold a consumer's fetch while it has nothing new. Kafka answers as soon as a
# record arrives, so there this only sets how often an idle consumer asks again. The embedded broker
# (tansu) answers late: with the default 500 ms a record waited up to ~250 ms (median ~125 ms) for an
# idle consumer, at every hop of an event; with 50 ms, ~10 ms (bench/pipeline.py prints it).
# The price: the idle embedded stack spends about a quarter of a core more on fetches.
FETCH_MAX_WAIT_MS = 50


def broker(bootstrap: str) -> KafkaBroker:
    """The FastStream broker a service's consumers and DLQ publishing run on."""
    return KafkaBroker(
        bootstrap,
        enable_idempotence=False,
        acks="all",
        # Notice a topic made again (the embedded broker restarted) within seconds, not minutes.
        metadata_max_age_ms=5_000,
        logger=None,
    )


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
    )


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 4) -> list[str]:
    """Create whichever of `topics` do not exist; returns those created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        await admin.close()


def offsets_reader(bootstrap: str) -> AIOKafkaConsumer:
    """A group-less consumer used only to ask for end offsets."""
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000)


async def end_offsets(reader: AIOKafkaConsumer, topic: str) -> dict[int, int]:
    """Each partition's end offset: together, how many records the topic has ever held."""
    await reader._client.force_metadata_update()
    partitions = reader.partitions_for_topic(topic) or set()
    ends = await reader.end_offsets([TopicPartition(topic, p) for p in partitions])
    return {tp.partition: offset for tp, offset in ends.items()}


async def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def recreate_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.delete_topics([topic])
        for _ in range(50):
            try:
                await admin.create_topics(
                    [NewTopic(name=topic, num_partitions=partitions, replication_factor=1)]
                )
                return
            except TopicAlreadyExistsError:
                await asyncio.sleep(0.1)  # deletion still under way
    finally:
        await admin.close()
