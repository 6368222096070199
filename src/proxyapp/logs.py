"""Log set-up shared by the CLI and the accounting child processes."""

from __future__ import annotations

import sys

from loguru import logger

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}"


def setup_logging(level: str, fmt: str = "text") -> None:
    """Log to stderr at ``level`` (no tracebacks' variable dumps), in ``fmt``:

    - "text": the proxy's line format, ``2026-12-03 11:40:11.123 INFO    message``;
    - "json": one JSON object per line (loguru's serialize=True): ``{"text": ..., "record":
      {"time": {"repr", "timestamp"}, "level": {"name", "no", "icon"}, "message", "name",
      "function", "line", "process": {"id", "name"}, "exception", "extra", ...}}``, for a log
      collector (journald, Loki, Elasticsearch). An exception's traceback is in "text".

    The accounting child processes are started with the proxy's level and format, so every line
    on the shared stderr has the same shape."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    logger.remove()
    logger.add(
        sys.stderr,
        level=level,
        format=TEXT_FORMAT,
        serialize=fmt == "json",
        backtrace=False,
        diagnose=False,
    )
