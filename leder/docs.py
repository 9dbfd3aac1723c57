"""`leder docs`: the AsyncAPI document of every service (FastStream writes it from the subscribers and
declared publishers) and the OpenAPI document of every HTTP API, into docs/. A test fails when stale.

FastStream knows a consumer only as a topic; which events on it the service acts on is its consumers'
dispatch table (HANDLERS, event type to handler), so each receive operation lists those, read from the
table: the document cannot name an event the service ignores, nor miss one it handles."""

import importlib
import json
from pathlib import Path
from typing import Any, cast

from faststream.specification import AsyncAPI

from events import Envelope, EventPayload
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
    table = handled(service)
    if table is not None:
        _list_handled(document, table)
    return document


def handled(service: str) -> list[type[EventPayload]] | None:
    """The event types the service's consumers dispatch through their table (HANDLERS), or None for
    a service whose consumers have no table (notification and audit)."""
    consumers = importlib.import_module(f"services.{service}.consumers")
    table: dict[type[EventPayload], object] | None = getattr(consumers, "HANDLERS", None)
    return None if table is None else sorted(table, key=lambda cls: cls.event_type)


def handled_by_topic(document: dict[str, Any]) -> dict[str, list[str]]:
    """The event types each receive operation of an AsyncAPI document lists, by topic."""
    out: dict[str, list[str]] = {}
    for operation in document["operations"].values():
        if operation["action"] != "receive":
            continue
        channel = document["channels"][operation["channel"]["$ref"].rsplit("/", 1)[1]]
        out[channel["address"]] = [
            m["name"] for ref in operation["messages"] if "name" in (m := _message(document, ref["$ref"]))
        ]
    return out


def _message(document: dict[str, Any], ref: str) -> dict[str, Any]:
    """A message a channel's $ref names, followed to the component it refers to."""
    channel_key, message_key = ref.removeprefix("#/channels/").split("/messages/")
    target = document["channels"][channel_key]["messages"][message_key]["$ref"]
    found: dict[str, Any] = document["components"]["messages"][target.rsplit("/", 1)[1]]
    return found


def _list_handled(document: dict[str, Any], table: list[type[EventPayload]]) -> None:
    """Each receive operation's messages: the envelope of each event type of its topic in `table`,
    its data typed by the event's schema, beside the untyped message FastStream wrote (the consumer
    takes every event of the topic; one of a type not in the table changes nothing)."""
    components = document["components"]
    topics = {service_topic(source): source for source in SERVICES}
    placed: set[type[EventPayload]] = set()
    for operation in document["operations"].values():
        if operation["action"] != "receive":
            continue
        channel_key = operation["channel"]["$ref"].rsplit("/", 1)[1]
        channel = document["channels"][channel_key]
        source = topics.get(channel["address"])
        for cls in table:
            if source is None or cls.event_type.split(".", 1)[0] != source:
                continue
            placed.add(cls)
            name = f"{channel_key}:{cls.event_type}"
            components["messages"][name] = {
                "name": cls.event_type,
                "title": cls.event_type,
                **({"summary": summary} if (summary := _first_line(cls.__doc__)) else {}),
                "correlationId": {"location": "$message.header#/correlation_id"},
                "payload": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Envelope"},
                        {
                            "type": "object",
                            "properties": {
                                "event_type": {"const": cls.event_type},
                                "data": {"$ref": f"#/components/schemas/{_add_schema(components, cls)}"},
                            },
                        },
                    ]
                },
            }
            channel["messages"][cls.event_type] = {"$ref": f"#/components/messages/{name}"}
            operation["messages"].append({"$ref": f"#/channels/{channel_key}/messages/{cls.event_type}"})
    unplaced = sorted(cls.event_type for cls in set(table) - placed)
    if unplaced:
        raise ValueError(f"handled but on no topic the service consumes: {', '.join(unplaced)}")


def _add_schema(components: dict[str, Any], cls: type[EventPayload]) -> str:
    """The event's data schema among the document's schemas (with the models it uses); its name."""
    schema = cls.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["title"] = cls.event_type
    schemas = components.setdefault("schemas", {})
    for name, model in {**schema.pop("$defs", {}), cls.event_type: schema}.items():
        if schemas.setdefault(name, model) != model:
            raise ValueError(f"two different schemas are called {name}")
    return cls.event_type


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n\n", 1)[0].replace("\n", " ")


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
