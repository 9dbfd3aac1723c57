"""Wiring of the audit service: an immutable, verifiable, replayable history of every case."""

from pathlib import Path

from infra.service import ServiceDefinition
from services.audit.api import router
from services.audit.consumers import consumers, readiness, tasks

definition = ServiceDefinition(
    name="audit",
    migrations=Path(__file__).parent / "migrations",
    consumers=consumers,
    routers=[router],
    tasks=tasks,
    readiness=readiness,
)
