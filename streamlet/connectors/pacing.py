"""Pacing of sources (``rate:``): a non-blocking rate limiter on the injected clock, and a reader
wrapper that paces any :class:`~streamlet.connectors.base.SourceReader`.

Generator sources (``datagen``, ``nexmark``) pace themselves with :class:`RateLimiter` (they stamp
the release time into their rows); sources that read existing data (``file``, ``kafka``) are
wrapped by :func:`paced_reader`, so every source accepts ``rate:``.
"""

from __future__ import annotations

import math
from typing import Any

from streamlet.errors import PipelineDefinitionError

_MAX_BACKLOG = 1.0  # seconds of arrears a paced source may catch up in a burst


class RateLimiter:
    """Paces one subtask to ``rate`` units (records or events) per second on an injected clock.

    Non-blocking, for :meth:`SourceReader.poll`: unit ``k`` (0-based) is due at ``t0 + k / rate``
    (``t0``: the first :meth:`delay`).  A reader

    1. asks :meth:`delay` before a chunk: 0 means the chunk may go now;
    2. then emits at most :attr:`chunk` units and reports them with :meth:`take`;
    3. otherwise returns ``[]`` from ``poll``, and its ``wait_available`` awaits :meth:`wait`.

    Chunks are about 10 ms worth of units, so records leave the source at most ~10 ms early and
    latency stays low at small rates.  A subtask that fell behind (e.g. under backpressure) catches
    up at most one second's worth in a burst, as Guava's limiter caps stored permits; older
    arrears are forgiven.  Example::

        limiter = RateLimiter(100, clock, max_chunk=1024)   # chunk == 1
        if limiter.delay() == 0:
            limiter.take(1)                                 # one record went out
    """

    def __init__(self, rate: float, clock: Any, max_chunk: int) -> None:
        self._clock = clock
        self._max_chunk = max_chunk
        self._t0: float | None = None
        self._sent = 0
        self.rate = 1.0
        #: units to release per chunk (about 10 ms worth, at least 1)
        self.chunk = 1
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        """Change the rate (a reader took over more splits); the next unit stays due when it was."""
        rate = float(rate)
        if self._t0 is not None:
            due = self._t0 + self._sent / self.rate
            self._t0 = due - self._sent / rate
        self.rate = rate
        self.chunk = max(1, min(self._max_chunk, math.ceil(rate / 100)))

    def delay(self) -> float:
        """Seconds of the clock until the next unit is due; 0 when it may go now."""
        now = self._clock.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._sent / self.rate
        if now - due > _MAX_BACKLOG:
            self._t0 = now - _MAX_BACKLOG - self._sent / self.rate
            return 0.0
        wait = due - now
        return wait if wait > 1e-9 else 0.0  # below a nanosecond is float noise, not a reason to wait

    def take(self, n: int) -> None:
        """Count ``n`` units as released."""
        self._sent += n

    async def wait(self) -> None:
        """Wait on the clock until the next unit is due (at once when it is)."""
        d = self.delay()
        if d > 0:
            await self._clock.sleep(d)


class _PacedContext:
    """A source context whose ``batch_size`` is the limiter's chunk (everything else is the task's)."""

    def __init__(self, ctx: Any, batch_size: int) -> None:
        self._ctx = ctx
        self.batch_size = batch_size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


class PacedReader:
    """A reader released at most ``limiter.rate`` records per second (see :func:`paced_reader`).

    :meth:`poll` returns ``[]`` while the next record is not due (``wait_available`` then waits on
    the clock) and otherwise polls the wrapped reader, counting what it returned.  Batches are not
    cut: the wrapped reader was made with ``batch_size`` = the limiter's chunk, and a batch that is
    a little larger only moves the next due time later, so the average rate is exact.  Positions
    stay the wrapped reader's own (nothing is held back here), so snapshots are unaffected.
    Every other attribute is the wrapped reader's.
    """

    def __init__(self, reader: Any, limiter: RateLimiter) -> None:
        self._reader = reader
        self.limiter = limiter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def poll(self) -> list[Any] | None:
        if self.limiter.delay() > 0:
            return []
        batch = self._reader.poll()
        if batch:
            self.limiter.take(len(batch))
        return batch

    async def wait_available(self) -> None:
        """Wait on the clock while paced, else for the wrapped reader (cancel-safe, as both are)."""
        if self.limiter.delay() > 0:
            await self.limiter.wait()
        else:
            await self._reader.wait_available()


def paced_reader(make: Any, params: Any, ctx: Any) -> Any:
    """``make(params, ctx)``, paced to ``params["rate"]`` records/s for the whole source when set.

    The source's rate is split evenly over its subtasks (``rate / ctx.parallelism`` each; a
    subtask without splits leaves its share unused).  Called by a source's ``create_reader``::

        return paced_reader(FileReader, params, ctx)
    """
    rate = params.get("rate")
    if rate is None:
        return make(params, ctx)
    limiter = RateLimiter(rate / max(1, ctx.parallelism), ctx.clock, ctx.batch_size)
    return PacedReader(make(params, _PacedContext(ctx, limiter.chunk)), limiter)


def positive_rate(value: Any, where: str) -> None:
    """Check a ``rate:`` value (``None``: unpaced); raises PipelineDefinitionError naming ``where``."""
    if value is not None and not (0 < value < math.inf):
        raise PipelineDefinitionError(f"expected a positive number of records per second, got {value!r}", where)
