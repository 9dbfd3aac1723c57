"""Several instances of a service start at once (`leder up --instances N`): each makes sure its
database exists, and none may fail because another created it first."""

import asyncio
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

from infra.db import drop_database, ensure_database


def _database(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


async def test_instances_creating_one_database_at_once_all_start(pg_server_url: str) -> None:
    for _ in range(10):
        url = _database(pg_server_url, f"instances_{uuid4().hex[:12]}")
        try:
            await asyncio.gather(*(ensure_database(url) for _ in range(4)))
        finally:
            await drop_database(url)
