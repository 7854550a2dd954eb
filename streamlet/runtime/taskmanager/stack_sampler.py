"""Samples of the Python stacks of running subtasks, for flame graphs (``GET .../flamegraph``).

A TaskManager runs every subtask as an asyncio task on one event-loop thread.  A sample is
taken from a *sampler thread*, started for one request and ended after it, so nothing of this
costs anything while nobody asks (no hook, no timer, no thread):

1. ``asyncio.current_task(loop)`` tells which task the loop thread runs right now;
2. for the sampled subtask that runs (at most one: one thread), its stack is the loop thread's
   frames (``sys._current_frames()``) from the innermost one out to the subtask's own coroutine
   (the event loop's frames below it are left out): an **on-CPU** sample;
3. every other sampled subtask is suspended in an ``await``: its stack is its coroutine chain
   (``cr_await`` links, outermost first) down to the awaitable it waits for (input, output
   credit, a timer, or just its turn on the loop): an **off-CPU** sample.

Flink's flame graphs have the same three kinds: on-CPU, off-CPU and both (``FULL``).

Reading another thread's frames is what debuggers and in-process profilers do: each attribute
read happens under the GIL, so a frame that moves on between two reads gives a slightly mixed
sample, never a crash.  A sample costs the loop thread one GIL hand-over (tens of microseconds)
every ``delay`` seconds; the measurement is in docs/operations.md.

Why the switch interval is lowered while sampling: a thread waiting for the GIL gets it either
when the holder releases it on its own (a system call: the loop's ``select`` between two
callbacks) or when the holder is asked to drop it, which happens only after
``sys.getswitchinterval()`` (5 ms) of waiting.  A subtask that processes a batch in less than
5 ms would then be sampled only at the loop's ``select``, never inside its own code.  With
the interval at :data:`SAMPLING_SWITCH_INTERVAL` the sampler gets the GIL within that time,
wherever the loop thread is.  The interval is process-wide; it is restored when the last
sampler ends, and it only matters while another thread waits for the GIL.  What remains: the
OS must still schedule the woken sampler thread, and on a loaded host that takes milliseconds,
during which the loop may reach its ``select`` and hand over the GIL there.  So on-CPU samples
are undercounted against off-CPU ones (more so the shorter a subtask's steps are); among on-CPU
samples the proportions between frames hold.

Frames are named ``qualified.name (path/file.py:line)``, paths shortened to the part below
``site-packages`` (or ``streamlet/``), as Flink names Java frames ``Class.method:line``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading
from types import FrameType
from typing import Any

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

    def __call__(self, frame: FrameType) -> str:
        code = frame.f_code
        path = self._paths.get(code.co_filename)
        if path is None:
            path = self._paths[code.co_filename] = _short_path(code.co_filename)
        return f"{code.co_qualname} ({path}:{frame.f_lineno})"


def _running_stack(top: FrameType, root: FrameType | None, max_depth: int, name: _Names) -> list[str] | None:
    """The frames from ``root`` (the subtask's coroutine) to ``top``, outermost first; None when
    ``root`` is not on the stack (the loop thread ran something else by now)."""
    frames: list[FrameType] = []
    f: FrameType | None = top
    while f is not None and len(frames) < _MAX_WALK:
        frames.append(f)
        if f is root:
            frames.reverse()
            return [name(x) for x in frames[:max_depth]]
        f = f.f_back
    return None


def _suspended_stack(coro: Any, max_depth: int, name: _Names) -> list[str]:
    """The coroutine chain of a suspended task, outermost first, down to what it awaits."""
    out: list[str] = []
    obj = coro
    while obj is not None and len(out) < max_depth:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None) or getattr(obj, "ag_frame", None)
        if frame is None:
            break
        out.append(name(frame))
        obj = (getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
               or getattr(obj, "ag_await", None))
    return out


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
        return _sample(loop, loop_thread, tasks, num_samples, delay, max_depth, stop)
    finally:
        _end_sampling()


def _sample(loop: asyncio.AbstractEventLoop, loop_thread: int, tasks: dict[int, asyncio.Task[Any]],
            num_samples: int, delay: float, max_depth: int, stop: threading.Event) -> list[dict[str, Any]]:
    name = _Names()
    counts: dict[tuple[int, bool, tuple[str, ...]], int] = {}
    # the delays are jittered (uniform in [0.5, 1.5] x delay, the same mean): a fixed period would
    # lock onto the phase of a loop thread that repeats at a steady rhythm and sample one point of it
    jitter = random.Random(loop_thread)
    for i in range(num_samples):
        if i and stop.wait(delay * (0.5 + jitter.random())):
            break
        current = asyncio.current_task(loop)
        top = sys._current_frames().get(loop_thread)
        for index, task in tasks.items():
            if task.done():
                continue
            coro = task.get_coro()
            stack = None
            if task is current and top is not None:
                stack = _running_stack(top, getattr(coro, "cr_frame", None), max_depth, name)
            on_cpu = stack is not None
            if stack is None:
                stack = _suspended_stack(coro, max_depth, name)
            if stack:
                key = (index, on_cpu, tuple(stack))
                counts[key] = counts.get(key, 0) + 1
        del top  # do not keep the loop thread's frames alive while sleeping
    return [{"subtask": index, "on_cpu": on_cpu, "stack": list(stack), "count": n}
            for (index, on_cpu, stack), n in counts.items()]
