"""The ``datagen`` source: field kinds, slices over subtasks, determinism, pacing, validation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

import orjson

from streamlet.clock import ManualClock
from streamlet.connectors.generator import DEFAULT_BASE_TIME, ROWS_PER_BLOCK, DatagenSource, RateLimiter
from streamlet.errors import PipelineDefinitionError
from streamlet.testing.sources import TestingSourceContext, read_batches


_Ctx = TestingSourceContext


def _params(**kw: Any) -> dict[str, Any]:
    return DatagenSource.validate({"type": "datagen", **kw}, "sources.s", ".")


async def _reader(params: dict[str, Any], splits: list[dict[str, Any]], ctx: Any) -> Any:
    reader = DatagenSource.create_reader(params, ctx)
    await reader.open()
    reader.add_splits(splits)
    return reader


def _run(params: dict[str, Any], parallelism: int, batch_size: int = 1024) -> list[list[dict[str, Any]]]:
    """Each subtask's rows, splits assigned as the runtime does (split i -> subtask i % p)."""
    splits = DatagenSource.enumerate_splits(params, parallelism)

    async def go() -> list[list[dict[str, Any]]]:
        out = []
        for i in range(parallelism):
            mine = [s for j, s in enumerate(splits) if j % parallelism == i]
            reader = await _reader(params, mine, _Ctx(i, parallelism, batch_size))
            rows = []
            for batch in await read_batches(reader):
                assert 0 < len(batch) <= batch_size
                assert reader.current_split == mine[0]["id"]
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
    got: list[dict[str, Any]] = []

    async def go() -> list[int]:
        reader = await _reader(params, DatagenSource.enumerate_splits(params, 2)[1:], _Ctx(1, 2, clock=clock))
        assert reader.poll() == [{"id": 1, "ts": 5_000_000}]  # the first row is due at once
        assert reader.poll() == []  # the next one is not: poll returns at once, empty
        seen = []
        task = asyncio.create_task(_consume(reader, got))
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
    assert seen == list(range(0, 65))
    assert [r["id"] for r in got] == list(range(3, 130, 2))
    # a paced row carries the clock's time when it left the source
    assert [r["ts"] for r in got] == [5_000_000 + i * 1000 // 64 for i in range(1, 65)]


async def _consume(reader: Any, into: list[Any]) -> None:
    """The source task's loop: poll, and wait when there is nothing."""
    while (batch := reader.poll()) is not None:
        if batch:
            into.extend(batch)
        else:
            await reader.wait_available()


def test_rate_limiter_does_not_burst_after_a_long_stall() -> None:
    clock = ManualClock()
    limiter = RateLimiter(100, clock, max_chunk=1024)
    assert limiter.chunk == 1
    assert limiter.delay() == 0
    limiter.take(1)
    assert limiter.delay() == pytest.approx(0.01)
    clock._now += 10  # e.g. backpressure held the source for 10 s (no sleeper to wake)
    released = 0
    while limiter.delay() == 0 and released < 5000:
        limiter.take(1)
        released += 1
    # about one second's worth is allowed to catch up, not all ten
    assert 99 <= released <= 102


def test_rate_limiter_keeps_the_next_due_time_when_the_rate_changes() -> None:
    clock = ManualClock()
    limiter = RateLimiter(10, clock, max_chunk=1024)
    assert limiter.delay() == 0
    limiter.take(1)
    assert limiter.delay() == pytest.approx(0.1)
    limiter.set_rate(20)  # e.g. the reader took over a second slice
    assert limiter.delay() == pytest.approx(0.1)
    limiter.take(1)
    assert limiter.delay() == pytest.approx(0.15)


def test_endless_without_rows() -> None:
    params = _params(fields={"id": {"kind": "sequence"}})
    assert not DatagenSource.is_bounded(params)
    assert DatagenSource.is_bounded(_params(rows=1, fields={"id": {"kind": "sequence"}}))

    async def go() -> tuple[list[Any], Any]:
        reader = await _reader(params, DatagenSource.enumerate_splits(params, 1), _Ctx(batch_size=100))
        return [reader.poll() for _ in range(50)], reader
    batches, reader = asyncio.run(go())
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
            reader = await _reader(params, mine, _Ctx(batch_size=100))
            out.append([[r["id"] for r in b] for b in await read_batches(reader)])
        return out
    first, second = asyncio.run(go())
    assert sorted(i for b in first + second for i in b) == list(range(1000))
    assert first[0][:2] == [0, 4] and first[1][:2] == [2, 6]  # slices 0 and 2 alternate


_FIELDS = {"id": {"kind": "sequence"}, "x": {"kind": "random", "min": 0, "max": 10**9},
           "s": {"kind": "string", "length": 4}}


def test_values_do_not_depend_on_the_batch_size() -> None:
    params = _params(rows=3 * ROWS_PER_BLOCK + 17, seed=3, fields=_FIELDS)
    assert _run(params, 2, batch_size=1000) == _run(params, 2, batch_size=7)


async def _read_and_restore(params: dict[str, Any], parallelism: int, cuts: list[int],
                            batch_size: int) -> tuple[list[Any], list[Any]]:
    """Each subtask reads ``cuts[i]`` rows and snapshots; the states (JSON round trip) are dealt
    to new readers of another parallelism, which read the rest."""
    splits = DatagenSource.enumerate_splits(params, parallelism)
    first: list[Any] = []
    states: list[dict[str, Any]] = []
    for i, s in enumerate(splits):
        reader = await _reader(params, [s], _Ctx(i, parallelism, batch_size))
        first += [r for b in await read_batches(reader, max_records=cuts[i]) for r in b]
        states += orjson.loads(orjson.dumps(reader.snapshot_state(1)))
        await reader.close()
    rest: list[Any] = []
    new_p = max(1, parallelism - 1)
    for i in range(new_p):
        reader = await _reader(params, states[i::new_p], _Ctx(i, new_p, batch_size))
        rest += [r for b in await read_batches(reader) for r in b]
        assert reader.progress() == 1.0
        assert all(st["done"] for st in reader.snapshot_state(2))
    return first, rest


@pytest.mark.parametrize("cut", [0, 1, 50, ROWS_PER_BLOCK - 1, ROWS_PER_BLOCK, ROWS_PER_BLOCK + 300, 10**6])
def test_restore_from_a_snapshot_makes_exactly_the_rest(cut: int) -> None:
    rows = 2 * ROWS_PER_BLOCK + 500
    params = _params(rows=rows, seed=5, fields=_FIELDS)
    straight = {r["id"]: r for part in _run(params, 2) for r in part}
    # subtask 0 cut at ``cut``, subtask 1 mid-way: both resume on a single subtask (a rescale)
    first, rest = asyncio.run(_read_and_restore(params, 2, [cut, 700], batch_size=50))
    ids = [r["id"] for r in first + rest]
    assert sorted(ids) == list(range(rows))  # every row once: none twice, none missing
    assert {r["id"]: r for r in first + rest} == straight  # and the same values as a straight read


def test_restore_after_the_end_makes_nothing_and_an_endless_slice_continues() -> None:
    params = _params(rows=10, fields={"id": {"kind": "sequence"}})
    first, rest = asyncio.run(_read_and_restore(params, 1, [100], batch_size=4))
    assert ([r["id"] for r in first], rest) == (list(range(10)), [])

    endless = _params(fields={"id": {"kind": "sequence", "start": 100}})

    async def go() -> list[int]:
        reader = await _reader(endless, DatagenSource.enumerate_splits(endless, 3)[2:], _Ctx(batch_size=5))
        reader.poll()
        state = orjson.loads(orjson.dumps(reader.snapshot_state(7)))
        assert state == [{"id": "slice-2-of-3", "index": 2, "count": 3, "next": 17, "done": False}]
        again = await _reader(endless, state, _Ctx(batch_size=5))
        return [r["id"] for r in again.poll()]
    assert asyncio.run(go()) == [117, 120, 123, 126, 129]


def test_a_paced_restore_keeps_the_rate_of_the_slices_it_holds() -> None:
    clock = ManualClock()
    params = _params(rate=200, fields={"id": {"kind": "sequence"}})  # 100/s per slice of 2

    async def go() -> list[int]:
        splits = DatagenSource.enumerate_splits(params, 2)
        states = []
        for s in splits:
            r = await _reader(params, [s], _Ctx(clock=clock))
            r.poll()
            states += r.snapshot_state(1)
        # one reader takes over both slices: 200/s, chunk 2
        reader = await _reader(params, states, _Ctx(clock=clock))
        got: list[Any] = []
        task = asyncio.create_task(_consume(reader, got))
        for _ in range(100):
            await clock.advance(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [r["id"] for r in got]
    ids = asyncio.run(go())
    assert 198 <= len(ids) <= 204  # one second at 200 rows/s
    assert len(set(ids)) == len(ids) and 0 not in ids and 1 not in ids
