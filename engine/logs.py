"""One logging configuration for the CLI, the worker and the app.

Modules log through ``logging.getLogger(__name__)`` (loggers under ``engine``, ``store`` and ``ui``);
:func:`configure` gives those one handler on stderr with one format. The level is
``REALCAL_LOG_LEVEL`` when set (DEBUG, INFO, WARNING, ERROR), else the caller's default: WARNING for
interactive commands (their results are printed, not logged), INFO for the worker (its log file is
``<workspace>/logs/worker.log``) and the app's server console.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import IO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
PACKAGES = ("engine", "store", "ui")
_HANDLER: logging.Handler | None = None


def level_from_env(default: str | int = "WARNING") -> int:
    value = os.environ.get("REALCAL_LOG_LEVEL") or default
    if isinstance(value, int):
        return value
    level = logging.getLevelName(str(value).strip().upper())
    return level if isinstance(level, int) else logging.WARNING


def configure(default_level: str | int = "WARNING", stream: IO[str] | None = None) -> int:
    """Install the handler once (later calls only change the level); returns the level in effect."""
    global _HANDLER
    level = level_from_env(default_level)
    if _HANDLER is None or (stream is not None and getattr(_HANDLER, "stream", None) is not stream):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        for name in PACKAGES:
            logger = logging.getLogger(name)
            if _HANDLER is not None:
                logger.removeHandler(_HANDLER)
            logger.addHandler(handler)
            logger.propagate = False
        _HANDLER = handler
    for name in PACKAGES:
        logging.getLogger(name).setLevel(level)
    return level
