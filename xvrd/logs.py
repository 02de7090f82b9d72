"""Logging: configured once, in the entry point; everything else asks for a logger.

JSON lines when stderr is not a terminal (journald keeps them as they are), a readable
console format on a terminal. Events are logged when something changes, not every tick.
"""

from __future__ import annotations

import logging
import sys

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Set up structlog for the process. ``fmt``: auto, json or console."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if console
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # Look stderr up when a logger is made (each call, as loggers are not cached): a
        # process that swaps its stderr (a test harness, a daemonising wrapper) still gets it.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # APScheduler logs every job run at INFO: that is per tick, not per change.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
