"""Injected time.

Logic that depends on time (rate limits, heartbeats, buffer timeouts, progress reports) takes a
:class:`Clock` so tests drive it with :class:`ManualClock` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Source of time for runtime logic."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers wake when the clock passes their deadline.  Example::

        clock = ManualClock()
        task = asyncio.create_task(clock.sleep(5))
        await clock.advance(5)   # task completes
    """

    def __init__(self, start: float = 0.0, epoch_ms: int = 1_700_000_000_000) -> None:
        self._now = start
        self._epoch_ms = epoch_ms
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def time_ms(self) -> int:
        return self._epoch_ms + int(self._now * 1000)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every sleeper whose deadline passed run."""
        self._now += seconds
        due = [s for s in self._sleepers if s[0] <= self._now]
        self._sleepers = [s for s in self._sleepers if s[0] > self._now]
        for _, fut in due:
            if not fut.done():
                fut.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)
