"""Samples of the Python stacks of running subtasks, for flame graphs (``GET .../flamegraph``).

A TaskManager runs every subtask as an asyncio task on one event-loop thread.  Nothing here
costs anything while nobody asks: no hook, no timer, no thread outside a request.  A sample
of the subtasks of one vertex is, for each of them:

- the subtask the loop runs right now (``asyncio.current_task(loop)``; at most one: one thread):
  the loop thread's frames from the innermost one out to the subtask's own coroutine (the event
  loop's frames below it are left out): an **on-CPU** sample;
- every other one is suspended in an ``await``: its coroutine chain (``cr_await`` links,
  outermost first) down to what it waits for (input, output credit, a timer, or just its turn
  on the loop): an **off-CPU** sample.

Flink's flame graphs have the same three kinds: on-CPU, off-CPU and both (``FULL``).

Two ways to take the samples, the first where it is possible:

1. **On a timer signal, in the loop thread** (:func:`sample_stacks_on_signals`): when the loop
   runs in the main thread and ``SIGALRM`` is free (default handler, no alarm set: a
   TaskManager process, ``streamlet run``), a one-shot ``ITIMER_REAL`` is armed ``delay``
   (jittered) ahead; the kernel interrupts the loop thread, Python runs the handler at the next
   bytecode with the interrupted frame, the handler records the sample and arms the next one.
   The loop thread's only cost is the handler (reads of frames and one dict update, some
   microseconds); it never waits for another thread.
2. **From a sampler thread** (:func:`sample_stacks`), everywhere else (a loop in another
   thread; a test runner's own ``SIGALRM``, such as pytest-timeout's; a second round running
   at once): the thread wakes every ``delay`` and reads the loop thread's frames
   (``sys._current_frames()``).  It needs the GIL for that, and taking it from a running loop
   thread is a forced switch: the loop thread drops the GIL and waits until the OS has
   scheduled the sampler thread and the sampler has given the GIL back.  On a loaded host that
   wait can take milliseconds per sample, which is why the first way is preferred.

In both, a sample only reads frames and stores ``(code, line)`` pairs; frame names are made once
per distinct frame after the last sample.

Why the switch interval is lowered while a sampler thread runs: a thread waiting for the GIL
gets it either when the holder releases it on its own (a system call: the loop's poll between
two callbacks) or when the holder is asked to drop it, which happens only after
``sys.getswitchinterval()`` (5 ms) of waiting.  A subtask that processes a batch in less than
5 ms would then be sampled only at the loop's poll, never inside its own code.  With the
interval at :data:`SAMPLING_SWITCH_INTERVAL` the sampler gets the GIL within that time,
wherever the loop thread is.  The interval is process-wide; it is restored when the last
sampler ends, and it only matters while another thread waits for the GIL.  What remains: the
OS must still schedule the woken sampler thread, and on a loaded host that takes milliseconds,
during which the loop may reach its poll and hand over the GIL there.  So with a sampler thread
on-CPU samples are undercounted against off-CPU ones (more so the shorter a subtask's steps
are); among on-CPU samples the proportions between frames hold.  Samples taken on signals
have no such bias: the signal interrupts the loop thread wherever it is.

Reading frames (from another thread, or in a signal handler) is what debuggers and in-process
profilers do: each attribute read happens under the GIL, so a frame that moves on between two
reads gives a slightly mixed sample, never a crash.

Frames are named ``qualified.name (path/file.py:line)``, paths shortened to the part below
``site-packages`` (or ``streamlet/``), as Flink names Java frames ``Class.method:line``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sys
import threading
from types import CodeType, FrameType
from typing import Any

logger = logging.getLogger(__name__)

#: the GIL switch interval while a sampler runs (see the module docstring)
SAMPLING_SWITCH_INTERVAL = 0.0001
_switch_lock = threading.Lock()
_samplers = 0
_saved_interval = 0.005


def _begin_sampling() -> None:
    global _samplers, _saved_interval
    with _switch_lock:
        if _samplers == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_interval, SAMPLING_SWITCH_INTERVAL))
        _samplers += 1


def _end_sampling() -> None:
    global _samplers
    with _switch_lock:
        _samplers -= 1
        if _samplers == 0:
            sys.setswitchinterval(_saved_interval)


#: how far the loop thread's stack is walked looking for a subtask's coroutine before the sample
#: counts the subtask as not running (it switched between the two reads)
_MAX_WALK = 500


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + len(marker):]
    i = path.rfind("/streamlet/")
    if i >= 0:
        return path[i + 1:]
    parts = path.rsplit("/", 2)
    return "/".join(parts[-2:])


class _Names:
    """Frame names, with the shortened path of each code object computed once."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}

    def __call__(self, code: CodeType, line: int | None) -> str:
        path = self._paths.get(code.co_filename)
        if path is None:
            path = self._paths[code.co_filename] = _short_path(code.co_filename)
        return f"{code.co_qualname} ({path}:{line})"


