"""Configuration from the environment, read once at start-up."""

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from infra.auth import TokenTrust

SERVICE_PORTS = {"notification": 8001, "allocation": 8002, "review": 8003, "governance": 8004, "audit": 8005}


def database_url_for(server_url: str, database: str) -> str:
    """The same server, another database: each service owns one."""
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    kafka_bootstrap: str
    topic_prefix: str
    http_port: int
    topic_partitions: int = 4
    # Whose bearer tokens the service accepts, checked with public keys only (infra.auth); by default
    # none (the offline commands, which serve no HTTP).
    tokens: TokenTrust = field(default_factory=TokenTrust)

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        server = os.environ.get("LEDER_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        own = os.environ.get(f"LEDER_{service.upper()}_DATABASE_URL") or database_url_for(
            server, f"leder_{service}"
        )
        return cls(
            service=service,
            database_url=own,
            kafka_bootstrap=os.environ.get("LEDER_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            topic_prefix=os.environ.get("LEDER_TOPIC_PREFIX", ""),
            http_port=int(os.environ.get("LEDER_HTTP_PORT", SERVICE_PORTS.get(service, 8000))),
            topic_partitions=int(os.environ.get("LEDER_TOPIC_PARTITIONS", "4")),
            tokens=TokenTrust.from_env(),
        )
