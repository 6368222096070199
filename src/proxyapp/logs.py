"""Log set-up shared by the CLI and the accounting child processes."""

from __future__ import annotations

import sys

from loguru import logger


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` with the proxy's line format (no tracebacks' variable dumps)."""
    logger.remove()
    logger.add(
        sys.stderr,
        level=level,
        format="{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} {message}",
        backtrace=False,
        diagnose=False,
    )
