"""Durations of pipeline keys (``size: 10s``, ``lower: -5s``) as int milliseconds.

Accepted: a number of milliseconds (``500``), or a number with a unit: ``ms``, ``s``/``sec``,
``m``/``min``, ``h``, ``d`` (``"4s"``, ``"1.5 min"``, ``"-5s"`` where negative values make sense).
"""

from __future__ import annotations

import re
from typing import Any

from streamlet.errors import PipelineDefinitionError

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$")
_UNIT_MS = {None: 1, "ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000,
            "d": 86_400_000}


def duration_ms(value: Any, where: str, *, allow_negative: bool = False, allow_zero: bool = True) -> int:
    """Milliseconds of a YAML duration; raises :class:`PipelineDefinitionError` naming ``where``.

    Example: ``duration_ms("4s", "q.yaml: sources.bids.watermark") == 4000``.
    """
    if isinstance(value, bool):
        m = None
    elif isinstance(value, (int, float)):
        m = _DURATION.match(repr(value))
    else:
        m = _DURATION.match(str(value))
    if m is None:
        msg = f"expected a duration like '10s', '500ms' or '1h', got {value!r}"
        raise PipelineDefinitionError(msg, where)
    ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    if ms != int(ms):
        raise PipelineDefinitionError(f"{value!r} is not a whole number of milliseconds", where)
    out = int(ms)
    if out < 0 and not allow_negative:
        raise PipelineDefinitionError(f"expected a non-negative duration, got {value!r}", where)
    if out == 0 and not allow_zero:
        raise PipelineDefinitionError(f"expected a positive duration, got {value!r}", where)
    return out


def format_ms(ms: int) -> str:
    """A short human form of ``ms`` for messages and plans (``10s``, ``250ms``, ``1h``)."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
