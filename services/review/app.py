"""Wiring of the review service. Until its domain lands (issue 5) it serves health and relays
its outbox."""

from pathlib import Path

from infra.service import ServiceDefinition

definition = ServiceDefinition(name="review", migrations=Path(__file__).parent / "migrations")
