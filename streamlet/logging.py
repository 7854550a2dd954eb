"""Logging set-up of the ``streamlet`` processes (library code only calls ``logging.getLogger``)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log lines to stderr: time, level, component, message."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
