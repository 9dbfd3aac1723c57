"""Wiring of the allocation service. Until its domain lands (issue 4) it serves health and relays
its outbox."""

from pathlib import Path

from infra.service import ServiceDefinition

definition = ServiceDefinition(name="allocation", migrations=Path(__file__).parent / "migrations")
