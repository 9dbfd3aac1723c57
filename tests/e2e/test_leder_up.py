"""`leder up` on the embedded default: five services answer, and however it ends (Ctrl-C, SIGTERM, a
closed terminal, SIGKILL, `leder down` from elsewhere) it leaves nothing behind; a taken port starts
nothing and says who holds it."""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from events.topics import SERVICES
from infra.embedded import free_port

pytestmark = pytest.mark.slow


def five_free_ports() -> int:
    return free_ports(5)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (`leder up` takes LEDER_BASE_PORT and the next ones)."""
    for _ in range(100):
        base = free_port()
        if base + count > 65535:
            continue
        ports = range(base, base + count)
        try:
            for port in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


def read_until(process: subprocess.Popen[bytes], marker: str, timeout: float) -> str:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        if time.monotonic() > deadline or process.poll() is not None:
            raise AssertionError(f"`leder up` did not say {marker!r}; it said:\n{seen.decode()}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            seen += os.read(fd, 65536)  # unbuffered: select and a buffered reader disagree
    return seen.decode()


def test_leder_up_starts_all_five_services_and_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    base = free_ports(6)
    env = {k: v for k, v in os.environ.items() if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP")}
    env |= {
        "LEDER_HOME": str(tmp_path / ".leder"),
        "LEDER_BASE_PORT": str(base),
        "LEDER_EMBEDDED_PG_PORT": str(free_port()),
        "LEDER_EMBEDDED_KAFKA_PORT": str(free_port()),
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "leder.cli", "up"],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    pids: set[int] = set()
    try:
        said = read_until(up, "The LeDeR system is running", timeout=180)
        web = f"http://127.0.0.1:{base + 5}"
        assert said.splitlines()[0].startswith(f"LeDeR workspace: {web}"), said
        assert httpx.get(f"{web}/healthz", timeout=5).json() == {"status": "ok", "service": "web"}
        assert httpx.get(f"{web}/", timeout=5, follow_redirects=True).url.path == "/sign-in"
        for offset, service in enumerate(SERVICES):
            response = httpx.get(f"http://127.0.0.1:{base + offset}/healthz", timeout=5)
            assert response.json() == {"status": "ok", "service": service}
            assert f"http://127.0.0.1:{base + offset}" in said
        pids = {p.pid for p in psutil.Process(up.pid).children(recursive=True)}
        postmaster = tmp_path / ".leder" / "pgdata" / "postmaster.pid"
        pids.add(int(postmaster.read_text().splitlines()[0]))
        assert len(pids) >= 8  # five services, the web application, the broker, PostgreSQL
        only_the_issuers_hold_token_keys(tmp_path / ".leder", up.pid, env, base)
        # Issue 15: the embedded PostgreSQL's password, and the env file whose URL carries it, are the
        # owner's alone; logs are readable by the owner's group at most.
        for secret in ("postgres.password", "env"):
            assert oct((tmp_path / ".leder" / secret).stat().st_mode & 0o777) == "0o600", secret
        for log in (tmp_path / ".leder" / "logs").iterdir():
            assert oct(log.stat().st_mode & 0o777) == "0o640", log

        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, f"left running: {[p for p in pids if psutil.pid_exists(p)]}"
        time.sleep(0.2)
    for offset in range(6):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", base + offset)) != 0


SIGNING_KEYS = ("LEDER_TOKEN_SIGNING_KEY_FILE", "LEDER_SYSTEM_TOKEN_KEY_FILE")


def only_the_issuers_hold_token_keys(home: Path, supervisor: int, env: dict[str, str], base: int) -> None:
    """Issue 16: no service can mint a caller's token. The people key is the web application's and
    `leder token`'s alone, the system key `leder audit reconcile`'s; each service is given the public
    keys only, and accepts what the issuers sign and nothing signed otherwise."""
    for key in ("token-signing-key.pem", "system-token-key.pem"):
        assert oct((home / key).stat().st_mode & 0o777) == "0o600", key
    assert not (home / "jwt-secret").exists()
    served: set[str] = set()
    for process in psutil.Process(supervisor).children(recursive=True):
        command = process.cmdline()
        if "serve" not in command:
            continue
        name, environ = command[-1], process.environ()
        served.add(name)
        assert not [k for k in environ if "JWT" in k], name
        held = {k for k in SIGNING_KEYS if k in environ}
        assert held == ({"LEDER_TOKEN_SIGNING_KEY_FILE"} if name == "web" else set()), name
        if name != "web":
            assert environ["LEDER_TOKEN_JWKS_FILE"] == str(home / "token-jwks.json")
            assert environ["LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE"] == str(home / "system-token-public-key.pem")
    assert served == {*SERVICES, "web"}
    # The CLI finds the keys where `leder up` wrote them down (the shell names none).
    cli_env = {k: v for k, v in env.items() if k not in SIGNING_KEYS}

    def leder(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "leder.cli", *args],
            env=cli_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    minted = leder("token", "--role", "lac", "--sub", "alice")
    assert minted.returncode == 0, minted.stderr
    queue = f"http://127.0.0.1:{base + 1}/allocation-queue"
    assert httpx.get(queue, headers={"Authorization": f"Bearer {minted.stdout.strip()}"}).status_code == 200
    forged = jwt.encode(
        {"sub": "alice", "role": "lac", "iss": "leder", "aud": "leder-services", "exp": 4102444800},
        "any secret at all, long enough for HS256",
        algorithm="HS256",
    )
    refused = httpx.get(queue, headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
    # The services' own `system` role: the reconciliation reads every service's feed with it.
    reconciled = leder("audit", "reconcile", "--reader", "ig.jo")
    assert reconciled.returncode == 0, reconciled.stderr


ROOT = Path(__file__).parents[2]


@dataclass
class Up:
    """A `leder up` the test started, and the ports its system listens on."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    home: Path
    ports: list[int]

    def system(self) -> set[int]:
        """Every process of the system: the services, the web application, the broker, PostgreSQL and its
        backends (all descendants of `leder up`)."""
        return {p.pid for p in psutil.Process(self.process.pid).children(recursive=True)}

    def started(self) -> set[int]:
        """The processes `leder up` started itself (the services, the web application, the broker,
        PostgreSQL's postmaster), without PostgreSQL's backends, which come and go on their own (an
        autovacuum worker, a connection a pool opens)."""
        return {p.pid for p in psutil.Process(self.process.pid).children(recursive=False)}


