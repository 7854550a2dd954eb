"""The in-memory timer queue both backends use (Flink's heap priority queue set).

RocksDB keeps its timers here too (Flink's ``timer-service.factory: HEAP``): timers are few
compared with keyed entries, and a heap keeps ``peek`` at one list access.  They are snapshotted
by key group with the backend's state.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Iterable, Iterator

from streamlet.state.base import Key, Namespace, Timer


class HeapTimerQueue:
    """A :class:`~streamlet.state.base.TimerQueue`: a binary heap plus a dict for dedup and delete.

    Deletion is lazy: the heap entry stays until it reaches the top, and is live only while the
    dict maps its (key, namespace, timestamp) to the entry's sequence number.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._heap: list[tuple[int, int, Key, Namespace]] = []
        self._live: dict[tuple[Key, Namespace, int], int] = {}
        self._seq = itertools.count()

    def add(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        ident = (key, namespace, timestamp)
        if ident in self._live:
            return False
        seq = next(self._seq)
        self._live[ident] = seq
        heapq.heappush(self._heap, (timestamp, seq, key, namespace))
        return True

    def delete(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        if self._live.pop((key, namespace, timestamp), None) is None:
            return False
        if not self._live:
            self._heap.clear()
        return True

    def contains(self, key: Key, namespace: Namespace, timestamp: int) -> bool:
        return (key, namespace, timestamp) in self._live

    def _drop_dead_top(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            ts, seq, key, ns = heap[0]
            if live.get((key, ns, ts)) == seq:
                return
            heapq.heappop(heap)

    def peek(self) -> Timer | None:
        self._drop_dead_top()
        if not self._heap:
            return None
        ts, _, key, ns = self._heap[0]
        return ts, key, ns

    def pop_until(self, timestamp: int) -> list[Timer]:
        heap, live = self._heap, self._live
        out: list[Timer] = []
        while heap and heap[0][0] <= timestamp:
            ts, seq, key, ns = heapq.heappop(heap)
            ident = (key, ns, ts)
            if live.get(ident) == seq:
                del live[ident]
                out.append((ts, key, ns))
        return out

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Timer]:
        """Every registered timer, in no particular order (snapshots)."""
        for (key, ns, ts) in self._live:
            yield ts, key, ns

    def load(self, timers: Iterable[tuple[int, Any, Any]]) -> None:
        """Add restored timers (already frozen keys and namespaces)."""
        for ts, key, ns in timers:
            self.add(key, ns, ts)
