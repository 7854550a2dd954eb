"""Watermark strategies, per-split generators and the minimum over inputs."""

from __future__ import annotations

import pytest

from streamlet.errors import PipelineDefinitionError
from streamlet.time.watermarks import (
    IDLE, MAX_WATERMARK, MIN_WATERMARK, WatermarkGenerator, WatermarkStrategy, WatermarkTracker,
)


def test_parse_strategies() -> None:
    assert WatermarkStrategy.parse("monotonous", "w") == WatermarkStrategy(0, None)
    s = WatermarkStrategy.parse({"max_out_of_orderness": "4s", "idle_timeout": "30s"}, "w")
    assert s == WatermarkStrategy(4000, 30_000)
    assert WatermarkStrategy.from_spec(s.to_spec()) == s
    assert s.describe() == "bounded 4s, idle after 30s"


@pytest.mark.parametrize("value,match", [
    ("sometimes", "expected monotonous or a map"),
    ({"max_out_of_order": "4s"}, "unknown key 'max_out_of_order'"),
    ({"max_out_of_orderness": "four"}, "expected a duration"),
    ({"idle_timeout": 0}, "positive"),
])
def test_parse_errors_name_the_place(value: object, match: str) -> None:
    with pytest.raises(PipelineDefinitionError, match=match) as info:
        WatermarkStrategy.parse(value, "q.yaml: sources.bids.watermark")
    assert str(info.value).startswith("q.yaml: sources.bids.watermark")


def test_bounded_generator_lags_the_max_timestamp() -> None:
    g = WatermarkStrategy(100, None).create_generator()
    assert g.current(0) == MIN_WATERMARK
    g.on_batch([500, 300, 450], 0)
    assert g.current(0) == 500 - 100 - 1
    g.on_batch([200], 0)  # late records never move it back
    assert g.current(0) == 399
    g.on_batch([], 0)
    assert g.current(10**9) == 399  # no idleness without a timeout


def test_generator_goes_idle_on_the_clock_and_comes_back() -> None:
    g = WatermarkGenerator(0, idle_timeout_ms=1000)
    assert g.current(5000) == MIN_WATERMARK  # idleness counted from the first query
    assert g.current(5999) == MIN_WATERMARK
    assert g.current(6000) is IDLE
    g.on_batch([42], 7000)
    assert g.current(7000) == 41
    assert g.current(7999) == 41
    assert g.current(8000) is IDLE
    g.on_batch([], 8500)  # an empty batch is no activity
    assert g.current(8500) is IDLE


def test_tracker_is_min_over_active_inputs() -> None:
    t = WatermarkTracker(3)
    assert t.update(0, 10) is None
    assert t.update(1, 20) is None
    assert t.update(2, 5) == 5
    assert t.update(2, 30) == 10
    assert t.update(0, 8) is None  # a lower watermark of one input is ignored
    assert t.watermark_of(0) == 10
    assert t.set_idle(0, True) == 20
    assert not t.idle
    assert t.set_idle(1, True) == 30
    assert t.set_idle(2, True) is None
    assert t.idle and t.current == 30


def test_input_back_from_idle_behind_is_left_out_until_it_catches_up() -> None:
    t = WatermarkTracker(2)
    t.update(0, 100)
    t.update(1, 50)
    assert t.current == 50
    t.set_idle(1, True)
    assert t.current == 100
    assert t.update(1, 60) is None  # active again but behind: excluded, no move back
    assert t.update(0, 200) == 200
    assert t.update(1, 150) is None
    assert t.update(1, 250) is None
    assert t.update(0, 300) == 250  # input 1 caught up and holds the minimum again


def test_added_input_never_moves_the_watermark_back() -> None:
    t = WatermarkTracker(1)
    assert t.update(0, 100) == 100
    i = t.add_input()
    assert t.update(0, 150) == 150
    assert t.update(i, 120) is None
    assert t.update(i, 160) is None
    assert t.update(0, 170) == 160
    assert t.update(0, MAX_WATERMARK) is None
    assert t.update(i, MAX_WATERMARK) == MAX_WATERMARK


def test_idle_marker_is_a_singleton() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(IDLE)) is IDLE
    assert repr(IDLE) == "IDLE"
