import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from infra import db
from infra.eventstore import EventStore
from infra.local import audit_key_files
from infra.settings import database_url_for
from infra.signing import KEY_DIR_ENV, PUBLIC_KEYS_ENV, generate_key_set
from tests.support import events as _test_events  # noqa: F401  (registers the test payloads)
from tests.support import tokens as test_tokens
from tests.support.backends import kafka_broker, postgres_server


@pytest.fixture(scope="session", autouse=True)
def key_folder() -> Iterator[str]:
    """Key files of services a test starts without one of its own never land in the working tree."""
    with tempfile.TemporaryDirectory(prefix="leder-test-keys-") as folder:
        before = os.environ.get("LEDER_KEY_DIR")
        os.environ["LEDER_KEY_DIR"] = folder
        try:
            yield folder
        finally:
            if before is None:
                os.environ.pop("LEDER_KEY_DIR", None)
            else:
                os.environ["LEDER_KEY_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def token_keys() -> Iterator[Path]:
    """The session's token keys (tests.support.tokens) in files, named in the environment as `leder up`
    names its own: every service a test runs trusts their public halves; the web application and the
    CLI sign with them."""
    with tempfile.TemporaryDirectory(prefix="leder-test-tokens-") as folder:
        folder_path = Path(folder)
        with test_tokens.environment(folder_path):
            yield folder_path


@pytest.fixture(scope="session", autouse=True)
def audit_keys() -> Iterator[Path]:
    """The audit log's key pair, in files as in production (never in its database), for every audit
    service and `leder audit` a test runs; each test publishes checkpoints to a file of its own."""
    with tempfile.TemporaryDirectory(prefix="leder-test-audit-") as folder:
        private, public = audit_key_files(Path(folder))
        names = {"LEDER_AUDIT_SIGNING_KEY_FILE": str(private), "LEDER_AUDIT_PUBLIC_KEY_FILE": str(public)}
        before = {name: os.environ.get(name) for name in names}
        os.environ.update(names)
        try:
            yield Path(folder)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def event_keys() -> Iterator[Path]:
    """Every service's event signing key and the pinned public keys, in files as in production
    (infra.signing), for every service a test starts and every record a test publishes as one."""
    with tempfile.TemporaryDirectory(prefix="leder-test-events-") as folder:
        key_dir, public_keys = generate_key_set(Path(folder))
        names = {KEY_DIR_ENV: str(key_dir), PUBLIC_KEYS_ENV: str(public_keys)}
        before = {name: os.environ.get(name) for name in names}
        os.environ.update(names)
        try:
            yield Path(folder)
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture(autouse=True)
def audit_checkpoint_log(audit_keys: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where this test's audit log publishes its checkpoints: a log's own, as each test's database is."""
    path = audit_keys / f"checkpoints-{uuid4().hex}.log"
    monkeypatch.setenv("LEDER_AUDIT_CHECKPOINT_LOG", str(path))
    return path


@pytest.fixture(autouse=True)
def audit_high_water_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit service a test runs in process publishes its high-water marks (services.audit.highwater)
    only where the test asks (test_audit_high_water.py): many tests count the audit log's own entries.
    The whole systems of the fault tests publish them, as production does."""
    monkeypatch.setenv("LEDER_AUDIT_HIGH_WATER_SECONDS", "3600")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with kafka_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
async def database_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this test alone."""
    url = database_url_for(pg_server_url, f"leder_test_{uuid4().hex[:12]}")
    await db.ensure_database(url)
    yield url
    await db.drop_database(url)


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid4().hex[:10]}."


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[EventStore]:
    pool = await db.create_pool(database_url, max_size=30)
    await db.migrate(pool)
    yield EventStore(pool, "test")
    await pool.close()
