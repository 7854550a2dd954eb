"""orjson helpers used for every serialization on the wire and in files."""

from __future__ import annotations

from typing import Any

import orjson


def dumps_lines(records: list[Any]) -> bytes:
    """Encode records as JSON lines (each followed by a newline)."""
    if not records:
        return b""
    d = orjson.dumps
    return b"\n".join([d(r) for r in records]) + b"\n"

