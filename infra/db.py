"""PostgreSQL wiring: one database per service, plain SQL migrations applied at start."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A connection of our own or one lent by a pool: handlers take either.
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection | PoolConnectionProxy

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"

# The database cannot be reached, or dropped the connection mid-command (a restart, a failover): the
# command's transaction did not commit, or its outcome is unknown to the client (a COMMIT the server
# carried out but could not answer). EventStore.transaction finds out which for its appends.
CONNECTION_LOST: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    ConnectionError,
    # A pooled connection the restart left mid-operation ("cannot switch to state 15; another operation
    # is in progress", seen under the PostgreSQL restart fault test).
    asyncpg.exceptions._base.InternalClientError,
)

# Migrations of concurrent starters (several instances of a service) must not interleave.
_MIGRATION_LOCK = 73_011_974


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections go back as they are: asyncpg's default reset (UNLISTEN, RESET ALL,
    advisory unlock) costs a round trip per command. So nothing may leave session state on a pooled
    connection: use SET LOCAL and pg_advisory_xact_lock, or release what you take before you give the
    connection back; a session-long lock or LISTEN takes a connection of its own (`connect_like`).
    An open transaction is still rolled back on release, by asyncpg, without a round trip when none
    is open."""
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, command_timeout=30, reset=_keep_session
    )
    assert pool is not None
    return pool


async def _keep_session(conn: Connection) -> None:
    """No reset query; see create_pool."""


async def connect_like(pool: asyncpg.Pool) -> "asyncpg.Connection[asyncpg.Record]":
    """A connection of its own to the pool's database, with the pool's settings."""
    # asyncpg keeps the arguments the pool was made with (Pool.set_connect_args sets them); the type
    # stubs do not declare them.
    args: list[Any] = getattr(pool, "_connect_args")  # noqa: B009
    kwargs: dict[str, Any] = getattr(pool, "_connect_kwargs")  # noqa: B009
    connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(*args, **kwargs)
    return connection


async def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist (connecting to the server's
    `postgres` database to do so)."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                # Created by a concurrent starter (another instance of the service): PostgreSQL says
                # so as a duplicate database, or, when both got past the catalogue check at once, as
                # a unique violation on pg_database's name index.
                pass
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, parts.fragment))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def migration_files(*folders: Path) -> list[tuple[str, Path]]:
    """Platform migrations first, then the service's own; each named by folder and file."""
    files: list[tuple[str, Path]] = []
    for folder in folders:
        files += [(f"{folder.parent.name}/{p.name}", p) for p in sorted(folder.glob("*.sql"))]
    return files


async def migrate(pool: asyncpg.Pool, *folders: Path) -> list[str]:
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in migration_files(PLATFORM_MIGRATIONS, *folders):
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
