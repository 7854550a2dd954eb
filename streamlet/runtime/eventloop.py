"""The event loop and garbage collector of streamlet's processes: uvloop, and a young-generation
threshold for the cyclic GC, installed only at process entry points."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@contextlib.contextmanager
def gc_threshold(young: int) -> Iterator[None]:
    """Run the block with the cyclic GC's young-generation threshold at ``young`` allocations
    (``process.gc.young-threshold``; 0 keeps Python's), then restore the previous thresholds.

    Why: with Python's 700, a process holding large keyed state (millions of accumulators, keys and
    timers) spends its time in full collections that walk all of it while records are allocated:
    measured, the GC took 45 % of Nexmark q5's CPU (3.1 us/event with the GC off, 5.5-6.3 with 700),
    and a window's burst of results cost 4-10 us per row.  Records and state are acyclic JSON values,
    so collections find little; a larger threshold keeps cycles (asyncio tracebacks) collected, rarely.
    """
    if young <= 0:
        yield
        return
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
