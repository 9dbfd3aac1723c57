"""The embedded PostgreSQL asks for its password (SCRAM), has no unix socket, and keeps its secret and
its log out of other people's reach."""

import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.embedded import EmbeddedPostgres, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    home = tmp_path_factory.mktemp("leder-home")
    postgres = EmbeddedPostgres(home / "pgdata", free_port(), durable=False)
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.stop()


async def test_only_the_password_opens_it(server: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        method = await conn.fetchval("SELECT auth_method FROM pg_hba_file_rules WHERE address = '127.0.0.1'")
        assert method == "scram-sha-256"
    finally:
        await conn.close()
    without = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)):
        await asyncpg.connect(without, password="")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(without, password="not-the-password")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(f"postgresql://leder_pg@127.0.0.1:{server.port}/postgres", password="x")


async def test_no_unix_socket_anywhere(server: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        assert await conn.fetchval("SHOW unix_socket_directories") == ""
    finally:
        await conn.close()
    socket_name = f".s.PGSQL.{server.port}"
    for folder in (Path("/tmp"), Path("/var/run/postgresql"), server.data_dir):
        assert not (folder / socket_name).exists()


def test_the_password_file_is_the_owners_and_the_log_is_0640(server: EmbeddedPostgres) -> None:
    assert server.password_file == server.data_dir.parent / "postgres.password"
    assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
    assert len(server.password) >= 32
    assert stat.S_IMODE((server.data_dir / "server.log").stat().st_mode) == 0o640
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    assert server.password not in (server.data_dir / "server.log").read_text()


async def test_a_data_folder_from_before_passwords_gets_one(tmp_path: Path) -> None:
    """A `.leder/pgdata` initialised with trust (before issue 15) starts with a password and SCRAM."""
    old = EmbeddedPostgres(tmp_path / "pgdata", free_port(), durable=False)
    old.start()
    old.stop()
    # As the old code left it: trust everywhere, no password file.
    (old.data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    assert old.password_file is not None
    old.password_file.unlink()
    again = EmbeddedPostgres(tmp_path / "pgdata", old.port, durable=False)
    again.start()
    try:
        conn = await asyncpg.connect(again.url)
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{again.port}/postgres", password="x")
    finally:
        again.stop()
