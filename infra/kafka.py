"""Kafka wiring shared by relays, consumers and tools.

The embedded broker (tansu) has no idempotent or transactional producer, so producers here never ask
for one: ordering comes from one in-flight batch per partition, duplicates are absorbed by inboxes.

Every client made here (the FastStream broker, producers, admin clients, offset readers) connects
with the security the environment names (KafkaSecurity): PLAINTEXT by default, which is what the
embedded broker speaks; SASL/SCRAM-SHA-512, over TLS or not, against the compose file's Kafka, where
each service is a principal of its own and the broker's ACLs let it write only its own topic.
"""

import asyncio
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import SASLScram512

from events.topics import PARTNER_NOTIFICATIONS, dlq

SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")


class KafkaSecurityError(RuntimeError):
    """The environment names a Kafka security that cannot work: the process stops and says which
    variable is wrong, rather than connect with less than was asked for."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client authenticates to the broker, from the environment:

    LEDER_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SASL_PLAINTEXT | SASL_SSL
    LEDER_KAFKA_SASL_USERNAME       the principal (SCRAM-SHA-512), e.g. leder-notification
    LEDER_KAFKA_SASL_PASSWORD_FILE  a file holding its password (a compose secret): never the
                                    password itself in the environment, where `docker inspect` and
                                    /proc/<pid>/environ show it
    LEDER_KAFKA_CA_FILE             SASL_SSL only: the CA bundle the broker's certificate is checked
                                    against (by default the system's); the host name is checked too
    """

    protocol: str = "PLAINTEXT"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "KafkaSecurity":
        env = os.environ if env is None else env
        protocol = (env.get("LEDER_KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise KafkaSecurityError(
                f"LEDER_KAFKA_SECURITY_PROTOCOL is {protocol!r}:"
                f" it must be one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        username = (env.get("LEDER_KAFKA_SASL_USERNAME") or "").strip()
        password_file = (env.get("LEDER_KAFKA_SASL_PASSWORD_FILE") or "").strip()
        ca_file = (env.get("LEDER_KAFKA_CA_FILE") or "").strip()
        if protocol == "PLAINTEXT":
            # Credentials given to a client that will not use them: the operator meant SASL.
            given = [
                name
                for name, value in (
                    ("LEDER_KAFKA_SASL_USERNAME", username),
                    ("LEDER_KAFKA_SASL_PASSWORD_FILE", password_file),
                    ("LEDER_KAFKA_CA_FILE", ca_file),
                )
                if value
            ]
            if given:
                raise KafkaSecurityError(
                    f"{', '.join(given)} set, but LEDER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: nothing"
                    " would be authenticated; set it to SASL_PLAINTEXT or SASL_SSL"
                )
            return cls()
        if not username:
            raise KafkaSecurityError(
                f"LEDER_KAFKA_SECURITY_PROTOCOL is {protocol}: set LEDER_KAFKA_SASL_USERNAME"
            )
        if not password_file:
            raise KafkaSecurityError(
                f"LEDER_KAFKA_SECURITY_PROTOCOL is {protocol}: set LEDER_KAFKA_SASL_PASSWORD_FILE"
            )
        try:
            # As the shell's $(< file) reads it (the compose file's access job sets the broker's copy
            # of the password that way): trailing newlines are not part of the password.
            password = Path(password_file).read_text().rstrip("\n")
        except OSError as exc:
            raise KafkaSecurityError(
                f"LEDER_KAFKA_SASL_PASSWORD_FILE ({password_file}) cannot be read: {exc}"
            ) from exc
        if not password:
            raise KafkaSecurityError(f"LEDER_KAFKA_SASL_PASSWORD_FILE ({password_file}) is empty")
        if ca_file and protocol != "SASL_SSL":
            raise KafkaSecurityError(
                f"LEDER_KAFKA_CA_FILE set, but LEDER_KAFKA_SECURITY_PROTOCOL is {protocol}:"
                " no TLS to check it with"
            )
        if ca_file and not Path(ca_file).is_file():
            raise KafkaSecurityError(f"LEDER_KAFKA_CA_FILE ({ca_file}) is not a file")
        return cls(protocol, username, password, Path(ca_file) if ca_file else None)

    @property
    def uses_tls(self) -> bool:
        return self.protocol == "SASL_SSL"


def security(settings: KafkaSecurity | None = None) -> SASLScram512 | None:
    """The one place a client's security is made: FastStream's `security=` object (None for PLAINTEXT).
    `settings` defaults to the environment's, read again for each client, so a rotated password file
    is used from the next connection on."""
    settings = KafkaSecurity.from_env() if settings is None else settings
    if settings.protocol == "PLAINTEXT":
        return None
    assert settings.username is not None and settings.password is not None  # from_env saw to it
    context = None
    if settings.uses_tls:
        # Verifies the broker's certificate and its host name (create_default_context's defaults).
        context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    return SASLScram512(settings.username, settings.password, ssl_context=context, use_ssl=settings.uses_tls)


def client_options(settings: KafkaSecurity | None = None) -> dict[str, Any]:
    """The same security as aiokafka keyword arguments (security_protocol, sasl_mechanism, ...), for
    the clients made without FastStream: FastStream's own translation of `security()`, so that the
    two kinds of client can never disagree. Empty for PLAINTEXT."""
    return parse_security(security(settings))


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
        security=security(),
        enable_idempotence=False,
        acks="all",
        # Notice a topic made again (the embedded broker restarted) within seconds, not minutes.
        metadata_max_age_ms=5_000,
        logger=None,
    )


async def start_broker(broker: KafkaBroker) -> None:
    """Start `broker` as KafkaBroker.start does, but with its consumers joining their groups at once.
    The embedded broker holds each group join for half the session (5 s of the default 10 s), and
    FastStream starts one consumer after another: a service with five consumers was ready after 25 s,
    now after 5 s. Every consumer has a group of its own, so their joins do not meet."""
    await broker.connect()
    started = await asyncio.gather(*(s.start() for s in broker.subscribers), return_exceptions=True)
    for outcome in started:
        if isinstance(outcome, BaseException):
            raise outcome  # after every join has ended, so that a stop finds none half-started
    for publisher in broker.publishers:
        await publisher.start()
    broker.running = True


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=2,
        request_timeout_ms=10_000,
        retry_backoff_ms=200,
        **client_options(),
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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options())
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
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000, **client_options()
    )


async def end_offsets(reader: AIOKafkaConsumer, topic: str) -> dict[int, int]:
    """Each partition's end offset: together, how many records the topic has ever held."""
    await reader._client.force_metadata_update()
    partitions = reader.partitions_for_topic(topic) or set()
    ends = await reader.end_offsets([TopicPartition(topic, p) for p in partitions])
    return {tp.partition: offset for tp, offset in ends.items()}


async def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000, **client_options())
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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options())
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
