"""Typed operator specs: JSON round trip of every kind, clear errors for malformed specs, and a new
operator kind added as one spec class plus one operator class runs in a chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from streamlet.graph.job_graph import HASH, JobEdge, JobGraph, JobVertex
from streamlet.graph.operators import (
    SPECS, AggregateSpec, FilterSpec, FlatMapSpec, KeySpec, MapSpec, OpSpec, ReduceSpec, SinkSpec, SourceSpec,
    SpecError, op_spec,
)
from streamlet.keys import KeyGroupRange
from streamlet.operators.base import Operator, RuntimeContext
from streamlet.runtime.taskmanager.operator_chain import OperatorChain
from streamlet.state.heap.backend import HeapKeyedStateBackend

EXAMPLES = [
    SourceSpec("s", "file", {"path": ["/x"], "format": "jsonl"}),
    SinkSpec("o", "blackhole", {}),
    MapSpec("m", "dict(r, a=1)"),
    FilterSpec("f", None, "pkg.mod:keep"),
    FlatMapSpec("fm", "[r, r]"),
    AggregateSpec("agg", KeySpec(("user", "day")), (("n", "count", None), ("t", "sum", "v"))),
    ReduceSpec("red", KeySpec(expr="r['a'] % 3"), "dict(a, v=a['v'] + b['v'])"),
]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: s.KIND)
def test_every_kind_round_trips_through_json(spec: OpSpec) -> None:
    import orjson

    data = orjson.loads(orjson.dumps(spec.to_json()))
    assert data["kind"] == spec.KIND and data["id"] == spec.id
    assert OpSpec.from_json(data) == spec


def test_a_graph_with_typed_specs_round_trips() -> None:
    import orjson

    src = JobVertex("a" * 32, "s", 2, (EXAMPLES[0], EXAMPLES[2]))
    agg = JobVertex("b" * 32, "agg -> o", 3, (EXAMPLES[5], EXAMPLES[1]))
    g = JobGraph("g", (src, agg), (JobEdge(src.id, agg.id, HASH, KeySpec(("user", "day"))),))
    assert JobGraph.from_json(orjson.loads(orjson.dumps(g.to_json()))) == g


@pytest.mark.parametrize("data, message", [
    ({"kind": "windoww", "id": "w"}, "unknown operator kind 'windoww'"),
    ({"kind": "map", "id": "m", "expr": "r", "colour": "red"}, "unknown fields ['colour']"),
    ("map", "must be a JSON object"),
])
def test_malformed_specs_are_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        OpSpec.from_json(data)
    assert issubclass(SpecError, ValueError)


class _EveryOther(Operator):
    """Keeps every other record, counting across batches (a test-only operator kind)."""

    def open(self) -> None:
        self.seen = 0

    def process(self, records: list[Any], timestamps: list[int] | None) -> tuple[list[Any], None]:
        out = [r for i, r in enumerate(records, self.seen) if i % self.spec.every == 0]
        self.seen += len(records)
        return out, None


def test_a_new_operator_kind_is_one_spec_class_and_one_operator_class() -> None:
    @op_spec
    @dataclass(frozen=True)
    class EveryOtherSpec(OpSpec):
        KIND: ClassVar[str] = "test-every-other"
        OPERATOR: ClassVar[str | None] = f"{__name__}:_EveryOther"
        every: int = 2

    try:
        spec = OpSpec.from_json({"kind": "test-every-other", "id": "eo", "every": 3})
        assert spec == EveryOtherSpec("eo", 3)
        ctx = RuntimeContext("j", "v", 0, 1, 128, "streaming", HeapKeyedStateBackend(KeyGroupRange(0, 127), 128))
        chain = OperatorChain((MapSpec("m", "r * 10"), spec, MapSpec("m2", "r + 1")), ctx, ())
        chain.open()
        assert [type(op).__name__ for op in chain.operators] == ["FusedOperator", "_EveryOther", "FusedOperator"]
        assert chain.process(list(range(5)), None)[0] == [1, 31]
        assert chain.process(list(range(5, 10)), None)[0] == [61, 91]
    finally:
        SPECS.pop("test-every-other", None)


# -- fields an operator reads (remote channels may carry only these) ---------------------------


@pytest.mark.parametrize("spec, fields", [
    (AggregateSpec("a", KeySpec(("user", "day")), (("n", "count", None), ("t", "sum", "v"), ("m", "max", "v"))),
     ("user", "day", "v")),
    (AggregateSpec("a", KeySpec(("user",)), (("vs", "collect", "url"),)), ("user", "url")),
    # whatever the record holds may be read: a key expression, a filter, a user aggregate, all of r
    (AggregateSpec("a", KeySpec(expr="r['u'] % 3"), (("n", "count", None),)), None),
    (AggregateSpec("a", KeySpec(("u",)), (("n", "count", None, "r['x'] > 1"),)), None),
    (AggregateSpec("a", KeySpec(("u",)), (("n", "pkg.mod:Agg", "v"),)), None),
    (AggregateSpec("a", KeySpec(("u",)), (("rows", "collect", None),)), None),
    (ReduceSpec("r", KeySpec(("u",)), "a"), None),
    (MapSpec("m", "r"), None),
])
def test_fields_read_by_keyed_aggregations(spec: OpSpec, fields: tuple[str, ...] | None) -> None:
    assert spec.fields_read() == fields


def test_a_window_with_a_late_output_reads_whole_records() -> None:
    from streamlet.graph.operators import WindowSpec

    w = WindowSpec("w", KeySpec(("auction",)), "tumbling", 1000, aggregates=(("n", "count", None),))
    assert w.fields_read() == ("auction",)
    assert WindowSpec("w", KeySpec(("auction",)), "tumbling", 1000, late_output="late",
                      aggregates=(("n", "count", None),)).fields_read() is None
    assert WindowSpec("w", None, "tumbling", 1000, aggregates=(("n", "count", None),)).fields_read() is None
