"""JSON Schemas of the envelope and every registered event, committed in events/schemas/ for
partners and other teams to validate against. `leder schemas` rewrites them; a test fails if stale.

A published schema is a contract: when an event (or the partner notification) gets a new version, the
file of each older version stays beside the new one, unchanged, for whoever still sends or keeps that
version (the registry's upcasters lift it on read). Only the current version is generated from code."""

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from events.envelope import Envelope
from events.registry import registered_events

SCHEMA_DIR = Path(__file__).parent / "schemas"
# `<name>.v<version>.json`: the files of every version of one published message share the name.
_VERSIONED = re.compile(r"^(?P<name>.+)\.v(?P<version>[0-9]+)\.json$")


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


def schemas(folder: Path = SCHEMA_DIR) -> dict[str, dict[str, Any]]:
    """Every published schema by file name: the current version of each message, generated, and the
    files in `folder` of its older versions, as they were published."""
    current = _current_schemas()
    return {**_older_versions(folder, set(current)), **current}


def _current_schemas() -> dict[str, dict[str, Any]]:
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


def _older_versions(folder: Path, current: set[str]) -> dict[str, dict[str, Any]]:
    """The files in `folder` of a version older than one in `current`: published, so kept as they are."""
    latest: dict[str, int] = {}
    for name in current:
        if match := _VERSIONED.match(name):
            version = int(match["version"])
            latest[match["name"]] = max(version, latest.get(match["name"], version))
    kept = {}
    for path in sorted(folder.glob("*.json")):
        match = _VERSIONED.match(path.name)
        if match and int(match["version"]) < latest.get(match["name"], 0):
            kept[path.name] = json.loads(path.read_text())
    return kept


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
    """Write the current version of every schema; keep the files of older versions untouched (they are
    published) and remove any other file (a message no longer published)."""
    folder.mkdir(parents=True, exist_ok=True)
    current = _current_schemas()
    older = _older_versions(folder, set(current))
    for stale in folder.glob("*.json"):
        if stale.name not in current and stale.name not in older:
            stale.unlink()
    written = []
    for name, schema in current.items():
        path = folder / name
        path.write_text(render(schema))
        written.append(path)
    return written
