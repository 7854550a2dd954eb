"""The GC threshold of streamlet's process entries: set for the run, restored after."""

from __future__ import annotations

import gc

from streamlet import config as cfg
from streamlet.runtime.eventloop import gc_threshold


def test_the_young_threshold_holds_inside_and_is_restored() -> None:
    before = gc.get_threshold()
    with gc_threshold(123_456):
        assert gc.get_threshold() == (123_456, *before[1:])
    assert gc.get_threshold() == before
    with gc_threshold(0):  # 0: Python's own
        assert gc.get_threshold() == before


def test_the_default_is_declared_once() -> None:
    assert cfg.load(env={})["process.gc.young-threshold"] == 100_000
    assert cfg.load(overrides={"process.gc.young-threshold": "0"}, env={})["process.gc.young-threshold"] == 0
