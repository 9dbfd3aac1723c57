"""Run one service in-process, with its real lifespan (database, relay, consumers on the broker)."""

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from events.topics import all_topics
from infra import kafka
from infra.keys import LocalKeyFile
from infra.sealing import DataKeys, install
from infra.service import Runtime, ServiceDefinition, build_app
from infra.settings import Settings
from tests.support import tokens
from tests.support.notifications import NOTIFIER_ORGANISATION


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    runtime: Runtime
    settings: Settings

    def headers(
        self, role: str, sub: str = "alice", *, organisation: str | None = None, **extra: str
    ) -> dict[str, str]:
        """A bearer token's headers; a partner system's token names the organisation of the test
        notification's notifier unless `organisation` says another."""
        if organisation is None and role == "partner_system":
            organisation = NOTIFIER_ORGANISATION
        return {**tokens.bearer(sub, role, organisation), **extra}


@asynccontextmanager
async def running_service(
    definition: ServiceDefinition,
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    keys: DataKeys | None = None,
) -> AsyncIterator[RunningService]:
    """`keys`: the service's data keys; by default over a key file of the test's own."""
    await kafka.ensure_topics(kafka_bootstrap, all_topics(topic_prefix), partitions=2)
    settings = Settings(
        service=definition.name, database_url=database_url, kafka_bootstrap=kafka_bootstrap,
        topic_prefix=topic_prefix, http_port=0, topic_partitions=2, tokens=tokens.trust(),
    )  # fmt: skip
    # Each test's service keeps its key-encryption keys in a key file of its own.
    with tempfile.TemporaryDirectory(prefix=f"leder-keys-{definition.name}-") as folder:
        if keys is None:
            keys = DataKeys(LocalKeyFile(Path(folder) / f"{definition.name}.keys"), definition.name)
        app = build_app(definition, settings, keys)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                    yield RunningService(app, client, app.state.runtime, settings)
        finally:
            install(None, definition.name)
