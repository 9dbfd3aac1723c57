"""Wiring of the allocation service: the LAC's queue, reviewers, conflicts of interest, allocation."""

from pathlib import Path

from infra.service import ServiceDefinition
from services.allocation.api import router
from services.allocation.consumers import consumers
from services.allocation.projections import projections

definition = ServiceDefinition(
    name="allocation",
    migrations=Path(__file__).parent / "migrations",
    projections=projections,
    consumers=consumers,
    routers=[router],
)
