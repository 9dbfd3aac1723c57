"""The services' sense of now.

In production it is the system clock. On the embedded stack (`leder up` sets LEDER_CLOCK_FILE),
`leder demo` can carry the whole system through months of simulated time: it writes a simulated
moment to that file and every service reads its now from it, so every event, deadline, sweep and
report sees the same simulated calendar. Without the file the clock is the real one, so a stack the
demo has finished with runs on real time again. Production deployments never set the variable.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class FileClock:
    """Now as `leder demo` says: the file holds a simulated moment and the real moment it was
    written; time runs on at the real pace from there until the next write, so events recorded
    one after another keep their order."""

    def __init__(self, path: Path, real: Clock = system_clock) -> None:
        self.path = path
        self.real = real
        self._seen: tuple[int, int] | None = None
        self._offset: float | None = None

    def __call__(self) -> datetime:
        now = self.real()
        offset = self._current_offset()
        return now if offset is None else datetime.fromtimestamp(now.timestamp() + offset, UTC)

    def _current_offset(self) -> float | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._offset = None, None
            return None
        seen = (stat.st_ino, stat.st_mtime_ns)  # each write is a new file
        if seen != self._seen:
            self._seen, self._offset = seen, read_offset(self.path)
        return self._offset


def read_offset(path: Path) -> float | None:
    """Seconds to add to the real clock, from the file's `simulated real` pair of ISO moments."""
    try:
        simulated, real = path.read_text().split()
        return datetime.fromisoformat(simulated).timestamp() - datetime.fromisoformat(real).timestamp()
    except (FileNotFoundError, ValueError):
        return None


def set_simulated_now(path: Path, simulated: datetime, real: datetime | None = None) -> None:
    """Move every service of the stack to `simulated`. Written whole then renamed, so a service never
    reads half a file."""
    real = real or system_clock()
    partial = path.with_suffix(".writing")
    partial.write_text(f"{simulated.astimezone(UTC).isoformat()} {real.isoformat()}\n")
    partial.replace(path)


def clock_from_env() -> Clock:
    if path := os.environ.get("LEDER_CLOCK_FILE"):
        return FileClock(Path(path))
    return system_clock
