"""structlog JSON logs; request and message context (case_id, event_id, correlation_id) is bound in
contextvars so every line written while handling carries it."""

import logging
import sys
from typing import TextIO

import structlog


class _Stderr:
    """The sys.stderr logging was configured with, for as long as it is open; then sys.stderr as it is
    when a line is written. A stream replaced since and closed (pytest's capture of a test that ran a
    command) would otherwise fail every line logged after it, in whatever test came next."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr

    def write(self, text: str) -> int:
        if self.stream.closed:
            self.stream = sys.stderr
        return self.stream.write(text)

    def flush(self) -> None:
        if not self.stream.closed:
            self.stream.flush()


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
