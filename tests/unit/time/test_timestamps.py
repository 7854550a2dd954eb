"""A source's timestamp spec compiled to a batch function."""

from __future__ import annotations

import datetime

import pytest

from streamlet.errors import UserFunctionError
from streamlet.time.durations import duration_ms, format_ms
from streamlet.time.timestamps import compile_timestamps, to_epoch_ms
from streamlet.errors import PipelineDefinitionError


def test_field_of_epoch_ms_iso_and_digits() -> None:
    f = compile_timestamps({"field": "ts"}, "src")
    iso = "2024-05-01T12:00:00.250Z"
    expected = int(datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc).timestamp() * 1000)
    assert f([{"ts": 5}, {"ts": iso}, {"ts": "17"}, {"ts": 3.9}]) == [5, expected, 17, 3]
    assert f([]) == []
    assert to_epoch_ms("2024-05-01T14:00:00.250+02:00") == expected
    assert to_epoch_ms("2024-05-01 12:00:00.250") == expected  # no offset: UTC


def test_expression_and_import_path(udf_module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    f = compile_timestamps({"expr": "r['t'] * 1000"}, "src")
    assert f([{"t": 1}, {"t": 2}]) == [1000, 2000]
    mod = udf_module("def ts(r):\n    return r['t'] + 1\n")
    sys.path.insert(0, str(tmp_path))
    g = compile_timestamps({"path": f"{mod}:ts"}, "src")
    assert g([{"t": 1}]) == [2]


def test_errors_name_the_source_and_the_record() -> None:
    f = compile_timestamps({"field": "ts"}, "bids")
    with pytest.raises(UserFunctionError, match="node 'bids'.*no timestamp field 'ts'.*on record \\{'x': 2\\}"):
        f([{"ts": 1}, {"x": 2}])
    with pytest.raises(UserFunctionError, match="node 'bids'.*neither epoch milliseconds.*'nope'"):
        f([{"ts": 1}, {"ts": "nope"}])
    with pytest.raises(UserFunctionError, match="node 'bids'.*on record 'text'"):
        f(["text"])
    g = compile_timestamps({"expr": "r['t'] // 0"}, "bids")
    with pytest.raises(UserFunctionError, match="ZeroDivisionError.*on record \\{'t': 1\\}"):
        g([{"t": 1}])


def test_durations() -> None:
    assert duration_ms("4s", "w") == 4000
    assert duration_ms("1.5 min", "w") == 90_000
    assert duration_ms(250, "w") == 250
    assert duration_ms("-5s", "w", allow_negative=True) == -5000
    assert format_ms(3_600_000) == "1h" and format_ms(1500) == "1500ms"
    for bad in ("-5s", "ten", True, "0.5ms"):
        with pytest.raises(PipelineDefinitionError):
            duration_ms(bad, "w")
    with pytest.raises(PipelineDefinitionError, match="positive"):
        duration_ms(0, "w", allow_zero=False)