def up_env(home: Path) -> tuple[dict[str, str], list[int]]:
    base = free_ports(len(SERVICES) + 1)
    pg, kafka = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("LEDER_DATABASE_URL", "LEDER_KAFKA_BOOTSTRAP")}
    env |= {
        "LEDER_HOME": str(home),
        "LEDER_BASE_PORT": str(base),
        "LEDER_EMBEDDED_PG_PORT": str(pg),
        "LEDER_EMBEDDED_KAFKA_PORT": str(kafka),
    }
    return env, [*range(base, base + len(SERVICES) + 1), pg, kafka]


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Up]:
    """`leder up` running, started with `preexec` (the test's parameter, if any) in the child."""
    preexec: Callable[[], object] | None = getattr(request, "param", None)
    env, ports = up_env(tmp_path / ".leder")
    process = subprocess.Popen(
        [sys.executable, "-m", "leder.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec,
    )
    up = Up(process, env, tmp_path / ".leder", ports)
    try:
        read_until(process, "The LeDeR system is running", timeout=180)
        yield up
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def gone(pids: set[int], within: float) -> None:
    """No process of `pids` runs (a zombie has ended) within `within` seconds."""
    deadline = time.monotonic() + within

    def live() -> list[int]:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    while live():
        assert time.monotonic() < deadline, f"left running after {within}s: {live()}"
        time.sleep(0.1)


def nothing_listens(ports: list[int]) -> None:
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_killed_or_hung_up_leder_up_leaves_no_process_of_the_system_within_5_s(
    running: Up, how: signal.Signals
) -> None:
    system = running.system()
    assert len(system) >= 8  # five services, the web application, the broker, PostgreSQL (and backends)
    running.process.send_signal(how)
    gone(system, within=5)
    nothing_listens(running.ports)
    assert running.process.wait(5) == (0 if how == signal.SIGHUP else -signal.SIGKILL)


def ignore_sigint() -> None:
    """As a shell starts a background job (`make test &`): SIGINT inherited as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("running", [ignore_sigint], indirect=True, ids=["SIGINT-ignored"])
def test_leder_up_started_with_sigint_ignored_still_stops_on_sigint(running: Up) -> None:
    system = running.system()
    running.process.send_signal(signal.SIGINT)
    assert running.process.wait(60) == 0
    gone(system, within=5)
    nothing_listens(running.ports)


def test_leder_down_stops_a_system_started_elsewhere_and_a_second_leder_up_says_it_would(
    running: Up, tmp_path: Path
) -> None:
    system, started = running.system(), running.started()
    assert len(started) == len(SERVICES) + 3  # and the web application, the broker, PostgreSQL
    # A second `leder up` on the same LEDER_HOME and ports: nothing starts, one line says what to do.
    began = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "leder.cli", "up"], env=running.env, cwd=ROOT, capture_output=True, timeout=30
    )
    said = (second.stdout + second.stderr).decode()
    assert second.returncode == 1 and time.monotonic() - began < 10, said
    assert len(said.splitlines()) == 1 and "`leder down` stops it" in said, said
    assert running.started() == started

    # From another folder, as another shell would.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    down = subprocess.run(
        [sys.executable, "-m", "leder.cli", "down"],
        env=running.env,
        cwd=elsewhere,
        capture_output=True,
        timeout=120,
    )
    assert down.returncode == 0, down
    assert running.process.wait(10) == 0
    gone(system, within=5)
    nothing_listens(running.ports)
    assert not (running.home / "system.pid").exists()


def test_a_taken_port_starts_nothing_and_says_which_port_and_who_holds_it(tmp_path: Path) -> None:
    env, ports = up_env(tmp_path / ".leder")
    taken = ports[2]  # the review service's
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        began = time.monotonic()
        up = subprocess.run(
            [sys.executable, "-m", "leder.cli", "up"], env=env, cwd=ROOT, capture_output=True, timeout=30
        )
        took = time.monotonic() - began
        said = (up.stdout + up.stderr).decode()
        assert up.returncode == 1 and took < 10, (took, said)
        assert len(said.splitlines()) == 1, said
        assert f"port {taken} " in said and f"pid {os.getpid()} " in said, said
        nothing_listens([port for port in ports if port != taken])
    assert not (tmp_path / ".leder" / "pgdata").exists()
