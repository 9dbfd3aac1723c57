"""`leder up` on the embedded default: five services answer, and Ctrl-C leaves nothing behind."""

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
        [sys.executable, "-m", "infra.cli", "up"],
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
        assert oct((tmp_path / ".leder" / "jwt-secret").stat().st_mode & 0o777) == "0o600"

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
