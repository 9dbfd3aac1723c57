"""JSON Schemas of the envelope and every registered event, committed in events/schemas/ for
partners and other teams to validate against. `leder schemas` rewrites them; a test fails if stale."""

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from events.envelope import Envelope
from events.registry import registered_events

SCHEMA_DIR = Path(__file__).parent / "schemas"


def load_catalogue() -> None:
    """Import every event module in this package, so all payloads are registered."""
    import events

    for module in pkgutil.iter_modules(events.__path__):
        importlib.import_module(f"events.{module.name}")


def _schema(model: type[BaseModel], schema_id: str, title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        **schema,
        "title": title,
    }


def schemas() -> dict[str, dict[str, Any]]:
    load_catalogue()
    out = {"envelope.json": _schema(Envelope, "leder:envelope", "Event envelope")}
    for event_type, cls in sorted(registered_events().items()):
        if not cls.__module__.startswith("events."):
            continue  # payloads registered by tests are not part of the published contract
        name = f"{event_type}.v{cls.schema_version}.json"
        out[name] = _schema(cls, f"leder:{event_type}:v{cls.schema_version}", event_type)
    for name, model in extra_schemas().items():
        out[name] = _schema(model, f"leder:{name.removesuffix('.json')}", name.removesuffix(".json"))
    return out


def extra_schemas() -> dict[str, type[BaseModel]]:
    """Published messages that are not events (the partner notification, when it exists)."""
    found: dict[str, type[BaseModel]] = {}
    for module in list(pkgutil.iter_modules(importlib.import_module("events").__path__)):
        published = getattr(importlib.import_module(f"events.{module.name}"), "PUBLISHED_SCHEMAS", {})
        found.update(published)
    return found


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path = SCHEMA_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    wanted = schemas()
    for stale in folder.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for name, schema in wanted.items():
        path = folder / name
        path.write_text(render(schema))
        written.append(path)
    return written
