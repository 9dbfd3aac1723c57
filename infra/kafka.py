"""Kafka wiring shared by relays, consumers and tools.

The embedded broker (tansu) has no idempotent or transactional producer, so producers here never ask
for one: ordering comes from one in-flight batch per partition, duplicates are absorbed by inboxes.
"""

import asyncio
import os

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from events.topics import PARTNER_NOTIFICATIONS, dlq

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


# The partner topic and its DLQ hold whole notifications (the DLQ's sealed, see infra.inbox): kept
# only as long as the door needs them. The notification service takes a notification within seconds
# and the audit service records each dead letter as it comes, so a week covers either being down
# over a long bank-holiday weekend, with room to spare. LEDER_PARTNER_TOPIC_RETENTION_DAYS.
PARTNER_TOPIC_RETENTION_DAYS = 7
DAY_MS = 86_400_000


def partner_topic_retention_ms() -> int:
    days = int(os.environ.get("LEDER_PARTNER_TOPIC_RETENTION_DAYS", str(PARTNER_TOPIC_RETENTION_DAYS)))
    return days * DAY_MS


def topic_config(topic: str) -> dict[str, str]:
    """A topic's own configuration: the partner topic and its DLQ (whatever the prefix) a retention
    period; every other topic the broker's defaults."""
    if topic.endswith((PARTNER_NOTIFICATIONS, dlq(PARTNER_NOTIFICATIONS))):
        return {"retention.ms": str(partner_topic_retention_ms())}
    return {}


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int = 4) -> list[str]:
    """Create whichever of `topics` do not exist, each with its topic_config; returns those created.
    (Kafka deletes records older than a topic's retention.ms; the embedded broker, tansu 0.6, keeps
    and reports the setting but its in-memory storage deletes nothing by age: it holds records only
    until it stops.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=t,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs=topic_config(t),
                        )
                        for t in missing
                    ]
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
                    [
                        NewTopic(
                            name=topic,
                            num_partitions=partitions,
                            replication_factor=1,
                            topic_configs=topic_config(topic),
                        )
                    ]
                )
                return
            except TopicAlreadyExistsError:
                await asyncio.sleep(0.1)  # deletion still under way
    finally:
        await admin.close()
