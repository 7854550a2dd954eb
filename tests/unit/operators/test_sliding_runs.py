"""The queue of a sliding window's firing runs (``window._Runs``) pops what a binary heap of the
same ``(ts, origin, key)`` tuples pops, whatever the order of pushes and pops."""

from __future__ import annotations

import heapq
import random

import pytest

from streamlet.operators.window import _Runs


@pytest.mark.parametrize("seed", range(40))
def test_pops_what_a_heap_pops(seed: int) -> None:
    rnd = random.Random(seed)
    runs = _Runs()
    heap: list[tuple[int, int, str]] = []
    popped = 0
    for step in range(400):
        if heap and rnd.random() < 0.45:
            expected = heapq.heappop(heap)
            assert runs.pop() == expected
            popped += 1
            if heap:
                assert runs.first() == heap[0][0]
        else:
            # a few timestamps, some at the current least (a bucket being read), origins unique
            # and mostly but not always increasing
            ts = rnd.randrange(6) * 10 + (heap[0][0] if heap and rnd.random() < 0.5 else 0)
            origin = step if rnd.random() < 0.8 else rnd.randrange(1000) * 1000 + step
            heapq.heappush(heap, (ts, origin, f"k{origin}"))
            runs.push(ts, origin, f"k{origin}")
        assert len(runs) == len(heap)
    while heap:
        assert runs.pop() == heapq.heappop(heap)
    assert len(runs) == 0 and popped > 50
