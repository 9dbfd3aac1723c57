"""Wiring of the governance service: QA panels, themes, actions, and the reports."""

from pathlib import Path

from infra.service import ServiceDefinition
from services.governance.api import router
from services.governance.consumers import consumers, tasks
from services.governance.projections import projections

definition = ServiceDefinition(
    name="governance",
    migrations=Path(__file__).parent / "migrations",
    projections=projections,
    consumers=consumers,
    routers=[router],
    tasks=tasks,
)
