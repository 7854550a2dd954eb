"""Build a subtask's operators from the op specs of its JobVertex.

Consecutive stateless specs (and a source's decoder) are fused into one
:class:`~streamlet.operators.basic.FusedOperator`; keyed operators stand alone; the source and
sink specs become the task's reader and writer.
"""

from __future__ import annotations

from typing import Any

from streamlet.api.registry import sink_class, source_class
from streamlet.connectors.base import SinkWriter, SourceReader
from streamlet.operators.aggregate import KeyedAggregateOperator, KeyedReduceOperator
from streamlet.operators.base import Operator, RuntimeContext
from streamlet.operators.basic import STATELESS, FusedOperator


class OperatorChain:
    """The operators of one subtask, in order, plus its source reader and sink writer."""

    def __init__(self, specs: tuple[dict[str, Any], ...], ctx: RuntimeContext, splits: tuple[Any, ...],
                 source_ctx: Any = None) -> None:
        self.reader: SourceReader | None = None
        self.writer: SinkWriter | None = None
        self.operators: list[Operator] = []
        pending: list[dict[str, Any]] = []
        name = ctx.vertex_name
        body = list(specs)
        if body and body[0]["kind"] == "source":
            src = body.pop(0)
            self.reader = source_class(src["type"]).create_reader(src["params"], list(splits), source_ctx)
            decode = self.reader.decode_stage()
            if decode is not None:
                expr, globs = decode
                pending.append({"kind": "map", "id": src["id"], "expr": expr, "path": None, "globals": globs})
        sink_spec = None
        if body and body[-1]["kind"] == "sink":
            sink_spec = body.pop()
        for spec in body:
            kind = spec["kind"]
            if kind in STATELESS:
                pending.append(spec)
                continue
            if pending:
                self.operators.append(FusedOperator(pending, ctx))
                pending = []
            if kind == "aggregate":
                self.operators.append(KeyedAggregateOperator(spec, ctx))
            elif kind == "reduce":
                self.operators.append(KeyedReduceOperator(spec, ctx))
            else:
                raise ValueError(f"unknown operator kind {kind!r}")
        if pending:
            self.operators.append(FusedOperator(pending, ctx))
        if sink_spec is not None:
            self.writer = sink_class(sink_spec["type"]).create_writer(sink_spec["params"], ctx)
        for op in self.operators:
            op.initialize_state(None)
            op.open()

    def process(self, records: list[Any], ts: list[int] | None) -> tuple[list[Any], list[int] | None]:
        for op in self.operators:
            records, ts = op.process(records, ts)
            if not records:
                return records, ts
        return records, ts

    def end_input(self) -> tuple[list[Any], list[int] | None]:
        """Cascade end of input: each operator's final output flows through the rest."""
        out: list[Any] = []
        out_ts: list[int] | None = None
        for op in self.operators:
            if out:
                out, out_ts = op.process(out, out_ts)
            recs, ts = op.end_input()
            if recs:
                if out_ts is not None or ts is not None:
                    out_ts = (out_ts or [0] * len(out)) + (ts or [0] * len(recs))
                out = out + recs
        return out, out_ts

    def close(self) -> None:
        for op in self.operators:
            op.close()
