"""`leder up`: the whole system on one machine, on the embedded default or on existing servers."""

import asyncio
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from events.topics import SERVICES, all_topics
from infra import kafka
from infra.embedded import EmbeddedPostgres, TansuBroker, tied_to_this_process, wait_for_port
from infra.local import LOCAL_ENV, audit_key_files, home, write_private
from infra.settings import SERVICE_PORTS
from infra.tokens import system_key_files, token_key_files

# Where people open the system; the five services sit on 8001-8005.
WEB_PORT = 8000
# Instance k (from 2) of a service listens this many ports times k-1 above the first: 8011-8015 for
# the second instances, 8021-8025 for the third, and so on.
INSTANCE_PORT_STEP = 10

# Who runs the system started from a LEDER_HOME: the supervising process (`leder up`, `leder demo`)
# and every process it started, each with its start time (a pid alone may have been reused since).
PID_FILE = "system.pid"


def open_log(path: Path) -> Any:
    """A log to append to, 0640: its owner writes, their group may read, nobody else."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchmod(fd, 0o640)
    return os.fdopen(fd, "ab")


# The keys that sign tokens: no service is given either (the web application gets the people key).
TOKEN_SIGNING_KEYS = ("LEDER_TOKEN_SIGNING_KEY_FILE", "LEDER_SYSTEM_TOKEN_KEY_FILE")

# On one machine the schedulers look often (a deadline passes within seconds of simulated time in
# `leder demo`); production keeps the services' own defaults.
SWEEPS = {
    "LEDER_DEADLINE_SWEEP_SECONDS": "1",
    "LEDER_ACTION_SWEEP_SECONDS": "1",
    "LEDER_RETENTION_SWEEP_SECONDS": "5",
}


class Stack:
    """The whole system. `environ` (default: this process's) configures it and its children; `ports`
    (service -> port, and instance name -> port for the extra instances) overrides LEDER_BASE_PORT
    and the defaults; `durable=False` trades the embedded PostgreSQL's crash safety for speed (tests).

    `instances` runs that many processes of each service, "allocation", "allocation-2", ...: each its
    own HTTP port, all sharing the service's database and its consumer groups (the broker shares the
    partitions out between them, and gives a dead one's to the others), and one relay publishing at
    a time (infra.relay's advisory lock; another takes over when its holder dies). The web
    application, and the URLs `leder up` prints and writes to LEDER_HOME/env, name each service's
    first instance: nothing spreads requests between them here (a load balancer would)."""

    def __init__(
        self,
        folder: Path,
        environ: Mapping[str, str] | None = None,
        ports: Mapping[str, int] | None = None,
        durable: bool = True,
        web: bool = False,
        instances: int = 1,
    ) -> None:
        if instances < 1:
            raise ValueError(f"instances: at least 1, not {instances}")
        self.folder = folder
        self.instances = instances
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

    def needed_ports(self) -> dict[int, str]:
        """Every port the system will listen on, and what for."""
        environ = self.environ
        base_port = int(environ.get("LEDER_BASE_PORT", "8001"))
        for offset, service in enumerate(SERVICES):
            if service not in self.ports:
                self.ports[service] = (
                    base_port + offset if "LEDER_BASE_PORT" in environ else SERVICE_PORTS[service]
                )
        for service in SERVICES:
            for k, name in enumerate(self.instances_of(service)[1:], start=2):
                self.ports.setdefault(name, self.ports[service] + INSTANCE_PORT_STEP * (k - 1))
        if self.web:
            self.ports.setdefault("web", self._web_port(base_port))
        needed = {port: f"the {name} service" for name, port in self.ports.items() if name != "web"}
        if self.web:
            needed[self.ports["web"]] = "the web application"
        if not environ.get("LEDER_DATABASE_URL"):
            needed[int(environ.get("LEDER_EMBEDDED_PG_PORT", "54329"))] = "the embedded PostgreSQL"
        if not environ.get("LEDER_KAFKA_BOOTSTRAP"):
            needed[int(environ.get("LEDER_EMBEDDED_KAFKA_PORT", "9092"))] = "the embedded broker"
        return needed

    def check(self) -> None:
        """Raise SystemInTheWay, having started nothing, if a port the system needs is taken or a system
        from the same folder still runs."""
        running = Running.read(self.folder)
        for port, what in sorted(self.needed_ports().items()):
            if not _port_free(port):
                raise SystemInTheWay(_taken(port, what, self.folder, running))
        if running is not None and running.alive():
            raise SystemInTheWay(
                f"a LeDeR system from {self.folder} is still running ({running.describe()}):"
                " `leder down` stops it"
            )

    def start(self) -> dict[str, str]:
        environ = self.environ
        self.check()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(mode=0o750, exist_ok=True)
        self._record()
        database_url = environ.get("LEDER_DATABASE_URL")
        if not database_url:
            port = int(environ.get("LEDER_EMBEDDED_PG_PORT", "54329"))
            self.postgres = EmbeddedPostgres(self.folder / "pgdata", port, durable=self.durable)
            _say(f"starting PostgreSQL (embedded) on 127.0.0.1:{port}, data in {self.postgres.data_dir}")
            self.postgres.start()
            self._record()
            database_url = self.postgres.url
        bootstrap = environ.get("LEDER_KAFKA_BOOTSTRAP")
        if not bootstrap:
            port = int(environ.get("LEDER_EMBEDDED_KAFKA_PORT", "9092"))
            self.broker = TansuBroker(port, log_file=self.folder / "logs" / "tansu.log")
            _say(f"starting the tansu broker (embedded, in memory) on 127.0.0.1:{port}")
            self.broker.start()
            self._record()
            bootstrap = self.broker.bootstrap
        prefix = environ.get("LEDER_TOPIC_PREFIX", "")
        partitions = int(environ.get("LEDER_TOPIC_PARTITIONS", "4"))
        asyncio.run(_create_topics(bootstrap, prefix, partitions))
        # Who may sign a token: the people key for the web application and `leder token` only, the
        # system key for `leder audit reconcile` only; every service gets the public keys alone.
        token_key, token_jwks = token_key_files(self.folder)
        system_key, system_public_key = system_key_files(self.folder)
        audit_key, audit_public_key = audit_key_files(self.folder)
        event_keys, event_public_keys = self._event_keys()
        # The stack's clock: real time unless `leder demo` is running simulated months (infra.clock).
        # A file left by a demo that was stopped half-way must not start the system in the past.
        clock_file = self.folder / "clock"
        clock_file.unlink(missing_ok=True)
        env = {
            "LEDER_DATABASE_URL": database_url,
            "LEDER_KAFKA_BOOTSTRAP": bootstrap,
            "LEDER_TOPIC_PREFIX": prefix,
            "LEDER_TOKEN_JWKS_FILE": str(token_jwks),
            "LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE": str(system_public_key),
            "LEDER_TOKEN_SIGNING_KEY_FILE": str(token_key),
            "LEDER_SYSTEM_TOKEN_KEY_FILE": str(system_key),
            "LEDER_CLOCK_FILE": str(clock_file),
            # The local key manager's files (infra/keys.py), unless the environment names a key manager.
            "LEDER_KEY_DIR": environ.get("LEDER_KEY_DIR") or str(self.folder / "keys"),
            # The audit log's keys (never in its database) and the checkpoints it publishes outside it.
            "LEDER_AUDIT_SIGNING_KEY_FILE": str(audit_key),
            "LEDER_AUDIT_PUBLIC_KEY_FILE": str(audit_public_key),
            "LEDER_AUDIT_CHECKPOINT_LOG": environ.get("LEDER_AUDIT_CHECKPOINT_LOG")
            or str(self.folder / "audit-checkpoints.log"),
            # Each service's event signing key and every service's pinned public keys (infra.signing).
            "LEDER_EVENT_SIGNING_KEY_DIR": str(event_keys),
            "LEDER_EVENT_PUBLIC_KEYS_FILE": str(event_public_keys),
        }
        for service in SERVICES:
            for name in self.instances_of(service):
                child_env = {**SWEEPS, **environ, **env, "LEDER_HTTP_PORT": str(self.ports[name])}
                for signing_key in TOKEN_SIGNING_KEYS:
                    child_env.pop(signing_key, None)
                if service != "audit":  # only the audit service signs its log
                    child_env.pop("LEDER_AUDIT_SIGNING_KEY_FILE", None)
                self.child_env[name] = child_env
        # The further instances once the first of each listens, having created and migrated its
        # database: two processes creating one database at once can both see it missing.
        for extra in (False, True):
            for service in SERVICES:
                for name in self.instances_of(service)[1:] if extra else [service]:
                    self.start_service(name)
                    _say(f"starting {name} on {self.url(name)}")
            if not extra and self.instances > 1:
                for service in SERVICES:
                    self.wait_service(service)
        urls = {f"LEDER_{service.upper()}_URL": self.url(service) for service in SERVICES}
        if self.web:
            self.child_env["web"] = {
                **environ,
                **env,
                **urls,
                "LEDER_WEB_PORT": str(self.ports["web"]),
                # Only here: a sign-in page that lists the system's people (services/web/signin.py).
                "LEDER_WEB_DEV_SIGNIN": "1",
            }
            self.child_env["web"].pop("LEDER_SYSTEM_TOKEN_KEY_FILE", None)
            self.child_env["web"].pop("LEDER_AUDIT_SIGNING_KEY_FILE", None)
            self.child_env["web"].pop("LEDER_EVENT_SIGNING_KEY_DIR", None)  # it publishes no events
            self.start_service("web")
            _say(f"starting the web application on {self.url('web')}")
            urls["LEDER_WEB_URL"] = self.url("web")
        write_private(self.folder / LOCAL_ENV, "".join(f"{k}={v}\n" for k, v in (env | urls).items()))
        for service in self.services:
            self.wait_service(service)
        return {service: self.url(service) for service in self.services}

    def instances_of(self, service: str) -> list[str]:
        """The names of the service's processes: the service's own name for the first instance."""
        return [service] + [f"{service}-{k}" for k in range(2, self.instances + 1)]

    def _event_keys(self) -> tuple[Path, Path]:
        """The event keys the environment names, else a set made once in LEDER_HOME/keys/events."""
        from infra.signing import generate_key_set

        key_dir = self.environ.get("LEDER_EVENT_SIGNING_KEY_DIR")
        public_keys = self.environ.get("LEDER_EVENT_PUBLIC_KEYS_FILE")
        if key_dir and public_keys:
            return Path(key_dir), Path(public_keys)
        return generate_key_set(self.folder / "keys" / "events")

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
        """Start one service's process, or one instance's ("allocation-2"), (again) with the environment
        `start` gave it; do not wait."""
        log = open_log(self.folder / "logs" / f"{service}.log")
        self.services[service] = subprocess.Popen(
            [sys.executable, "-m", "leder.cli", "serve", service.partition("-")[0]],
            env=self.child_env[service],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=tied_to_this_process(signal.SIGTERM),
        )
        log.close()  # the child holds its own copy of the descriptor
        self._record()
        return self.services[service]

    def wait_service(self, service: str, timeout: float = 90) -> None:
        """Until the service's process listens and its /healthz answers."""
        wait_for_port(self.ports[service], timeout=timeout, process=self.services[service])
        _wait_healthy(f"{self.url(service)}/healthz")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until every service's /readyz answers 200 (the web application has only /healthz, which
        `start` waited for); a process that dies meanwhile, or the timeout, raises naming who.
        Of several instances of a service only one relay publishes; the others' /readyz says their
        relay stands by, which is ready."""
        deadline = time.monotonic() + timeout
        waiting = {service for service in self.services if service != "web"}
        last: dict[str, str] = {}
        with httpx.Client(timeout=2) as client:
            while waiting:
                for service in sorted(waiting):
                    process = self.services[service]
                    if process.poll() is not None:
                        raise RuntimeError(f"{service} stopped while starting (see its log)")
                    try:
                        response = client.get(f"{self.url(service)}/readyz")
                        if response.status_code == 200:
                            waiting.discard(service)
                        else:
                            last[service] = response.text
                    except httpx.HTTPError as error:
                        last[service] = repr(error)
                if waiting and time.monotonic() > deadline:
                    raise TimeoutError(
                        "not ready after {:.0f}s: {}".format(
                            timeout, "; ".join(f"{s} {last.get(s, '')}" for s in sorted(waiting))
                        )
                    )
                if waiting:
                    time.sleep(0.2)

    def _record(self) -> None:
        """Write down (PID_FILE) this process and every process it started, for `leder down` and the
        next start to find, whoever runs them."""
        processes = {name: process.pid for name, process in self.services.items() if process.poll() is None}
        if self.broker and self.broker.process and self.broker.process.poll() is None:
            processes["broker"] = self.broker.process.pid
        if self.postgres and self.postgres.process and self.postgres.process.poll() is None:
            processes["postgres"] = self.postgres.process.pid
        Running(os.getpid(), processes).write(self.folder)

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
        running = Running.read(self.folder)
        if running is not None and running.supervisor == os.getpid():
            (self.folder / PID_FILE).unlink(missing_ok=True)

    def watch(self) -> str | None:
        """Block until a service dies; return its name."""
        while True:
            for name, process in self.services.items():
                if process.poll() is not None:
                    return name
            time.sleep(0.5)


class SystemInTheWay(OSError):
    """What keeps the system from starting (a port taken, a system still running): one line."""


class Running:
    """The processes of a system started from a folder, as its PID_FILE names them."""

    def __init__(
        self, supervisor: int, processes: Mapping[str, int], started: Mapping[int, float] | None = None
    ) -> None:
        self.supervisor = supervisor
        self.processes = dict(processes)
        pids = [supervisor, *self.processes.values()]
        self.started = dict(started) if started is not None else {p: t for p in pids if (t := _started(p))}

    @classmethod
    def read(cls, folder: Path) -> "Running | None":
        try:
            data: dict[str, Any] = json.loads((folder / PID_FILE).read_text())
            started = {int(pid): float(t) for pid, t in data.get("started", {}).items()}
            return cls(int(data["supervisor"]), {k: int(v) for k, v in data["processes"].items()}, started)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def write(self, folder: Path) -> None:
        data = {"supervisor": self.supervisor, "processes": self.processes, "started": self.started}
        temporary = folder / f"{PID_FILE}.{os.getpid()}"
        temporary.write_text(json.dumps(data, indent=1) + "\n")
        temporary.replace(folder / PID_FILE)

    def is_alive(self, pid: int) -> bool:
        return _alive(pid, self.started.get(pid))

    def live(self) -> dict[str, int]:
        """Who still runs: "supervisor" and the processes it started, by name."""
        named = {"supervisor": self.supervisor, **self.processes}
        return {name: pid for name, pid in named.items() if self.is_alive(pid)}

    def alive(self) -> bool:
        return bool(self.live())

    def describe(self) -> str:
        live = self.live()
        if "supervisor" in live:
            return f"started by pid {self.supervisor}"
        return "left running by pid {} that has gone: {}".format(
            self.supervisor, ", ".join(f"{name} pid {pid}" for name, pid in live.items())
        )


def _started(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # no such process, or no psutil: a pid is all we know
        return None


def _alive(pid: int, started: float | None) -> bool:
    """Whether `pid` is still the process that started at `started` (a zombie has ended)."""
    try:
        import psutil
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 0.01:
            return False  # the pid was reused
        return bool(process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _port_free(port: int) -> bool:
    """Whether this port can be listened on at 127.0.0.1 as the servers do (SO_REUSEADDR: a port a
    stopped system left in TIME_WAIT is free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as failed:
            return failed.errno != errno.EADDRINUSE
    return True


def _holder(port: int) -> int | None:
    """The process listening on `port`, if this user may see it."""
    try:
        import psutil

        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
                pid: int | None = connection.pid
                return pid
    except Exception:  # no psutil, or not allowed to look
        return None
    return None


MOVE_PORTS = (
    "stop it or move the system's ports"
    " (LEDER_BASE_PORT, LEDER_WEB_PORT, LEDER_EMBEDDED_PG_PORT, LEDER_EMBEDDED_KAFKA_PORT)"
)


def _taken(port: int, what: str, folder: Path, running: Running | None) -> str:
    """One line: the port, who holds it, and what to do about it."""
    pid = _holder(port)
    if pid is None:
        return f"port {port} (for {what}) is taken by a process this user cannot see: {MOVE_PORTS}"
    holder = f"pid {pid}"
    try:
        import psutil

        process = psutil.Process(pid)
        command = " ".join(process.cmdline()) or process.name()
        holder += f" ({command[:80]}{'...' if len(command) > 80 else ''})"
    except Exception:  # gone meanwhile, or no psutil
        pass
    said = f"port {port} (for {what}) is taken by {holder}"
    if running is not None and pid in running.live().values():
        return f"{said}, of the LeDeR system from {folder} ({running.describe()}): `leder down` stops it"
    return f"{said}: {MOVE_PORTS}"


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


def _say(message: str, error: bool = False) -> None:
    try:
        print(message, file=sys.stderr if error else sys.stdout, flush=True)
    except OSError:
        pass  # the terminal has gone (SIGHUP): the system stops all the same


def up(instances: int = 1) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    # Ctrl-C, `kill`, `leder down` and a closed terminal all stop the whole system; SIGINT too when it
    # came inherited as ignored (a background job, a CI runner, a process manager).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    stack = Stack(home(), web=True, instances=instances)
    started = False
    try:
        stack.check()
        _say(f"LeDeR workspace: {stack.url_of_web()}  (open it in a browser and sign in as the LAC)")
        started = True
        urls = stack.start()
        stack.wait_ready()
        _say("\nThe LeDeR system is running:")
        _say(f"  open {urls['web']} in a browser and sign in as the LAC (Alex Morgan)")
        width = max(13, *(len(name) + 1 for name in urls))
        for service, url in urls.items():
            if service != "web":
                _say(f"  {service:<{width}} {url}   (API docs: {url}/docs)")
        if instances > 1:
            _say(
                f"  ({instances} instances of each service share its database and consumer groups; the web"
                " application and LEDER_HOME/env name the first of each)"
            )
        _say("\nA token for the HTTP APIs:  leder token --role lac --sub alice")
        _say(
            'Then:  curl -H "Authorization: Bearer $(leder token --role lac --sub alice)" '
            f"{urls['notification']}/healthz"
        )
        _say("Logs: " + str(stack.folder / "logs") + "    Stop: Ctrl-C (or `leder down`)")
        dead = stack.watch()
        _say(f"{dead} stopped unexpectedly (see its log); stopping the system")
        return 1
    except KeyboardInterrupt:
        if started:
            _say("\nstopping...")
        return 0
    except SystemInTheWay as in_the_way:
        _say(f"leder up: {in_the_way}", error=True)
        return 1
    except (RuntimeError, TimeoutError, OSError) as failed:
        _say(f"leder up: {failed}; stopping the system", error=True)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        if started:
            stack.stop()
            _say("stopped")


# How to stop each kind of process a supervisor that has gone left behind (services and the web
# application by default: SIGTERM).
STOP_SIGNALS = {"broker": signal.SIGKILL, "postgres": signal.SIGINT}


def down() -> int:
    """Stop the system started from LEDER_HOME, by whatever process: its supervisor (which stops the
    rest, cleanly), then anything still running that it had started."""
    folder = home()
    running = Running.read(folder)
    if running is None or not running.alive():
        (folder / PID_FILE).unlink(missing_ok=True)
        _say(f"no LeDeR system is running from {folder}")
        return 0
    _say(f"stopping the LeDeR system from {folder} ({running.describe()})")
    if running.is_alive(running.supervisor):
        _kill(running.supervisor, signal.SIGTERM)
        if not _gone(running, ["supervisor"], timeout=60):
            _kill(running.supervisor, signal.SIGKILL)
            _gone(running, ["supervisor"], timeout=5)
    left = running.live()
    for name, pid in left.items():
        _kill(pid, STOP_SIGNALS.get(name, signal.SIGTERM))
    if not _gone(running, list(left), timeout=30):
        for pid in running.live().values():
            _kill(pid, signal.SIGKILL)
        _gone(running, list(left), timeout=5)
    if running.alive():
        _say(f"leder down: still running: {running.describe()}", error=True)
        return 1
    (folder / PID_FILE).unlink(missing_ok=True)
    _say("stopped")
    return 0


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it has just ended


def _gone(running: Running, names: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(name in running.live() for name in names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
