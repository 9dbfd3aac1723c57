"""`leder docs`: the AsyncAPI document of every service (FastStream writes it from the subscribers and
declared publishers) and the OpenAPI document of every HTTP API, into docs/. A test fails when stale."""

import json
from pathlib import Path
from typing import Any, cast

from faststream.specification import AsyncAPI

from events import Envelope
from events.topics import SERVICES, dlq, service_topic
from infra import kafka
from infra.eventstore import EventStore
from infra.relay import OutboxRelay
from infra.service import Runtime, build_app
from infra.settings import Settings
from leder.wiring import definition

DOCS = Path(__file__).parents[1] / "docs"


# Tests build each service's app from its definition as `leder docs` does.
_definition = definition


def _settings(service: str) -> Settings:
    return Settings(
        service=service,
        database_url="postgresql://docs",
        kafka_bootstrap="kafka:9092",
        topic_prefix="",
        http_port=0,
    )


def openapi(service: str) -> dict[str, Any]:
    return build_app(_definition(service), _settings(service)).openapi()


def asyncapi(service: str) -> dict[str, Any]:
    """Built without connecting anywhere: the consumers are subscribed to a broker that never starts."""
    definition, settings = _definition(service), _settings(service)
    broker = kafka.broker(settings.kafka_bootstrap)
    store = EventStore(cast(Any, None), service)
    runtime = Runtime(
        settings=settings,
        pool=cast(Any, None),
        store=store,
        broker=broker,
        relay=OutboxRelay(store, settings.kafka_bootstrap, service_topic(service)),
    )
    for consumer in definition.consumers(runtime):
        consumer.subscribe(broker, group_id=f"leder.{service}.{consumer.name}")
        broker.publisher(
            dlq(consumer.topic),
            title=f"{dlq(consumer.topic)}:publish",
            description=f"messages {service} could not handle, with the reasons in headers",
        )
    broker.publisher(
        service_topic(service),
        title=f"{service_topic(service)}:publish",
        schema=Envelope,
        description=f"every event of the {service} service, published by its outbox relay in "
        "sequence order; key: the stream (a case's stream is its case id)",
    )
    spec = AsyncAPI(
        broker,
        title=f"LeDeR {service} service",
        version="1",
        description=f"The Kafka topics the {service} service consumes and publishes.",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document


def documents() -> dict[str, dict[str, Any]]:
    out = {}
    for service in SERVICES:
        out[f"openapi/{service}.json"] = openapi(service)
        out[f"asyncapi/{service}.json"] = asyncapi(service)
    return out


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_docs(folder: Path = DOCS) -> list[Path]:
    written = []
    for name, document in documents().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document))
        written.append(path)
    return written
