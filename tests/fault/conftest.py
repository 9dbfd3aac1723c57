"""The whole system for fault tests: each service its own OS process on the embedded stack (embedded
PostgreSQL and the tansu broker) in a temporary folder on free ports, with handles to break it.

One system per package: starting it takes tens of seconds, and every fault test leaves it whole again
(it restarts what it kills and resumes what it pauses), so the tests can share it.
"""

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from events.topics import SERVICES
from infra.embedded import EmbeddedPostgres, TansuBroker, free_port
from infra.settings import database_url_for
from infra.tokens import TokenIssuer
from leder.stack import Stack
from tests.support.notifications import NOTIFIER_ORGANISATION
from tests.support.tokens import issuer_of

# What the fault tests need sooner than the production defaults: the review deadline sweep runs every
# few seconds so it takes part in the run, and a gap in the audit log fails /readyz soon enough to be
# seen by a test (a real gap stays open; a gap from events still in flight closes well within this);
# the audit log's high-water marks are published during the run.
FAULT_ENV = {
    "LEDER_DEADLINE_SWEEP_SECONDS": "5",
    "LEDER_ACTION_SWEEP_SECONDS": "5",
    "LEDER_AUDIT_GAP_GRACE_SECONDS": "60",
    "LEDER_AUDIT_HIGH_WATER_SECONDS": "5",
}


@dataclass
class System:
    """The running system and the handles the fault tests break it with. `kill`, `start`,
    `pause_broker`, `resume_broker` and `restart_postgres` block: from a coroutine that must keep
    running meanwhile, call them through `asyncio.to_thread`."""

    urls: dict[str, str]
    issuer: TokenIssuer  # the stack's people key, as `leder token` signs
    bootstrap: str
    database_url: str
    prefix: str
    folder: Path
    stack: Stack = field(repr=False)

    def headers(self, role: str, sub: str = "tester", organisation: str | None = None) -> dict[str, str]:
        """A bearer token's headers; a partner system's token names the organisation of the test
        notification's notifier unless `organisation` says another."""
        if organisation is None and role == "partner_system":
            organisation = NOTIFIER_ORGANISATION
        return {"Authorization": f"Bearer {self.issuer.mint(sub, role, organisation)}"}

    def database_url_for(self, service: str) -> str:
        return database_url_for(self.database_url, f"leder_{service}")

    def log_file(self, service: str) -> Path:
        return self.folder / "logs" / f"{service}.log"

    def pid(self, service: str) -> int:
        return self.stack.services[service].pid

    def kill(self, service: str) -> None:
        """SIGKILL the service's process (no chance to finish anything) and reap it."""
        process = self.stack.services[service]
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def start(self, service: str) -> None:
        """Start the service again with the environment it had, and wait until its /healthz answers."""
        if self.stack.services[service].poll() is None:
            raise RuntimeError(f"{service} is still running")
        self.stack.start_service(service)
        self.stack.wait_service(service)

    def pause_broker(self) -> None:
        """SIGSTOP the broker: connections stay open and nothing answers (its data, in memory, stays)."""
        self._broker_process().send_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        self._broker_process().send_signal(signal.SIGCONT)

    def restart_postgres(self) -> None:
        """Stop PostgreSQL (fast shutdown: every connection is cut) and start it again on the same
        data folder and port."""
        postgres = self._postgres()
        postgres.stop()
        postgres.start()

    async def wait_ready(self, timeout: float = 120) -> None:
        """Until every service's /readyz says ready; fail naming those that are not."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: dict[str, str] = {}
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                last = {}
                for service, url in self.urls.items():
                    try:
                        response = await client.get(f"{url}/readyz")
                        if response.status_code != 200:
                            last[service] = response.text
                    except httpx.HTTPError as error:
                        last[service] = repr(error)
                if not last:
                    return
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"not ready after {timeout}s: {last}")
                await asyncio.sleep(0.25)

    def _broker_process(self) -> subprocess.Popen[bytes]:
        broker: TansuBroker | None = self.stack.broker
        if broker is None or broker.process is None:
            raise RuntimeError("no embedded broker")
        return broker.process

    def _postgres(self) -> EmbeddedPostgres:
        if self.stack.postgres is None:
            raise RuntimeError("no embedded PostgreSQL")
        return self.stack.postgres


@contextmanager
def running_system(folder: Path, *, instances: int = 1) -> Iterator[System]:
    """The system on the embedded stack in `folder`, `instances` of each service (`leder up
    --instances`); the System's urls are the first instance's of each, as the web application uses."""
    # The embedded stack, whatever servers the rest of the test run uses: these tests kill and pause them.
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP") and not k.endswith("_DATABASE_URL")
    }
    environ |= FAULT_ENV | {
        "LEDER_HOME": str(folder),
        "LEDER_TOPIC_PREFIX": "",
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    names = [service if k == 1 else f"{service}-{k}" for service in SERVICES for k in range(1, instances + 1)]
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(names):
        ports = {name: free_port() for name in names}
    stack = Stack(folder, environ=environ, ports=ports, durable=False, instances=instances)
    try:
        started = stack.start()
        assert sorted(started) == sorted(names), started
        assert stack.postgres is not None and stack.broker is not None
        yield System(
            urls={service: started[service] for service in SERVICES},
            issuer=issuer_of(folder),
            bootstrap=stack.broker.bootstrap,
            database_url=stack.postgres.url,
            prefix="",
            folder=folder,
            stack=stack,
        )
    finally:
        if stack.broker and stack.broker.process and stack.broker.process.poll() is None:
            # A test that failed between pause and resume must not leave a stopped broker behind.
            stack.broker.process.send_signal(signal.SIGCONT)
        stack.stop()


@pytest.fixture(scope="package")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    with running_system(tmp_path_factory.mktemp("fault-system")) as running:
        yield running
