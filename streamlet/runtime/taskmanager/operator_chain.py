"""Build a subtask's operators from the typed op specs of its JobVertex.

Each spec names the class that runs it (``OpSpec.OPERATOR``, an import string).  Consecutive
fusable specs (and a source's decoder) are compiled together into one operator (the first one's
class, :class:`~streamlet.operators.basic.FusedOperator`); other operators stand alone; the
source and sink specs become the task's reader and writer.
"""

from __future__ import annotations

from typing import Any

from streamlet.api.registry import load_class, sink_class, source_class
from streamlet.connectors.base import SinkWriter, SourceReader, named_writer
from streamlet.graph.operators import MapSpec, OpSpec, SinkSpec, SourceSpec
from streamlet.operators.base import Operator, RuntimeContext


class OperatorChain:
    """The operators of one subtask, in order, plus its source reader and sink writer."""

    def __init__(self, specs: tuple[OpSpec, ...], ctx: RuntimeContext, splits: tuple[Any, ...],
                 source_ctx: Any = None) -> None:
        self.reader: SourceReader | None = None
        #: the reader's splits (fresh or restored states), given to it by the task after ``open``
        self.splits: list[Any] = list(splits)
        self.writer: SinkWriter | None = None
        self.operators: list[Operator] = []
        pending: list[OpSpec] = []
        extra_globals: dict[str, Any] = {}
        body = list(specs)
        if body and isinstance(body[0], SourceSpec):
            src = body.pop(0)
            self.reader = source_class(src.type).create_reader(src.params, source_ctx)
            decode = self.reader.decode_stage()
            if decode is not None:
                expr, extra_globals = decode
                pending.append(MapSpec(src.id, expr))
        sink_spec = None
        if body and isinstance(body[-1], SinkSpec):
            sink_spec = body.pop()

        def fuse() -> None:
            if pending:
                first = next((p for p in pending if p.OPERATOR), pending[0])
                self.operators.append(load_class(first.OPERATOR)(list(pending), ctx, extra_globals))
                pending.clear()

        for spec in body:
            if spec.FUSABLE:
                pending.append(spec)
                continue
            fuse()
            if spec.OPERATOR is None:
                raise ValueError(f"operator kind {spec.KIND!r} of node {spec.id!r} cannot run inside a chain")
            self.operators.append(load_class(spec.OPERATOR)(spec, ctx))
        fuse()
        if sink_spec is not None:
            writer = sink_class(sink_spec.type).create_writer(sink_spec.params, ctx)
            self.writer = named_writer(writer, sink_spec.id)  # its failures name the sink node
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
