"""Window assigners against brute force: enumerate every window and check membership directly."""

from __future__ import annotations

import random

import pytest

from streamlet.time.windows import (
    GlobalWindows, SessionWindows, SlidingWindows, TumblingWindows, assigner_from_spec,
)


@pytest.mark.parametrize("size,offset", [(10, 0), (10, 3), (7, -2), (1, 0)])
def test_tumbling_start_holds_the_timestamp(size: int, offset: int) -> None:
    w = TumblingWindows(size, offset)
    for ts in range(-50, 50):
        [(start, end)] = w.windows_of(ts)
        assert start <= ts < end and end - start == size
        assert (start - offset) % size == 0


@pytest.mark.parametrize("size,slide,offset", [(10, 2, 0), (10, 3, 0), (10, 10, 0), (6, 4, 1), (5, 10, 0),
                                               (3600, 1, 0)])
def test_sliding_windows_match_brute_force(size: int, slide: int, offset: int) -> None:
    w = SlidingWindows(size, slide, offset)
    rng = random.Random(size * 31 + slide)
    for ts in [rng.randrange(-5000, 5000) for _ in range(200)]:
        # every window: starts at offset + k*slide (Flink's alignment), holds [start, start + size)
        expected = [(s, s + size) for s in range(ts - 2 * size - 2 * slide, ts + 2 * size + 2 * slide)
                    if (s - offset) % slide == 0 and s <= ts < s + size]
        assert w.windows_of(ts) == expected


def test_sliding_slices_partition_each_window() -> None:
    w = SlidingWindows(10, 4, 0)
    assert w.slice == 2
    for end in range(-18, 40, 4):  # window ends: starts are multiples of the slide, plus size
        slices = list(w.slices_of_window(end))
        assert slices[0] == end - 10 and len(slices) == 5
        for s in slices:  # each slice of the window lists that window among its windows
            assert end in w.window_ends_of_slice(s)
    for ts in range(-30, 30):
        s = w.slice_start(ts)
        assert s <= ts < s + w.slice
        assert w.last_window_end(s) == max(e for e in w.window_ends_of_slice(s))


def test_sliding_with_gaps_leaves_some_slices_out() -> None:
    w = SlidingWindows(5, 10, 0)  # windows [0, 5), [10, 15), ...
    assert list(w.window_ends_of_slice(0)) == [5]
    assert list(w.window_ends_of_slice(5)) == []


def test_session_merge_absorbs_intersecting_sessions() -> None:
    s = SessionWindows(10)
    assert s.window_of(5) == (5, 15)
    assert s.merge([], 0, 10) == ((0, 10), [])
    assert s.merge([(0, 10), (30, 40)], 10, 20) == ((0, 20), [0])       # touching merges
    assert s.merge([(0, 10), (20, 30)], 9, 21) == ((0, 30), [0, 1])     # bridges two
    assert s.merge([(0, 10)], 11, 21) == ((11, 21), [])
    assert s.merge([(50, 60), (0, 10)], 2, 12) == ((0, 12), [1])


def test_session_merge_is_order_independent() -> None:
    rng = random.Random(7)
    s = SessionWindows(10)
    for _ in range(50):
        ts = [rng.randrange(0, 200) for _ in range(30)]
        # reference: sort, split where the next timestamp is beyond the running end
        expected: list[list[int]] = []
        for t in sorted(ts):
            if expected and t <= expected[-1][1]:
                expected[-1][1] = max(expected[-1][1], t + 10)
            else:
                expected.append([t, t + 10])
        sessions: list[tuple[int, int]] = []
        for t in ts:
            merged, absorbed = s.merge(sessions, t, t + 10)
            sessions = [w for i, w in enumerate(sessions) if i not in absorbed] + [merged]
        assert sorted(sessions) == [tuple(x) for x in expected]


def test_assigner_from_spec_and_validation() -> None:
    assert assigner_from_spec({"type": "tumbling", "size_ms": 5}) == TumblingWindows(5)
    assert assigner_from_spec({"type": "sliding", "size_ms": 10, "slide_ms": 5}) == SlidingWindows(10, 5)
    assert assigner_from_spec({"type": "session", "gap_ms": 3}) == SessionWindows(3)
    assert assigner_from_spec({"type": "global", "count": 3}) == GlobalWindows(3)
    with pytest.raises(ValueError, match="positive"):
        TumblingWindows(0)
    with pytest.raises(ValueError, match="unknown window type"):
        assigner_from_spec({"type": "nope"})
