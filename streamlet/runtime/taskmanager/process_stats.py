"""What a TaskManager process uses of its host: resident memory and CPU load, sent with heartbeats.

:meth:`ProcessStats.sample` is called once per heartbeat (``heartbeat.interval``), so the
dashboard's TaskManager table is as fresh as ``timeSinceLastHeartbeat``.  The CPU load is the
process's CPU time (user + system, all threads) over the wall time since the previous sample,
as a fraction of one core (Flink's ``Status.JVM.CPU.Load``): a TaskManager is one Python process
on one core, so 1.0 means it is saturated.  For ``streamlet run`` (the TaskManager in the
JobManager's process) both numbers are the whole process's.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``), else the peak from getrusage, else -1."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        try:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        except (OSError, ValueError):
            return -1


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ProcessStats:
    """Samples of this process's RSS and CPU load (see the module docstring)."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    async def sample(self) -> dict[str, Any]:
        """``{"rss_bytes": int, "cpu_load": float | None}`` (None at the first sample: no interval yet).

        Reading ``/proc`` is a file read, so it runs in a thread, off the event loop.
        """
        rss = await asyncio.to_thread(_rss_bytes)
        now, cpu = time.monotonic(), _cpu_seconds()
        load = None
        if self._last is not None and now > self._last[0]:
            load = max(0.0, (cpu - self._last[1]) / (now - self._last[0]))
        self._last = (now, cpu)
        return {"rss_bytes": rss, "cpu_load": None if load is None else round(load, 4)}
