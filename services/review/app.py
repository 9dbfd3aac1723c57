"""Wiring of the review service: initial and focused reviews, pauses, escalation, the six-month clock."""

from pathlib import Path

from infra.service import ServiceDefinition
from services.review.api import router
from services.review.consumers import consumers
from services.review.projections import projections
from services.review.scheduler import tasks

definition = ServiceDefinition(
    name="review",
    migrations=Path(__file__).parent / "migrations",
    projections=projections,
    consumers=consumers,
    routers=[router],
    tasks=tasks,
)
