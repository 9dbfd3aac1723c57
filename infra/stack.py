"""`leder up`: the whole system on one machine, on the embedded default or on existing servers."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from events.topics import SERVICES, all_topics
from infra import kafka
from infra.embedded import EmbeddedPostgres, TansuBroker, wait_for_port
from infra.settings import SERVICE_PORTS

# Where people open the system; the five services sit on 8001-8005.
WEB_PORT = 8000

LOCAL_ENV = "env"


def home() -> Path:
    return Path(os.environ.get("LEDER_HOME", ".leder")).resolve()


def jwt_secret_file(folder: Path) -> Path:
    """The embedded stack's signing secret, generated once and readable by its owner only."""
    path = folder / "jwt-secret"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    path.chmod(0o600)
    return path


def local_env() -> dict[str, str]:
    """What the last `leder up` wrote down, for the other commands (token, rebuild) to find it."""
    path = home() / LOCAL_ENV
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def env_or_local(name: str) -> str | None:
    return os.environ.get(name) or local_env().get(name)


# On one machine the schedulers look often (a deadline passes within seconds of simulated time in
# `leder demo`); production keeps the services' own defaults.
SWEEPS = {"LEDER_DEADLINE_SWEEP_SECONDS": "1", "LEDER_ACTION_SWEEP_SECONDS": "1"}


