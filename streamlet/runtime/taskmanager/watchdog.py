"""LoopWatchdog: unsticks a TaskManager's event loop held by one subtask's code (issue 8 item 4).

Every subtask of a TaskManager runs on the process's one event loop, and so do its heartbeats and
RPC.  A user function that never returns (``while True: pass``, an expression looping over
``iter(int, 1)``) would hold the loop for good: no heartbeat, no cancel, the JobManager declares
the TaskManager lost.  The watchdog is a thread that sees this and raises an exception inside the
loop's thread, in the subtask that holds it, so the subtask fails cleanly and the loop goes on.

How, step by step:

1. on the loop, a callback every ``check`` seconds (a tenth of the timeout) bumps a tick counter
   and notes the time: the loop's only cost, one timer callback per ``check``, nothing per batch
   or record;
2. the watchdog thread wakes every ``check`` seconds; when the tick due ``check`` after the last
   one is ``timeout`` seconds late, the loop has been held that long (at least) by one callback;
   it is interrupted at most about ``1.2 * timeout`` after it was taken;
3. the asyncio task the loop is running (``asyncio.current_task(loop)``, readable from another
   thread) says who: when it is a subtask's runner, the watchdog records the reason for that
   subtask and calls ``PyThreadState_SetAsyncExc(loop thread, TaskInterrupted)``; Python raises
   it in the loop's thread at its next bytecode, inside the stuck code;
4. :class:`TaskInterrupted` is a ``BaseException`` (user code's ``except Exception`` does not
   swallow it); the TaskExecutor catches it around the subtask and reports it FAILED with the
   reason, and the loop serves heartbeats, RPC and the other subtasks again.  While the loop
   stays stuck (user code caught even that) the watchdog raises again every ``check``.

What it cannot do: a loop stuck inside one C call (``time.sleep(1e9)``, a blocking socket read,
``sum(iter(int, 1))`` which loops in C) gets the exception only when the call returns; Python
has no way to interrupt it.  A loop stuck outside any subtask (a bug in streamlet) is logged
with its stack, not interrupted.  The timeout must stay below ``heartbeat.timeout``, so the
loop is free again before the JobManager gives up on the TaskManager (default: half of it).

Time here is the real monotonic clock, not the injected one: what is watched is the physical
event loop, which a manual clock cannot stop or advance.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
import threading
import time
import traceback
from typing import Any, Callable

logger = logging.getLogger(__name__)


class TaskInterrupted(BaseException):
    """Raised by the watchdog inside a subtask's code that held the event loop too long.

    A BaseException, so ``except Exception`` in user code lets it through; only the TaskExecutor
    catches it (and reports the subtask FAILED with the reason the watchdog recorded).
    """


def _set_async_exc(thread_id: int, exc_type: type[BaseException]) -> int:
    """Raise ``exc_type`` in thread ``thread_id`` at its next bytecode; returns threads affected."""
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)))


class LoopWatchdog:
    """Watches one event loop (see the module docstring).  Start and stop it on that loop.

    ``owner_of(task)`` maps the asyncio task the stuck loop runs to a callback taking the reason
    (the subtask to fail), or None when that task is no subtask.  Example::

        watchdog = LoopWatchdog(5.0, executor.interruptible)
        watchdog.start()        # on the loop
        ...
        watchdog.stop()
    """

    def __init__(self, timeout: float, owner_of: Callable[[asyncio.Task[Any]], Callable[[str], None] | None]) -> None:
        self.timeout = timeout
        self.check = max(0.01, timeout / 10)
        self._owner_of = owner_of
        self._ticks = 0
        self._tick_at = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: interrupts raised so far (diagnostics and tests)
        self.interrupts = 0

    def start(self) -> None:
        """Start ticking on the running loop and start the watchdog thread."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._stop.clear()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="streamlet-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (joins it: it wakes every ``check`` seconds at most) and the ticks."""
        thread, self._thread = self._thread, None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if thread is not None:
            self._stop.set()
            thread.join(self.check + 1.0)

    def _tick(self) -> None:
        self._tick_at = time.monotonic()
        self._ticks += 1
        assert self._loop is not None
        self._handle = self._loop.call_later(self.check, self._tick)

    # -- the watchdog thread --------------------------------------------------------------------

    def _watch(self) -> None:
        last = -1
        logged = False
        while not self._stop.wait(self.check):
            ticks = self._ticks
            if ticks != last:
                last, logged = ticks, False
            # the loop was free at the last tick and missed the next one, due ``check`` later
            stuck = time.monotonic() - self._tick_at - self.check
            if stuck < self.timeout:
                continue
            try:
                if not self._interrupt(stuck, ticks) and not logged:
                    logged = True
                    self._log_stuck(stuck)
            except Exception:  # noqa: BLE001 - the watchdog must never die
                logger.exception("loop watchdog: could not inspect the stuck event loop")

    def _interrupt(self, stuck: float, ticks: int) -> bool:
        """Interrupt the subtask holding the loop; False when the loop runs no subtask now."""
        loop = self._loop
        assert loop is not None
        task = asyncio.current_task(loop)
        fail = self._owner_of(task) if task is not None else None
        if fail is None:
            return False
        frame = sys._current_frames().get(self._thread_id)
        where = ""
        if frame is not None:
            code = frame.f_code
            where = f" (in {code.co_name} at {code.co_filename}:{frame.f_lineno})"
        reason = (f"user code held the taskmanager's event loop for {stuck:.1f}s{where}: interrupted by the "
                  f"watchdog after task.watchdog.timeout ({self.timeout:g}s) so that heartbeats go on; make the "
                  "function return (no endless loop), or raise task.watchdog.timeout (below heartbeat.timeout)")
        fail(reason)
        # the last check and the raise with no loop progress in between (this thread holds the GIL;
        # a bytecode or two of the loop may run only at a forced switch, which the checks make unlikely)
        if self._ticks != ticks or asyncio.current_task(loop) is not task:
            return True
        self.interrupts += 1
        logger.warning("loop watchdog: %s", reason)
        _set_async_exc(self._thread_id, TaskInterrupted)
        return True

    def _log_stuck(self, stuck: float) -> None:
        frame = sys._current_frames().get(self._thread_id)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        logger.warning("loop watchdog: the event loop has been blocked for %.1fs outside any subtask (not "
                       "interrupted); stack of the loop's thread:\n%s", stuck, stack)
