"""Configuration from the environment, read once at start-up."""

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    jwt_secret: str
    http_port: int
    topic_partitions: int = 4

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
            jwt_secret=jwt_secret_from_env(),
            http_port=int(os.environ.get("LEDER_HTTP_PORT", SERVICE_PORTS.get(service, 8000))),
            topic_partitions=int(os.environ.get("LEDER_TOPIC_PARTITIONS", "4")),
        )


def jwt_secret_from_env() -> str:
    secret = os.environ.get("LEDER_JWT_SECRET")
    if not secret and os.environ.get("LEDER_JWT_SECRET_FILE"):
        secret = Path(os.environ["LEDER_JWT_SECRET_FILE"]).read_text().strip()
    if not secret:
        raise RuntimeError("LEDER_JWT_SECRET (or LEDER_JWT_SECRET_FILE) must be set")
    if len(secret) < 32:
        raise RuntimeError("LEDER_JWT_SECRET must be at least 32 characters")
    return secret
