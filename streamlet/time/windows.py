"""Window assigners: which windows a timestamp belongs to, and when windows end.  Pure logic.

All times are int milliseconds; a window is the half-open interval ``[start, end)`` and its
last timestamp is ``end - 1`` (an event-time window fires when the watermark reaches it).

* :class:`TumblingWindows` ``(size, offset)``: windows ``[offset + k*size, offset + (k+1)*size)``;
* :class:`SlidingWindows` ``(size, slide, offset)``: a window starts every ``slide`` (at
  ``offset + k*slide``, as Flink's ``SlidingEventTimeWindows``); each window
  is made of *slices* of ``gcd(size, slide)`` ms, so a record updates exactly one slice and a
  window that fires merges its ``size / slice`` slices (the cost of a record does not grow with
  ``size / slide``; Flink's ``SliceAssigners.hopping``);
* :class:`SessionWindows` ``(gap)``: a record opens ``[ts, ts + gap)``; windows that overlap
  or touch merge (Flink's ``TimeWindow.intersects``);
* :class:`GlobalWindows` ``(count)``: one window per key that fires every ``count`` records and
  starts again empty (Flink's ``countWindow``: a ``GlobalWindows`` with a purging count
  trigger; a last, incomplete window never fires).

:func:`assigner_from_spec` builds one from the JSON spec the planner puts in the JobGraph. The
window operator (:mod:`streamlet.operators.window`) holds the state; nothing here does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

TUMBLING = "tumbling"
SLIDING = "sliding"
SESSION = "session"
GLOBAL = "global"
WINDOW_TYPES = (TUMBLING, SLIDING, SESSION, GLOBAL)
EVENT_TIME = "event"
PROCESSING_TIME = "processing"


@dataclass(frozen=True)
class TumblingWindows:
    """Fixed, non-overlapping windows of ``size`` ms, shifted by ``offset`` ms.

    Example: ``TumblingWindows(10_000).start_of(12_345) == 10_000``.
    """

    size: int
    offset: int = 0

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"window size must be positive, got {self.size}")

    def start_of(self, ts: int) -> int:
        """Start of the one window holding ``ts`` (also for negative timestamps)."""
        return ts - (ts - self.offset) % self.size

    def windows_of(self, ts: int) -> list[tuple[int, int]]:
        """The windows ``[start, end)`` holding ``ts``: exactly one."""
        s = self.start_of(ts)
        return [(s, s + self.size)]


@dataclass(frozen=True)
class SlidingWindows:
    """Windows of ``size`` ms starting every ``slide`` ms, built from slices of ``gcd(size, slide)``.

    A slice ``[s, s + slice)`` belongs to the windows ending in ``(s, s + size]``; window
    ``[end - size, end)`` is the union of the slices starting in ``[end - size, end)``.  Example::

        w = SlidingWindows(size=10_000, slide=2_000)
        w.slice_start(12_345)            # 12_000
        w.window_ends_of_slice(12_000)   # range(14000, 24000, 2000): five windows
        w.slices_of_window(20_000)       # range(10000, 20000, 2000): five slices
    """

    size: int
    slide: int
    offset: int = 0

    def __post_init__(self) -> None:
        if self.size <= 0 or self.slide <= 0:
            raise ValueError(f"window size and slide must be positive, got {self.size}, {self.slide}")

    @property
    def slice(self) -> int:
        """Length of one slice: ``gcd(size, slide)``."""
        return math.gcd(self.size, self.slide)

    def slice_start(self, ts: int) -> int:
        """Start of the slice holding ``ts``."""
        g = math.gcd(self.size, self.slide)
        return ts - (ts - self.offset) % g

    def first_window_end(self, slice_start: int) -> int:
        """The earliest end of a window holding the slice at ``slice_start``."""
        # starts are offset + k * slide (Flink's alignment), so ends are offset + size + k * slide;
        # the first end strictly after slice_start
        return slice_start + self.slide - (slice_start - self.offset - self.size) % self.slide

    def last_window_end(self, slice_start: int) -> int:
        """The latest end of a window holding the slice at ``slice_start`` (its state can go then)."""
        first = self.first_window_end(slice_start)
        return first + (slice_start + self.size - first) // self.slide * self.slide

    def window_ends_of_slice(self, slice_start: int) -> range:
        """Ends of every window holding the slice at ``slice_start``, ascending."""
        return range(self.first_window_end(slice_start), self.last_window_end(slice_start) + 1, self.slide)

    def slices_of_window(self, end: int) -> range:
        """Starts of the slices making window ``[end - size, end)``, ascending."""
        return range(end - self.size, end, self.slice)

    def windows_of(self, ts: int) -> list[tuple[int, int]]:
        """Every window ``[start, end)`` holding ``ts`` (``size / slide`` of them, rounded up)."""
        return [(e - self.size, e) for e in self.window_ends_of_slice(self.slice_start(ts))]


@dataclass(frozen=True)
class SessionWindows:
    """Per-key sessions: a record at ``ts`` opens ``[ts, ts + gap)``; intersecting sessions merge.

    Example::

        s = SessionWindows(gap=10_000)
        s.merge([(0, 15_000), (40_000, 50_000)], 12_000, 22_000)   # ((0, 22000), [0])
    """

    gap: int

    def __post_init__(self) -> None:
        if self.gap <= 0:
            raise ValueError(f"session gap must be positive, got {self.gap}")

    def window_of(self, ts: int) -> tuple[int, int]:
        """The session a lone record at ``ts`` opens."""
        return ts, ts + self.gap

    @staticmethod
    def intersects(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
        """Whether two sessions merge: they overlap or touch (Flink's ``TimeWindow.intersects``)."""
        return a_start <= b_end and a_end >= b_start

    def merge(self, sessions: list[tuple[int, int]], start: int, end: int) -> tuple[tuple[int, int], list[int]]:
        """Merge ``[start, end)`` into ``sessions`` (disjoint, in any order).

        Returns the merged session (the cover of the new one and every session it intersects)
        and the indexes of those absorbed sessions in ``sessions``, ascending.
        """
        absorbed = []
        lo, hi = start, end
        for i, (s, e) in enumerate(sessions):
            if s <= end and e >= start:
                absorbed.append(i)
                if s < lo:
                    lo = s
                if e > hi:
                    hi = e
        return (lo, hi), absorbed


@dataclass(frozen=True)
class GlobalWindows:
    """One window per key that fires (and is emptied) every ``count`` records."""

    count: int

    def __post_init__(self) -> None:
        if self.count <= 0:
            raise ValueError(f"count must be positive, got {self.count}")


Assigner = Union[TumblingWindows, SlidingWindows, SessionWindows, GlobalWindows]


def assigner_from_spec(spec: Mapping[str, Any]) -> Assigner:
    """The assigner of a window spec ``{"type": ..., "size_ms": ..., ...}`` from the planner."""
    kind = spec["type"]
    if kind == TUMBLING:
        return TumblingWindows(spec["size_ms"], spec.get("offset_ms", 0))
    if kind == SLIDING:
        return SlidingWindows(spec["size_ms"], spec["slide_ms"], spec.get("offset_ms", 0))
    if kind == SESSION:
        return SessionWindows(spec["gap_ms"])
    if kind == GLOBAL:
        return GlobalWindows(spec["count"])
    raise ValueError(f"unknown window type {kind!r}")
