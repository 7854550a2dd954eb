"""SlotTable: allocation checks and release."""

from __future__ import annotations

import pytest

from streamlet.runtime.taskmanager.slots import SlotError, SlotState, SlotTable


def test_allocate_release_and_report() -> None:
    t = SlotTable(3)
    a = t.allocate("j1", [0, 1])
    assert t.allocate("j1", [1]) == a  # the same job may name its slots again
    assert t.free == 1
    with pytest.raises(SlotError, match="slot 1 is held by job j1"):
        t.allocate("j2", [2, 1])
    assert t.free == 1  # a refused allocation changes nothing
    with pytest.raises(SlotError, match="slot 5 does not exist"):
        t.allocate("j2", [5])
    assert [s["state"] for s in t.report()] == ["ALLOCATED", "ALLOCATED", "FREE"]
    assert t.release("j1") == [0, 1]
    assert all(s.state is SlotState.FREE for s in t.slots)
    with pytest.raises(SlotError):
        SlotTable(0)
