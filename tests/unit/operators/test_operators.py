"""Operators on whole batches: fused stateless stages, keyed aggregates and reduce (streaming and
batch mode), the chain's end-of-input cascade, and user-function errors that name the node and
the record."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Callable

import pytest

from streamlet.errors import UserFunctionError
from streamlet.keys import KeyGroupRange
from streamlet.operators.aggregate import KeyedAggregateOperator, KeyedReduceOperator
from streamlet.graph.operators import OpSpec
from streamlet.operators.base import RuntimeContext
from streamlet.operators.basic import FusedOperator
from streamlet.runtime.taskmanager.operator_chain import OperatorChain
from streamlet.state.heap.backend import HeapKeyedStateBackend
from streamlet.udf import search_path

RECORDS = [{"user": f"u{i % 5}", "day": i % 3, "v": (i * 37) % 101 - 20, "i": i} for i in range(500)]


def ctx(mode: str = "streaming") -> RuntimeContext:
    return RuntimeContext(job_name="j", vertex_name="v", subtask_index=0, parallelism=1, max_parallelism=128,
                          mode=mode, state=HeapKeyedStateBackend(KeyGroupRange(0, 127), 128))


def stage(kind: str, node: str, expr: str | None = None, path: str | None = None) -> OpSpec:
    return OpSpec.from_json({"kind": kind, "id": node, "expr": expr, "path": path})


spec_of = OpSpec.from_json


def batches(records: list[Any], size: int) -> list[list[Any]]:
    return [records[i:i + size] for i in range(0, len(records), size)]


# -- fused stateless stages ---------------------------------------------------------------------


def test_fused_map_filter_flat_map() -> None:
    op = FusedOperator([
        stage("map", "m", "dict(r, w=r['v'] * 2)"),
        stage("filter", "f", "r['w'] % 3 == 0"),
        stage("flat_map", "fm", "[dict(r, part=j) for j in range(r['day'])]"),
        stage("map", "m2", "{'i': r['i'], 'part': r['part'], 'w': r['w']}"),
    ], ctx())
    assert op.node_ids == ("m", "f", "fm", "m2")
    expected = [{"i": r["i"], "part": j, "w": r["v"] * 2}
                for r in RECORDS if (r["v"] * 2) % 3 == 0 for j in range(r["day"])]
    got: list[Any] = []
    for b in batches(RECORDS, 64):
        out, ts = op.process(b, None)
        assert ts is None
        got.extend(out)
    assert got == expected


def test_fused_stages_keep_timestamps_parallel() -> None:
    op = FusedOperator([
        stage("filter", "f", "r['i'] % 2 == 0"),
        stage("flat_map", "fm", "[r['i']] * (r['i'] % 3)"),
    ], ctx())
    recs = RECORDS[:60]
    ts = [1_000_000 + r["i"] for r in recs]
    out, out_ts = op.process(recs, ts)
    expected = [(r["i"], 1_000_000 + r["i"]) for r in recs if r["i"] % 2 == 0 for _ in range(r["i"] % 3)]
    assert list(zip(out, out_ts)) == expected
    assert op.process([], []) == ([], [])


@pytest.mark.parametrize("expr, want", [
    ("[r['i']] if r['day'] == 2 else []", lambda r: [r["i"]] if r["day"] == 2 else []),
    ("[] if r['day'] == 2 else [{'i': r['i']}]", lambda r: [] if r["day"] == 2 else [{"i": r["i"]}]),
    ("[r['v']]", lambda r: [r["v"]]),
])
def test_a_flat_map_of_at_most_one_element_emits_the_same_after_a_flat_map(expr: str, want: Any) -> None:
    """``[X] if C else []`` compiles to a filter and a map (no list per record): the same records
    and timestamps, also as the inner stage of another flat_map."""
    op = FusedOperator([stage("flat_map", "outer", "[r, r] if r['i'] % 5 == 0 else [r]"),
                        stage("flat_map", "one", expr)], ctx())
    recs = RECORDS[:90]
    ts = [7 * r["i"] for r in recs]
    twice = [(r, t) for r, t in zip(recs, ts) for _ in range(2 if r["i"] % 5 == 0 else 1)]
    expected = [(x, t) for r, t in twice for x in want(r)]
    out, out_ts = op.process(recs, ts)
    assert list(zip(out, out_ts)) == expected
    assert op.process(recs, None)[0] == [x for x, _ in expected]


def test_a_failing_single_element_flat_map_names_its_node_and_record() -> None:
    op = FusedOperator([stage("flat_map", "pick", "[r['missing']] if r['i'] > 3 else []")], ctx())
    with pytest.raises(UserFunctionError) as info:
        op.process(RECORDS[:10], None)
    assert info.value.node_id == "pick" and info.value.record == RECORDS[4]


def test_expression_globals_and_import_paths(tmp_path, udf_module) -> None:
    mod = udf_module("""
        def tag(r):
            return dict(r, tag='even' if r['i'] % 2 == 0 else 'odd')

        def keep(r):
            return r['tag'] == 'even'

        def explode(r):
            yield r['i']
            yield -r['i']
    """)
    with search_path([str(tmp_path)]):
        op = FusedOperator([
            stage("map", "t", path=f"{mod}:tag"),
            stage("filter", "k", path=f"{mod}:keep"),
            stage("flat_map", "e", path=f"{mod}:explode"),
            stage("map", "g", "math.copysign(len(re.findall('0', str(r))), r) + len(json.dumps([r]))"),
        ], ctx())
    out, _ = op.process(RECORDS[:10], None)
    import json
    import math
    import re
    expected = [math.copysign(len(re.findall("0", str(x))), x) + len(json.dumps([x]))
                for r in RECORDS[:10] if r["i"] % 2 == 0 for x in (r["i"], -r["i"])]
    assert out == expected


def test_source_decoder_stage_with_extra_globals() -> None:
    import orjson

    op = FusedOperator([stage("map", "src", "_loads(r)"), stage("map", "m", "r['a'] + 1")], ctx(),
                       {"_loads": orjson.loads})
    assert op.process([b'{"a": 1}', b'{"a": 41}'], None) == ([2, 42], None)


# -- user-function errors -----------------------------------------------------------------------


def test_map_error_names_the_failing_node_and_its_input_record() -> None:
    op = FusedOperator([
        stage("map", "shift", "dict(r, d=r['i'] - 7)"),
        stage("map", "invert", "dict(r, x=100 // r['d'])"),
        stage("filter", "keep", "True"),
    ], ctx())
    with pytest.raises(UserFunctionError) as info:
        op.process(RECORDS[:20], None)
    err = info.value
    assert err.node_id == "invert"
    assert err.record == dict(RECORDS[7], d=0)
    assert isinstance(err.cause, ZeroDivisionError)
    assert str(err).startswith("node 'invert': user function raised ZeroDivisionError: ")
    assert repr(dict(RECORDS[7], d=0)) in str(err)


@pytest.mark.parametrize("kind, expr, exc", [
    ("filter", "r['missing'] > 0", KeyError),
    ("flat_map", "range(r['user'])", TypeError),
    ("map", "int(r['user'])", ValueError),
])
def test_errors_of_every_stateless_kind(kind: str, expr: str, exc: type) -> None:
    op = FusedOperator([stage("map", "first", "r"), stage(kind, "bad", expr)], ctx())
    with pytest.raises(UserFunctionError) as info:
        op.process(RECORDS[3:5], [1, 2])  # the timestamped variant reports the same
    assert (info.value.node_id, info.value.record, type(info.value.cause)) == ("bad", RECORDS[3], exc)


def test_import_path_error_names_the_node(tmp_path, udf_module) -> None:
    mod = udf_module("def boom(r):\n    raise RuntimeError(f'bad {r}')\n")
    with search_path([str(tmp_path)]):
        op = FusedOperator([stage("map", "ok", "r"), stage("map", "udf", path=f"{mod}:boom")], ctx())
    with pytest.raises(UserFunctionError) as info:
        op.process([{"a": 1}], None)
    assert (info.value.node_id, info.value.record) == ("udf", {"a": 1})
    assert "RuntimeError: bad {'a': 1}" in str(info.value)


def test_long_records_are_shortened_in_the_message() -> None:
    op = FusedOperator([stage("map", "m", "r['nope']")], ctx())
    with pytest.raises(UserFunctionError) as info:
        op.process([{"text": "x" * 2000}], None)
    assert info.value.record == {"text": "x" * 2000}
    assert len(str(info.value)) < 700 and str(info.value).endswith("...")


# -- keyed aggregates ---------------------------------------------------------------------------


def aggregate(aggs: list[list[Any]], key: dict[str, Any], mode: str = "streaming") -> KeyedAggregateOperator:
    op = KeyedAggregateOperator(OpSpec.from_json({"kind": "aggregate", "id": "agg", "key": key,
                                                  "aggregates": aggs}), ctx(mode))
    op.open()
    return op


def run_batches(op: Any, records: list[Any], size: int = 64) -> list[Any]:
    out: list[Any] = []
    for b in batches(records, size):
        got, ts = op.process(b, None)
        assert ts is None
        out.extend(got)
    return out


REDUCERS: dict[str, Callable[[list[Any]], Any]] = {
    "sum": sum, "min": min, "max": max, "avg": statistics.fmean,
    "first": lambda xs: xs[0], "last": lambda xs: xs[-1], "collect": list,
}


@pytest.mark.parametrize("func", ["count", *REDUCERS])
def test_each_running_aggregate(func: str) -> None:
    field = None if func == "count" else "v"
    op = aggregate([["out", func, field]], {"fields": ["user"]})
    rows = run_batches(op, RECORDS)
    # streaming: one updated row per input record, carrying the key field and the aggregate
    assert len(rows) == len(RECORDS)
    seen: dict[str, list[int]] = defaultdict(list)
    for rec, row in zip(RECORDS, rows):
        seen[rec["user"]].append(rec["v"])
        expected = len(seen[rec["user"]]) if func == "count" else REDUCERS[func](seen[rec["user"]])
        assert row == {"user": rec["user"], "out": pytest.approx(expected) if func == "avg" else expected}
    assert op.end_input() == ([], None)


def test_several_aggregates_in_one_node_with_a_composite_key() -> None:
    op = aggregate([["n", "count", None], ["total", "sum", "v"], ["mean", "avg", "v"], ["hi", "max", "v"]],
                   {"fields": ["user", "day"]}, mode="batch")
    assert run_batches(op, RECORDS) == []
    rows, ts = op.end_input()
    assert ts is None
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in RECORDS:
        groups[(r["user"], r["day"])].append(r["v"])
    # batch: exactly one final row per key
    assert len(rows) == len(groups)
    for row in rows:
        vs = groups[(row["user"], row["day"])]
        assert row == {"user": row["user"], "day": row["day"], "n": len(vs), "total": sum(vs),
                       "mean": pytest.approx(statistics.fmean(vs)), "hi": max(vs)}


def test_expression_key_is_reported_as_key() -> None:
    op = aggregate([["n", "count", None]], {"expr": "[r['day'], r['i'] % 2]", "path": None}, mode="batch")
    run_batches(op, RECORDS)
    rows, _ = op.end_input()
    expected: dict[tuple[int, int], int] = defaultdict(int)
    for r in RECORDS:
        expected[(r["day"], r["i"] % 2)] += 1
    # a list key is frozen to a tuple so it can be a state key
    assert sorted((row["key"], row["n"]) for row in rows) == sorted(expected.items())


def test_aggregate_errors_name_the_node_and_record() -> None:
    op = aggregate([["t", "sum", "v"]], {"fields": ["user"]})
    bad = {"user": "u1", "value": 3}
    with pytest.raises(UserFunctionError) as info:
        op.process([RECORDS[0], bad], None)
    assert (info.value.node_id, info.value.record, type(info.value.cause)) == ("agg", bad, KeyError)
    op = aggregate([["t", "sum", "v"]], {"fields": ["user"]})
    with pytest.raises(UserFunctionError) as info:
        op.process([RECORDS[0], {"user": "u0", "v": "text"}], None)
    assert info.value.record == {"user": "u0", "v": "text"} and isinstance(info.value.cause, TypeError)


@pytest.mark.parametrize("kind", ["aggregate", "reduce"])
def test_an_unhashable_key_names_the_node_and_record(kind: str) -> None:
    def make(key: dict[str, Any]) -> Any:
        if kind == "aggregate":
            spec = OpSpec.from_json({"kind": kind, "id": "keyed", "key": key, "aggregates": [["n", "count", None]]})
            return KeyedAggregateOperator(spec, ctx())
        return KeyedReduceOperator(OpSpec.from_json({"kind": kind, "id": "keyed", "key": key, "expr": "a"}), ctx())

    op = make({"fields": ["tags"]})
    op.open()
    bad = {"tags": ["x", "y"]}
    with pytest.raises(UserFunctionError) as info:
        op.process([{"tags": "x"}, bad], None)
    assert (info.value.node_id, info.value.record) == ("keyed", bad)
    assert "unhashable type: 'list'" in str(info.value)
    # an expression key may return a list: it is made hashable
    op = make({"expr": "r['tags']", "path": None})
    op.open()
    assert len(op.process([bad, bad], None)[0]) == 2


# -- reduce ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["streaming", "batch"])
def test_reduce(mode: str) -> None:
    op = KeyedReduceOperator(spec_of({"kind": "reduce", "id": "red", "key": {"fields": ["user"]},
                              "expr": "dict(a, v=a['v'] + b['v'], n=a.get('n', 1) + 1)", "path": None}), ctx(mode))
    op.open()
    rows = run_batches(op, RECORDS)
    totals: dict[str, dict[str, Any]] = {}
    expected_rows = []
    for r in RECORDS:
        a = totals.get(r["user"])
        totals[r["user"]] = r if a is None else dict(a, v=a["v"] + r["v"], n=a.get("n", 1) + 1)
        expected_rows.append(totals[r["user"]])
    final, _ = op.end_input()
    if mode == "streaming":
        assert rows == expected_rows and final == []
    else:
        assert rows == [] and sorted(final, key=lambda x: x["user"]) == sorted(totals.values(),
                                                                             key=lambda x: x["user"])


def test_reduce_error_names_the_node_and_the_new_record() -> None:
    op = KeyedReduceOperator(spec_of({"kind": "reduce", "id": "red", "key": {"fields": ["user"]},
                              "expr": "dict(a, v=a['v'] / b['v'])", "path": None}), ctx())
    op.open()
    zero = {"user": "u0", "v": 0}
    with pytest.raises(UserFunctionError) as info:
        op.process([{"user": "u0", "v": 4}, {"user": "u1", "v": 0}, zero], None)
    assert (info.value.node_id, info.value.record) == ("red", zero)
    assert isinstance(info.value.cause, ZeroDivisionError)


# -- a chain ----------------------------------------------------------------------------------------


def test_chain_cascades_end_of_input_through_later_operators() -> None:
    """A batch aggregate's final rows flow through the stateless stages chained after it."""
    specs = tuple(spec_of(d) for d in (
        {"kind": "map", "id": "pre", "expr": "dict(r, v=r['v'] + 1000)", "path": None},
        {"kind": "aggregate", "id": "agg", "key": {"fields": ["day"]},
         "aggregates": [["n", "count", None], ["total", "sum", "v"]]},
        {"kind": "filter", "id": "post", "expr": "r['day'] != 1", "path": None},
        {"kind": "map", "id": "fmt", "expr": "f\"{r['day']}:{r['n']}:{r['total']}\"", "path": None},
    ))
    chain = OperatorChain(specs, ctx("batch"), ())
    chain.open()
    assert [type(op).__name__ for op in chain.operators] == ["FusedOperator", "KeyedAggregateOperator",
                                                             "FusedOperator"]
    for b in batches(RECORDS, 100):
        assert chain.process(b, None) == ([], None)
    out, ts = chain.end_input()
    expected = sorted(f"{d}:{sum(1 for r in RECORDS if r['day'] == d)}:"
                      f"{sum(r['v'] + 1000 for r in RECORDS if r['day'] == d)}" for d in (0, 2))
    assert (sorted(out), ts) == (expected, None)
    chain.close()
