"""Wiring of the notification service: death notifications from partner systems become cases."""

from pathlib import Path

from infra.service import ServiceDefinition
from services.notification.api import router
from services.notification.consumers import consumers
from services.notification.projections import projections
from services.notification.retention import tasks

definition = ServiceDefinition(
    name="notification",
    migrations=Path(__file__).parent / "migrations",
    projections=projections,
    consumers=consumers,
    routers=[router],
    tasks=tasks,
)
