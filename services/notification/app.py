"""Wiring of the notification service. Until its domain lands (issue 3) it serves health and relays
its outbox."""

from pathlib import Path

from infra.service import ServiceDefinition

definition = ServiceDefinition(name="notification", migrations=Path(__file__).parent / "migrations")
