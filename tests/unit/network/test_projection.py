"""Projection on remote channels: only the fields the consumer reads, and only when it pays."""

from __future__ import annotations

from streamlet.runtime.taskmanager.network.elements import RecordBatch
from streamlet.runtime.taskmanager.network.projection import MIN_DROPPED, projection


def test_wide_records_keep_only_the_read_fields_in_order() -> None:
    project = projection(("k", "v"))
    recs = [{"id": i, "v": i * 2, "k": i % 3, "url": "u", "extra": "x" * i} for i in range(5)]
    out = project(RecordBatch(recs, list(range(5))))
    assert out.records == [{"k": i % 3, "v": i * 2} for i in range(5)]
    assert [list(r) for r in out.records] == [["k", "v"]] * 5
    assert out.timestamps == list(range(5))
    assert recs[0] == {"id": 0, "v": 0, "k": 0, "url": "u", "extra": ""}  # the input is not changed


def test_narrow_records_and_records_without_a_field_go_whole() -> None:
    project = projection(("k",))
    narrow = RecordBatch([{"k": 1, "a": 2, "b": 3}])  # dropping 2 fields does not pay
    assert MIN_DROPPED == 3 and project(narrow) is narrow
    missing = RecordBatch([{"k": 1, "a": 2, "b": 3, "c": 4}, {"a": 2, "b": 3, "c": 4, "d": 5}])
    assert project(missing) is missing  # the consumer fails on it as it would unprojected
    not_dicts = RecordBatch([[1, 2, 3, 4, 5]])
    assert project(not_dicts) is not_dicts
    empty = RecordBatch([])
    assert project(empty) is empty
