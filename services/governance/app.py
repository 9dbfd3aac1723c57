"""Wiring of the governance service. Until its domain lands (issue 6) it serves health and relays
its outbox."""

from pathlib import Path

from infra.service import ServiceDefinition

definition = ServiceDefinition(name="governance", migrations=Path(__file__).parent / "migrations")