class Stack:
    """The whole system. `environ` (default: this process's) configures it and its children; `ports`
    (service -> port) overrides LEDER_BASE_PORT and the defaults; `durable=False` trades the embedded
    PostgreSQL's crash safety for speed (tests)."""

    def __init__(
        self,
        folder: Path,
        environ: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        durable: bool = True,
        web: bool = False,
    ) -> None:
        self.folder = folder
        self.environ = dict(os.environ if environ is None else environ)
        self.ports = dict(ports or {})
        self.durable = durable
        # The web application people use; the fault tests and benches drive the APIs and do without it.
        self.web = web
        self.postgres: EmbeddedPostgres | None = None
        self.broker: TansuBroker | None = None
        self.services: dict[str, subprocess.Popen[bytes]] = {}
        # Kept so that a service can be started again (after a crash, in fault tests) exactly as before.
        self.child_env: dict[str, dict[str, str]] = {}

    def start(self) -> dict[str, str]:
        environ = self.environ
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(exist_ok=True)
        database_url = environ.get("LEDER_DATABASE_URL")
        if not database_url:
            port = int(environ.get("LEDER_EMBEDDED_PG_PORT", "54329"))
            self.postgres = EmbeddedPostgres(self.folder / "pgdata", port, durable=self.durable)
            _say(f"starting PostgreSQL (embedded) on 127.0.0.1:{port}, data in {self.postgres.data_dir}")
            self.postgres.start()
            database_url = self.postgres.url
        bootstrap = environ.get("LEDER_KAFKA_BOOTSTRAP")
        if not bootstrap:
            port = int(environ.get("LEDER_EMBEDDED_KAFKA_PORT", "9092"))
            self.broker = TansuBroker(port, log_file=self.folder / "logs" / "tansu.log")
            _say(f"starting the tansu broker (embedded, in memory) on 127.0.0.1:{port}")
            self.broker.start()
            bootstrap = self.broker.bootstrap
        prefix = environ.get("LEDER_TOPIC_PREFIX", "")
        partitions = int(environ.get("LEDER_TOPIC_PARTITIONS", "4"))
        asyncio.run(_create_topics(bootstrap, prefix, partitions))
        secret_file = jwt_secret_file(self.folder)
        # The stack's clock: real time unless `leder demo` is running simulated months (infra.clock).
        # A file left by a demo that was stopped half-way must not start the system in the past.
        clock_file = self.folder / "clock"
        clock_file.unlink(missing_ok=True)
        env = {
            "LEDER_DATABASE_URL": database_url,
            "LEDER_KAFKA_BOOTSTRAP": bootstrap,
            "LEDER_TOPIC_PREFIX": prefix,
            "LEDER_JWT_SECRET_FILE": str(secret_file),
            "LEDER_CLOCK_FILE": str(clock_file),
        }
        base_port = int(environ.get("LEDER_BASE_PORT", "8001"))
        for offset, service in enumerate(SERVICES):
            if service not in self.ports:
                self.ports[service] = (
                    base_port + offset if "LEDER_BASE_PORT" in environ else SERVICE_PORTS[service]
                )
            child_env = {**SWEEPS, **environ, **env, "LEDER_HTTP_PORT": str(self.ports[service])}
            child_env.pop("LEDER_JWT_SECRET", None)
            self.child_env[service] = child_env
            self.start_service(service)
            _say(f"starting {service} on {self.url(service)}")
        urls = {f"LEDER_{service.upper()}_URL": self.url(service) for service in SERVICES}
        if self.web:
            self.ports.setdefault("web", self._web_port(base_port))
            self.child_env["web"] = {
                **environ,
                **env,
                **urls,
                "LEDER_WEB_PORT": str(self.ports["web"]),
                # Only here: a sign-in page that lists the system's people (services/web/signin.py).
                "LEDER_WEB_DEV_SIGNIN": "1",
            }
            self.child_env["web"].pop("LEDER_JWT_SECRET", None)
            self.start_service("web")
            _say(f"starting the web application on {self.url('web')}")
            urls["LEDER_WEB_URL"] = self.url("web")
        (self.folder / LOCAL_ENV).write_text("".join(f"{k}={v}\n" for k, v in (env | urls).items()))
        for service in self.services:
            self.wait_service(service)
        return {service: self.url(service) for service in self.services}

    def _web_port(self, base_port: int) -> int:
        if "LEDER_WEB_PORT" in self.environ:
            return int(self.environ["LEDER_WEB_PORT"])
        return base_port + len(SERVICES) if "LEDER_BASE_PORT" in self.environ else WEB_PORT

    def url_of_web(self) -> str:
        base = int(self.environ.get("LEDER_BASE_PORT", "8001"))
        return f"http://127.0.0.1:{self.ports.get('web') or self._web_port(base)}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start_service(self, service: str) -> subprocess.Popen[bytes]:
        """Start one service's process (again) with the environment `start` gave it; do not wait."""
        log = open(self.folder / "logs" / f"{service}.log", "ab")  # noqa: SIM115
        self.services[service] = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "serve", service],
            env=self.child_env[service],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child holds its own copy of the descriptor
        return self.services[service]

    def wait_service(self, service: str, timeout: float = 90) -> None:
        """Until the service's process listens and its /healthz answers."""
        wait_for_port(self.ports[service], timeout=timeout, process=self.services[service])
        _wait_healthy(f"{self.url(service)}/healthz")

    def stop(self) -> None:
        for process in self.services.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.services.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.services.clear()
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()

    def watch(self) -> str | None:
        """Block until a service dies; return its name."""
        while True:
            for name, process in self.services.items():
                if process.poll() is not None:
                    return name
            time.sleep(0.5)


async def _create_topics(bootstrap: str, prefix: str, partitions: int) -> None:
    await kafka.wait_for_broker(bootstrap)
    await kafka.ensure_topics(bootstrap, all_topics(prefix), partitions)


def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.2)


def _say(message: str) -> None:
    print(message, flush=True)


def up() -> int:
    stack = Stack(home(), web=True)
    _say(f"LeDeR workspace: {stack.url_of_web()}  (open it in a browser and sign in as the LAC)")
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        urls = stack.start()
        _say("\nThe LeDeR system is running:")
        _say(f"  open {urls['web']} in a browser and sign in as the LAC (Alex Morgan)")
        for service, url in urls.items():
            if service != "web":
                _say(f"  {service:<13} {url}   (API docs: {url}/docs)")
        _say("\nA token for the HTTP APIs:  leder token --role lac --sub alice")
        _say(
            'Then:  curl -H "Authorization: Bearer $(leder token --role lac --sub alice)" '
            f"{urls['notification']}/healthz"
        )
        _say("Logs: " + str(stack.folder / "logs") + "    Stop: Ctrl-C")
        dead = stack.watch()
        _say(f"{dead} stopped unexpectedly (see its log); stopping the system")
        return 1
    except KeyboardInterrupt:
        _say("\nstopping...")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        _say("stopped")
