"""The ``datagen`` source: field kinds, slices over subtasks, determinism, pacing, validation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from streamlet.clock import ManualClock
from streamlet.testing.sources import TestingSourceContext
from streamlet.connectors.generator import DEFAULT_BASE_TIME, DatagenSource, RateLimiter
from streamlet.errors import PipelineDefinitionError


_Ctx = TestingSourceContext


def _params(**kw: Any) -> dict[str, Any]:
    return DatagenSource.validate({"type": "datagen", **kw}, "sources.s", ".")


def _run(params: dict[str, Any], parallelism: int, batch_size: int = 1024) -> list[list[dict[str, Any]]]:
    """Each subtask's rows, splits assigned as the runtime does (split i -> subtask i % p)."""
    splits = DatagenSource.enumerate_splits(params, parallelism)

    async def go() -> list[list[dict[str, Any]]]:
        out = []
        for i in range(parallelism):
            mine = [s for j, s in enumerate(splits) if j % parallelism == i]
            reader = DatagenSource.create_reader(params, mine, _Ctx(i, parallelism, batch_size))
            rows = []
            while (batch := await reader.read()) is not None:
                assert 0 < len(batch) <= batch_size
                rows += batch
            assert reader.progress() == 1.0
            await reader.close()
            out.append(rows)
        return out
    return asyncio.run(go())


