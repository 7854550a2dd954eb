"""Keyed running aggregates and reduce.

Streaming mode emits the updated row per input record (as a running aggregate in Flink's
DataStream API).  Batch mode (every source bounded) emits one final row per key at end of input,
as Flink's batch execution does; it keeps the same per-key accumulators (hash aggregation).

State is one value per key in the backend's ``value_state``: the accumulator is a scalar when
the node has one aggregate (and it is not ``avg``), a list of slots otherwise.
"""

from __future__ import annotations

from typing import Any

from streamlet.operators.base import Batch, Operator, RuntimeContext, Timestamps
from streamlet.graph.operators import AggregateSpec, ReduceSpec
from streamlet.operators.codegen import CodeBuilder, call_generated, function_ref, key_code

# func -> (init exprs, one per slot; update exprs, one per slot; result expr).
# {V} is the record's field value, {A0}/{A1} the accumulator slots.
_AGG: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "count": (("1",), ("{A0} + 1",), "{A0}"),
    "sum": (("{V}",), ("{A0} + {V}",), "{A0}"),
    "min": (("{V}",), ("{V} if {V} < {A0} else {A0}",), "{A0}"),
    "max": (("{V}",), ("{V} if {V} > {A0} else {A0}",), "{A0}"),
    "first": (("{V}",), ("{A0}",), "{A0}"),
    "last": (("{V}",), ("{V}",), "{A0}"),
    "avg": (("{V}", "1"), ("{A0} + {V}", "{A1} + 1"), "{A0} / {A1}"),
    "collect": (("[{V}]",), ("{A0} + [{V}]",), "{A0}"),
}


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
        aggs = spec.aggregates
        nslots = sum(len(_AGG[a[1]][0]) for a in aggs)
        scalar = nslots == 1
        b = CodeBuilder(self._name)
        nid = spec.id
        get = b.bind("get", self._state.get)
        put = b.bind("put", self._state.put)
        b.add(0, "def _agg(batch):")
        b.add(1, "out = []; _append = out.append")
        b.add(1, "for r in batch:")
        b.add(2, f"k = {key_code(b, spec.key, nid)}", nid)
        b.add(2, f"a = {get}(k)", nid)  # a key that cannot be hashed (a list field) fails here
        init: list[str] = []
        update: list[str] = []
        result: list[str] = []
        slot = 0
        for i, (out_name, func, fld) in enumerate(aggs):
            inits, updates, res = _AGG[func]
            names = {f"A{j}": ("a" if scalar else f"a[{slot + j}]") for j in range(len(inits))}
            names["V"] = f"v{i}"
            if fld is not None:
                b.add(2, f"v{i} = r[{fld!r}]", nid)
            init.extend(x.format(**names) for x in inits)
            update.extend(u.format(**names) for u in updates)
            result.append(f"{out_name!r}: {res.format(**names)}")
            slot += len(inits)
        # accumulator lines carry the node id too: a bad value (e.g. a string to sum) is the user's
        if scalar:
            b.add(2, "if a is None:")
            b.add(3, f"a = {init[0]}", nid)
            b.add(2, "else:")
            b.add(3, f"a = {update[0]}", nid)
        else:
            b.add(2, "if a is None:")
            b.add(3, f"a = [{', '.join(init)}]", nid)
            b.add(2, "else:")
            for j, u in enumerate(update):
                b.add(3, f"a[{j}] = {u}", nid)
        b.add(2, f"{put}(k, a)")
        key_fields = spec.key.output_fields
        if len(key_fields) == 1:
            key_items = [f"{key_fields[0]!r}: k"]
        else:
            key_items = [f"{f!r}: k[{j}]" for j, f in enumerate(key_fields)]
        row = "{" + ", ".join(key_items + result) + "}"
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
