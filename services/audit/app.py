"""Wiring of the audit service. Until its domain lands (issue 7) it serves health and relays
its outbox."""

from pathlib import Path

from infra.service import ServiceDefinition

definition = ServiceDefinition(name="audit", migrations=Path(__file__).parent / "migrations")
