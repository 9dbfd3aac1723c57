"""Shared by the bench scripts: a PostgreSQL to measure on, and the results file."""

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

from tests.support.backends import postgres_server

RESULTS = Path(__file__).parent / "results.md"


@contextmanager
def server() -> Iterator[str]:
    """LEDER_DATABASE_URL if set, else an embedded PostgreSQL (the test server: fsync off, so these
    figures measure the code and the server's locking, not the disk)."""
    if url := os.environ.get("LEDER_DATABASE_URL"):
        yield url
        return
    with postgres_server() as url:
        yield url


def machine() -> str:
    return (
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB,"
        f" Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"
    )


def write_section(title: str, body: str) -> None:
    """Replace (or add) one script's section of bench/results.md."""
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nWritten by the scripts in bench/.\n"
    )
    marker = f"\n## {title}\n"
    if marker in text:
        start = text.index(marker)
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + text[end if end != -1 else len(text) :]
    RESULTS.write_text(text.rstrip("\n") + "\n" + marker + "\n" + body.rstrip("\n") + "\n")