def _running_key(top: FrameType, root: FrameType | None, max_depth: int) -> tuple[Any, ...] | None:
    """The frames from ``root`` (the subtask's coroutine) to ``top`` as ``(code, line, code, line,
    ...)``, outermost first and at most ``max_depth`` of them; None when ``root`` is not on the
    stack (the loop thread ran something else by now).  Names are made later, once per distinct
    frame: this runs while the loop thread waits for the GIL."""
    walk: list[Any] = []
    f: FrameType | None = top
    n = 0
    while f is not None and n < _MAX_WALK:
        walk.append(f.f_lineno)
        walk.append(f.f_code)
        if f is root:
            walk.reverse()
            return tuple(walk[:2 * max_depth])
        f = f.f_back
        n += 1
    return None


def _suspended_key(coro: Any, max_depth: int) -> tuple[Any, ...]:
    """The coroutine chain of a suspended task as ``(code, line, ...)``, outermost first, down to
    what it awaits."""
    out: list[Any] = []
    obj = coro
    while obj is not None and len(out) < 2 * max_depth:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            break
        out.append(frame.f_code)
        out.append(frame.f_lineno)
        obj = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
    return tuple(out)


def sample_stacks(loop: asyncio.AbstractEventLoop, loop_thread: int, tasks: dict[int, asyncio.Task[Any]],
                  num_samples: int, delay: float, max_depth: int,
                  stop: threading.Event | None = None) -> list[dict[str, Any]]:
    """Take ``num_samples`` samples, ``delay`` seconds apart, of each task in ``tasks`` (subtask
    index -> its asyncio task on ``loop``, whose thread is ``loop_thread``).

    Blocking: call it in a thread, never on the loop.  ``stop`` ends it early (the request was
    cancelled).  Returns ``[{"subtask", "on_cpu", "stack": [frame names, outermost first],
    "count"}]``, one entry per distinct stack; a task that ended is no longer sampled.
    """
    stop = stop or threading.Event()
    _begin_sampling()
    try:
        counts = _sample(loop, loop_thread, tasks, num_samples, delay, max_depth, stop)
    finally:
        _end_sampling()
    return _named(counts)


Counts = dict[tuple[int, bool, tuple[Any, ...]], int]


def _named(counts: Counts) -> list[dict[str, Any]]:
    """The samples as the RPC answers them, names made once per distinct ``(code, line)``."""
    name = _Names()
    return [{"subtask": index, "on_cpu": on_cpu, "stack": [name(key[i], key[i + 1]) for i in range(0, len(key), 2)],
             "count": n}
            for (index, on_cpu, key), n in counts.items() if key]


def _sampled(tasks: dict[int, asyncio.Task[Any]]) -> list[tuple[int, asyncio.Task[Any], Any, FrameType | None]]:
    # a subtask's coroutine frame is the same object for the task's whole life
    return [(index, task, task.get_coro(), getattr(task.get_coro(), "cr_frame", None))
            for index, task in sorted(tasks.items())]


def _record(counts: Counts, sampled: list[tuple[int, asyncio.Task[Any], Any, FrameType | None]],
            current: asyncio.Task[Any] | None, top: FrameType | None, max_depth: int) -> None:
    """One sample of every task of ``sampled`` into ``counts``: ``top`` is the loop thread's
    innermost frame, ``current`` the task it runs."""
    for index, task, coro, root in sampled:
        if task.done():
            continue
        key = None
        if task is current and top is not None:
            key = _running_key(top, root, max_depth)
        if key is None:
            ckey = (index, False, _suspended_key(coro, max_depth))
        else:
            ckey = (index, True, key)
        counts[ckey] = counts.get(ckey, 0) + 1


