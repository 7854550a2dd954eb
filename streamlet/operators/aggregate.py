"""Keyed running aggregates and reduce.

Streaming mode emits the updated row per input record (as a running aggregate in Flink's
DataStream API).  Batch mode (every source bounded) emits one final row per key at end of input,
as Flink's batch execution does; it keeps the same per-key accumulators (hash aggregation).

State is one value per key in the backend's ``value_state``: the accumulator of
:mod:`streamlet.operators.accumulators` (a scalar when the node has one single-slot aggregate,
a list of slots otherwise).
"""

from __future__ import annotations

from typing import Any

from streamlet.operators.base import Batch, Operator, RuntimeContext, Timestamps
from streamlet.graph.operators import AggregateSpec, ReduceSpec
from streamlet.operators.accumulators import AggregateCode
from streamlet.operators.codegen import CodeBuilder, call_generated, function_ref, key_code

class KeyedAggregateOperator(Operator):
    """``key_by`` + ``aggregate: {name: func or {func: field}}``.

    Result rows carry the key field(s) (``key`` for an expression key) and each named aggregate.
    """

    def __init__(self, spec: AggregateSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)
        self._spec = spec
        self._name = ctx.vertex_name
        self._batch_mode = ctx.mode == "batch"

    def open(self) -> None:
        self._state = self.ctx.state.value_state(self._spec.id)
        spec = self._spec
        b = CodeBuilder(self._name)
        nid = spec.id
        code = AggregateCode(b, spec.aggregates, nid)
        get = b.bind("get", self._state.get)
        put = b.bind("put", self._state.put)
        b.add(0, "def _agg(batch):")
        b.add(1, "out = []; _append = out.append")
        b.add(1, "for r in batch:")
        b.add(2, f"k = {key_code(b, spec.key, nid)}", nid)
        b.add(2, f"a = {get}(k)", nid)  # a key that cannot be hashed (a list field) fails here
        # accumulator lines carry the node id too: a bad value (e.g. a string to sum) is the user's
        b.add(2, "if a is None:")
        code.new_lines("a", 3)
        b.add(2, "else:")
        code.update_lines("a", 3)
        b.add(2, f"{put}(k, a)")
        key_fields = spec.key.output_fields
        if len(key_fields) == 1:
            key_items = [f"{key_fields[0]!r}: k"]
        else:
            key_items = [f"{f!r}: k[{j}]" for j, f in enumerate(key_fields)]
        row = "{" + ", ".join(key_items + code.result_items("a")) + "}"
        if not self._batch_mode:
            b.add(2, f"_append({row})")
        b.add(1, "return out")
        b.add(0, "def _rows(items):")
        b.add(1, f"return [{row} for k, a in items]")
        self._fn = b.compile("_agg")
        self._rows = b.namespace["_rows"]

    def process(self, records: Batch, timestamps: Timestamps) -> tuple[Batch, Timestamps]:
        return call_generated(self._fn, records), None

    def end_input(self) -> tuple[Batch, Timestamps]:
        if self._batch_mode:
            return self._rows(self._state.items()), None
        return [], None


class KeyedReduceOperator(Operator):
    """``key_by`` + ``reduce: EXPR over a, b`` (or ``package.module:fn(a, b)``).

    ``a`` is the key's accumulated record, ``b`` the new one; the result replaces ``a`` and is
    emitted per record (streaming) or once per key at end of input (batch).
    """

    def __init__(self, spec: ReduceSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)
        self._spec = spec
        self._name = ctx.vertex_name
        self._batch_mode = ctx.mode == "batch"

    def open(self) -> None:
        self._state = self.ctx.state.value_state(self._spec.id)
        spec = self._spec
        nid = spec.id
        b = CodeBuilder(self._name)
        get = b.bind("get", self._state.get)
        put = b.bind("put", self._state.put)
        b.add(0, "def _reduce(batch):")
        b.add(1, "out = []; _append = out.append")
        b.add(1, "for r in batch:")
        b.add(2, f"k = {key_code(b, spec.key, nid)}", nid)
        b.add(2, f"a = {get}(k)", nid)  # a key that cannot be hashed (a list field) fails here
        b.add(2, "if a is None:")
        b.add(3, "a = r")
        b.add(2, "else:")
        b.add(3, "b = r")
        b.add(3, f"a = {function_ref(b, spec.expr, spec.path, args='a, b')}", nid)
        b.add(2, f"{put}(k, a)")
        if not self._batch_mode:
            b.add(2, "_append(a)")
        b.add(1, "return out")
        self._fn = b.compile("_reduce")

    def process(self, records: Batch, timestamps: Timestamps) -> tuple[Batch, Timestamps]:
        return call_generated(self._fn, records), None

    def end_input(self) -> tuple[Batch, Timestamps]:
        if self._batch_mode:
            return [v for _, v in self._state.items()], None
        return [], None
