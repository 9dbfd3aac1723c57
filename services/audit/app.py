"""Wiring of the audit service: an immutable, verifiable, replayable history of every case."""

from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from infra.service import Runtime, ServiceDefinition
from services.audit import consumers, highwater
from services.audit.api import router


def tasks(runtime: Runtime) -> Sequence[Callable[[], Coroutine[Any, Any, None]]]:
    return [*consumers.tasks(runtime), *highwater.tasks(runtime)]


definition = ServiceDefinition(
    name="audit",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers.consumers,
    routers=[router],
    tasks=tasks,
    readiness=consumers.readiness,
)