def _sample(loop: asyncio.AbstractEventLoop, loop_thread: int, tasks: dict[int, asyncio.Task[Any]],
            num_samples: int, delay: float, max_depth: int,
            stop: threading.Event) -> Counts:
    """The sampling loop: per sample, only reads of frames and one dict update per subtask (the
    loop thread waits while this holds the GIL)."""
    counts: Counts = {}
    current_frames, current_task = sys._current_frames, asyncio.current_task
    sampled = _sampled(tasks)
    # the delays are jittered (uniform in [0.5, 1.5] x delay, the same mean): a fixed period would
    # lock onto the phase of a loop thread that repeats at a steady rhythm and sample one point of it
    jitter = random.Random(loop_thread)
    waits = [delay * (0.5 + jitter.random()) for _ in range(num_samples)]
    for i in range(num_samples):
        if i and stop.wait(waits[i]):
            break
        current = current_task(loop)
        top = current_frames().get(loop_thread) if current is not None else None
        _record(counts, sampled, current, top, max_depth)
        top = None  # do not keep the loop thread's frames alive while sleeping
    return counts


#: the shortest time between two signals (a delay of 0 would flood the loop thread with them)
_MIN_WAIT = 0.001
#: a signal round is under way in this process (one at a time: the handler and timer are global)
_signal_round = False


def signals_usable() -> bool:
    """Whether :func:`sample_stacks_on_signals` can run here: called on the loop thread, which is
    the main thread, with ``SIGALRM`` at its default handler and no alarm set (so nobody else in
    the process uses them), and no other signal round under way."""
    return (not _signal_round and threading.current_thread() is threading.main_thread()
            and hasattr(signal, "setitimer") and signal.getsignal(signal.SIGALRM) == signal.SIG_DFL
            and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))


async def sample_stacks_on_signals(tasks: dict[int, asyncio.Task[Any]], num_samples: int, delay: float,
                                   max_depth: int) -> list[dict[str, Any]]:
    """Take ``num_samples`` samples, ``delay`` seconds apart (jittered as in :func:`sample_stacks`),
    of each task in ``tasks`` (subtask index -> its asyncio task on the running loop), in a
    ``SIGALRM`` handler on the loop thread (way 1 of the module docstring).

    Only when :func:`signals_usable` says so.  Same answer as :func:`sample_stacks`.  Cancelling
    it ends the round; the timer is disarmed and the default handler put back in every case.
    """
    global _signal_round
    loop = asyncio.get_running_loop()
    counts: Counts = {}
    sampled = _sampled(tasks)
    jitter = random.Random(id(loop))
    waits = [delay * (0.5 + jitter.random()) for _ in range(num_samples)]
    taken = 0
    ended = False
    failed: list[BaseException] = []

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        # runs inside whatever code the loop thread was in (a subtask's, most often): it must not raise
        nonlocal taken
        if ended:  # a signal handled after the round: arming another timer now could end the process
            return
        try:
            _record(counts, sampled, asyncio.current_task(loop), frame, max_depth)
        except Exception as exc:  # noqa: BLE001 - a bug here would otherwise fail the interrupted subtask
            failed.append(exc)
            return
        taken += 1
        if taken < num_samples:
            signal.setitimer(signal.ITIMER_REAL, max(waits[taken], _MIN_WAIT))

    _signal_round = True
    signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(waits[0], _MIN_WAIT))
        # The loop sleeps in its poll when every task waits, and a handler runs only when Python
        # code does: waking every ``delay`` lets it run then (one timer callback per sample).
        deadline = loop.time() + 2 * num_samples * delay + 1.0
        while (taken < num_samples and not failed and not all(t.done() for t in tasks.values())
               and loop.time() < deadline):
            await asyncio.sleep(delay)
    finally:
        ended = True
        signal.setitimer(signal.ITIMER_REAL, 0)  # first: a SIGALRM after SIG_DFL is back would end the process
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        _signal_round = False
    if failed:
        logger.error("stack sampling failed after %d samples", taken, exc_info=failed[0])
    return _named(counts)