def test_sequence_is_exactly_once_across_subtasks() -> None:
    params = _params(rows=1000, fields={"id": {"kind": "sequence", "start": 5}})
    for p in (1, 2, 3):
        parts = _run(params, p, batch_size=64)
        ids = [r["id"] for part in parts for r in part]
        assert sorted(ids) == list(range(5, 1005))
        assert all(len(part) in (1000 // p, 1000 // p + 1) for part in parts)
    # subtask i makes rows i, i + p, ...: its sequence ascends in steps of p
    assert [r["id"] for r in _run(params, 3)[1][:4]] == [6, 9, 12, 15]


def test_sequence_step() -> None:
    params = _params(rows=4, fields={"n": {"kind": "sequence", "start": 10, "step": -2}})
    assert [r["n"] for r in _run(params, 1)[0]] == [10, 8, 6, 4]


def test_random_ints_are_in_the_inclusive_range() -> None:
    params = _params(rows=3000, fields={"x": {"kind": "random", "min": -2, "max": 2}})
    values = [r["x"] for r in _run(params, 2)[0] + _run(params, 2)[1]]
    assert set(values) == {-2, -1, 0, 1, 2}
    assert all(type(v) is int for v in values)
    counts = Counter(values)
    assert min(counts.values()) > 0.15 * len(values)  # ~uniform: 20% each


def test_random_with_a_float_bound_makes_floats() -> None:
    params = _params(rows=2000, fields={"x": {"kind": "random", "min": 1, "max": 2.5}})
    values = [r["x"] for r in _run(params, 1)[0]]
    assert all(type(v) is float and 1 <= v <= 2.5 for v in values)
    assert min(values) < 1.1 and max(values) > 2.4


def test_choice_constant_and_string() -> None:
    params = _params(rows=600, fields={"c": {"kind": "choice", "values": ["a", 2, None]},
                                       "k": {"kind": "constant", "value": {"x": 1}},
                                       "s": {"kind": "string", "length": 6}})
    rows = _run(params, 1)[0]
    assert Counter(r["c"] for r in rows).keys() == {"a", 2, None}
    assert all(r["k"] == {"x": 1} for r in rows)
    assert all(len(r["s"]) == 6 and r["s"].isalpha() and r["s"].islower() for r in rows)
    assert len({r["s"] for r in rows}) > 590
    assert list(rows[0]) == ["c", "k", "s"]


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    fields = {"x": {"kind": "random", "min": 0, "max": 10**9}, "c": {"kind": "choice", "values": list(range(50))}}
    a = _run(_params(rows=500, seed=1, fields=fields), 2)
    b = _run(_params(rows=500, seed=1, fields=fields), 2)
    c = _run(_params(rows=500, seed=2, fields=fields), 2)
    assert a == b
    assert a != c
    # the two slices of one run draw from different streams
    assert [r["x"] for r in a[0][:50]] != [r["x"] for r in a[1][:50]]


def test_timestamp_without_rate_is_base_time_plus_row_index() -> None:
    params = _params(rows=10, base_time=1000, fields={"id": {"kind": "sequence"}, "ts": {"kind": "timestamp"}})
    rows = [r for part in _run(params, 2) for r in part]
    assert sorted((r["id"], r["ts"]) for r in rows) == [(i, 1000 + i) for i in range(10)]
    assert _params(fields={"t": {"kind": "timestamp"}})["base_time"] == DEFAULT_BASE_TIME


def test_rate_paces_rows_on_the_clock_and_stamps_its_time() -> None:
    clock = ManualClock(epoch_ms=5_000_000)
    # 128 rows/s over 2 subtasks: 64/s each, one row per chunk, due every 1/64 s (exact floats)
    params = _params(rate=128, fields={"id": {"kind": "sequence"}, "ts": {"kind": "timestamp"}})
    reader = DatagenSource.create_reader(params, DatagenSource.enumerate_splits(params, 2)[1:],
                                         _Ctx(1, 2, clock=clock))
    got: list[dict[str, Any]] = []

    async def consume() -> None:
        while True:
            got.extend(await reader.read() or [])

    async def go() -> list[int]:
        seen = []
        task = asyncio.create_task(consume())
        await asyncio.sleep(0)
        seen.append(len(got))
        for _ in range(64):
            await clock.advance(1 / 64)
            seen.append(len(got))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen
    seen = asyncio.run(go())
    assert seen == list(range(1, 66))
    assert [r["id"] for r in got] == list(range(1, 130, 2))
    # a paced row carries the clock's time when it was made
    assert [r["ts"] for r in got] == [5_000_000 + i * 1000 // 64 for i in range(65)]


def test_rate_limiter_does_not_burst_after_a_long_stall() -> None:
    clock = ManualClock()
    limiter = RateLimiter(100, _Ctx(clock=clock), max_chunk=1024)
    assert limiter.chunk == 1

    async def go() -> int:
        await limiter.acquire(1)
        await clock.advance(10)  # e.g. backpressure held the source for 10 s
        released = 0
        for _ in range(5000):
            task = asyncio.create_task(limiter.acquire(1))
            await asyncio.sleep(0)
            if not task.done():
                task.cancel()
                break
            released += 1
        return released
    # about one second's worth is allowed to catch up, not all ten
    assert 90 <= asyncio.run(go()) <= 110


def test_endless_without_rows() -> None:
    params = _params(fields={"id": {"kind": "sequence"}})
    assert not DatagenSource.is_bounded(params)
    assert DatagenSource.is_bounded(_params(rows=1, fields={"id": {"kind": "sequence"}}))
    reader = DatagenSource.create_reader(params, DatagenSource.enumerate_splits(params, 1), _Ctx(batch_size=100))

    async def go() -> list[Any]:
        return [await reader.read() for _ in range(50)]
    batches = asyncio.run(go())
    assert [r["id"] for b in batches for r in b] == list(range(5000))
    assert reader.progress() is None


def test_zero_rows_ends_at_once() -> None:
    params = _params(rows=0, fields={"id": {"kind": "sequence"}})
    assert _run(params, 2) == [[], []]


@pytest.mark.parametrize("params,where,needle", [
    ({"rowz": 5, "fields": {"a": {"kind": "sequence"}}}, "sources.s.rowz", "did you mean 'rows'"),
    ({"rows": "5", "fields": {"a": {"kind": "sequence"}}}, "sources.s.rows", "expected int"),
    ({"rows": -1, "fields": {"a": {"kind": "sequence"}}}, "sources.s.rows", ">= 0"),
    ({"rate": 0, "fields": {"a": {"kind": "sequence"}}}, "sources.s.rate", "positive"),
    ({"rows": 5}, "sources.s", "missing required key 'fields'"),
    ({"fields": {}}, "sources.s.fields", "at least one"),
    ({"fields": {"a": {"kind": "sequense"}}}, "sources.s.fields.a.kind", "did you mean 'sequence'"),
    ({"fields": {"a": {"kind": "random", "mn": 0}}}, "sources.s.fields.a.mn", "did you mean 'min'"),
    ({"fields": {"a": {"kind": "random", "min": "0"}}}, "sources.s.fields.a.min", "expected number"),
    ({"fields": {"a": {"kind": "random", "min": 5, "max": 1}}}, "sources.s.fields.a.min", "greater than max"),
    ({"fields": {"a": {"kind": "choice", "values": []}}}, "sources.s.fields.a.values", "at least one"),
    ({"fields": {"a": {"kind": "choice"}}}, "sources.s.fields.a", "missing required key 'values'"),
    ({"fields": {"a": {"min": 1}}}, "sources.s.fields.a", "missing key 'kind'"),
    ({"fields": {"a": "sequence"}}, "sources.s.fields.a", "expected a map"),
    ({"fields": {"a": {"kind": "string", "length": -3}}}, "sources.s.fields.a.length", ">= 0"),
])
def test_validation_errors_name_the_key_and_the_fix(params: dict[str, Any], where: str, needle: str) -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        _params(**params)
    assert e.value.where == where
    assert needle in str(e.value)


def test_a_reader_with_several_slices_makes_each_row_once() -> None:
    # e.g. after rescaling from 4 subtasks to 2: each reader holds two slices, which take turns
    params = _params(rows=1000, fields={"id": {"kind": "sequence"}})
    splits = DatagenSource.enumerate_splits(params, 4)

    async def go() -> list[list[int]]:
        out = []
        for mine in (splits[0::2], splits[1::2]):
            reader = DatagenSource.create_reader(params, mine, _Ctx(batch_size=100))
            ids = []
            while (batch := await reader.read()) is not None:
                ids.append([r["id"] for r in batch])
            out.append(ids)
        return out
    first, second = asyncio.run(go())
    assert sorted(i for b in first + second for i in b) == list(range(1000))
    assert first[0][:2] == [0, 4] and first[1][:2] == [2, 6]  # slices 0 and 2 alternate
