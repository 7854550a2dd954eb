"""A subtask's operators, built from the typed op specs of its JobVertex, and how elements flow
through them.

Each spec names the class that runs it (``OpSpec.OPERATOR``, an import string).  Consecutive
fusable specs (and a source's decoder) are compiled together into one operator (the first one's
class, :class:`~streamlet.operators.basic.FusedOperator`); other operators stand alone; the
source and sink specs become the task's reader and writer.  With event time at the source, the
decoder runs on its own so timestamps are taken from every decoded record, before user stages
(unless the reader gives the timestamps itself: ``timestamp_stage``).

Output of an operator always flows through the operators after it: a batch
(:meth:`OperatorChain.process`), what a watermark fires (:meth:`process_watermark_chunks`), a timer's
output (:meth:`process_from`), the second input of a two-input head (:meth:`process_right`), and
the final output at end of input (:meth:`end_input_chunks`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generator, Iterator

from streamlet.api.registry import load_class, sink_class, source_class
from streamlet.connectors.base import SinkWriter, SourceReader, named_writer
from streamlet.graph.operators import MapSpec, OpSpec, SinkSpec, SourceSpec
from streamlet.metrics.registry import Counter, MetricGroup
from streamlet.operators.base import Operator, Output, RuntimeContext, concat

Batch = list[Any]
Timestamps = list[int] | None


class OperatorChain:
    """The operators of one subtask, in order, plus its source reader and sink writer.

    ``processing_time(index)`` gives the ProcessingTimeService of the operator at ``index`` (its
    callbacks' output enters the chain after it); ``metrics`` gets a child group per operator.
    """

    def __init__(self, specs: tuple[OpSpec, ...], ctx: RuntimeContext, splits: tuple[Any, ...],
                 source_ctx: Any = None, processing_time: Callable[[int], Any] | None = None,
                 metrics: MetricGroup | None = None) -> None:
        self.reader: SourceReader | None = None
        #: the reader's splits (fresh or restored states), given to it by the task after ``open``
        self.splits: list[Any] = list(splits)
        self.writer: SinkWriter | None = None
        self.source: SourceSpec | None = None
        #: the source's decoder when event time is declared (timestamps are taken after it)
        self.decoder: Operator | None = None
        #: the reader's own timestamps of each batch (``timestamp_stage``), when it gives them
        self.native_timestamps: Callable[[Batch], list[int]] | None = None
        self.operators: list[Operator] = []
        body = list(specs)
        pending: list[OpSpec] = []
        extra_globals: dict[str, Any] = {}
        if body and isinstance(body[0], SourceSpec):
            src = self.source = body.pop(0)
            self.reader = source_class(src.type).create_reader(src.params, source_ctx)
            stage = getattr(self.reader, "timestamp_stage", None)
            if src.timestamp is not None and stage is not None:
                self.native_timestamps = stage(src.timestamp)
            decode = self.reader.decode_stage()
            if decode is not None:
                expr, extra_globals = decode
                if src.timestamp is not None and self.native_timestamps is None:
                    fused = load_class(MapSpec.OPERATOR)
                    self.decoder = fused([MapSpec(src.id, expr)], ctx, extra_globals)
                    extra_globals = {}
                else:
                    pending.append(MapSpec(src.id, expr))
        sink_spec = None
        if body and isinstance(body[-1], SinkSpec):
            sink_spec = body.pop()
        self.sink: SinkSpec | None = sink_spec
        self._ctx = ctx
        self._processing_time = processing_time

        def context() -> RuntimeContext:
            index = len(self.operators)
            if self._processing_time is None:
                return ctx
            return dataclasses.replace(ctx, processing_time=self._processing_time(index))

        def fuse() -> None:
            nonlocal extra_globals
            if pending:
                first = next((p for p in pending if p.OPERATOR), pending[0])
                self.operators.append(load_class(first.OPERATOR)(list(pending), context(), extra_globals))
                pending.clear()
                extra_globals = {}

        for spec in body:
            if spec.FUSABLE:
                pending.append(spec)
                continue
            fuse()
            if spec.OPERATOR is None:
                raise ValueError(f"operator kind {spec.KIND!r} of node {spec.id!r} cannot run inside a chain")
            self.operators.append(load_class(spec.OPERATOR)(spec, context()))
        fuse()
        if sink_spec is not None:
            writer = sink_class(sink_spec.type).create_writer(sink_spec.params, ctx)
            self.writer = named_writer(writer, sink_spec.id)  # its failures name the sink node
        #: some operator may use keyed state (anything but fused stateless stages)
        self.stateful = any(not getattr(s, "FUSABLE", False) for s in body)
        #: every spec's output is JSON when its input is (see OpSpec.JSON_OUTPUT)
        self.json_output = all(s.JSON_OUTPUT for s in specs if not isinstance(s, SinkSpec))
        group = metrics or MetricGroup()
        self._counters: list[tuple[Counter, Counter]] = []
        #: one group per operator (Flink's operator scope), plus the source's and the sink's
        self.operator_groups: list[MetricGroup] = []
        if self.source is not None:
            self.operator_groups.append(group.child("operator", operator_id=self.source.id,
                                                    operator_name=self.source.id))
        for op in self.operators:
            name = " -> ".join(op.node_ids) or type(op).__name__
            g = group.child("operator", operator_id=op.node_ids[0] if op.node_ids else name, operator_name=name)
            self.operator_groups.append(g)
            self._counters.append((g.counter("numRecordsIn"), g.counter("numRecordsOut")))
        if sink_spec is not None:
            self.operator_groups.append(group.child("operator", operator_id=sink_spec.id, operator_name=sink_spec.id))
        self._ops = list(zip(self.operators, self._counters))

    # -- life cycle -------------------------------------------------------------------------

    def open(self, restored: dict[str, Any] | None = None) -> None:
        """``initialize_state`` (each operator's own snapshot, by its first node id) then ``open``."""
        restored = restored or {}
        for op in self.operators:
            op.initialize_state(restored.get(op.node_ids[0]) if op.node_ids else None)
            op.open()

    def snapshot_state(self, checkpoint_id: int) -> dict[str, Any]:
        """Each operator's own (non-keyed) state that is not None, by its first node id."""
        out = {}
        for op in self.operators:
            state = op.snapshot_state(checkpoint_id)
            if state is not None and op.node_ids:
                out[op.node_ids[0]] = state
        return out

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        for op in self.operators:
            op.notify_checkpoint_complete(checkpoint_id)

    def close(self) -> list[BaseException]:
        """Close every operator, also when one raises; returns what they raised."""
        errors: list[BaseException] = []
        for op in self.operators:
            try:
                op.close()
            except Exception as exc:  # noqa: BLE001 - collected: every operator gets closed
                errors.append(exc)
        return errors

    # -- elements ---------------------------------------------------------------------------

    def process(self, records: Batch, ts: Timestamps) -> tuple[Batch, Timestamps]:
        for op, (n_in, n_out) in self._ops:
            n_in.count += len(records)
            records, ts = op.process(records, ts)
            n_out.count += len(records)
            if not records:
                return records, ts
        return records, ts

    def process_from(self, index: int, records: Batch, ts: Timestamps) -> tuple[Batch, Timestamps]:
        """Run ``records`` through the operators from ``index`` on (a timer's or a head's output)."""
        for op, (n_in, n_out) in self._ops[index:]:
            if not records:
                break
            n_in.count += len(records)
            records, ts = op.process(records, ts)
            n_out.count += len(records)
        return records, ts

    def process_right(self, records: Batch, ts: Timestamps) -> tuple[Batch, Timestamps]:
        """The second input of a two-input head operator (a join's right side)."""
        head, (n_in, n_out) = self._ops[0]
        n_in.count += len(records)
        out, out_ts = head.process_right(records, ts)  # type: ignore[attr-defined]
        n_out.count += len(out)
        return self.process_from(1, out, out_ts)

    def _cascade(self, produce: Callable[[Operator], Iterator[Output]]
                 ) -> Generator[tuple[Batch, Timestamps], None, None]:
        """Call ``produce`` on each operator in order; each chunk it yields flows through the later
        operators at once and is yielded (also when empty, so the caller can pause between chunks).

        Operator ``i``'s chunks all pass through operators ``i+1..`` before ``produce`` is called on
        operator ``i+1`` (what fires upstream is processed before the watermark fires downstream).
        """
        for i, (op, (_, n_out)) in enumerate(self._ops):
            for recs, ts in produce(op):
                if recs:
                    n_out.count += len(recs)
                    recs, ts = self.process_from(i + 1, recs, ts)
                yield recs, ts

    def process_watermark_chunks(self, watermark: int) -> Generator[tuple[Batch, Timestamps], None, None]:
        """What the watermark fires in each operator, flowing through the operators after it, in
        chunks (see :meth:`~streamlet.operators.base.Operator.process_watermark_chunks`)."""
        return self._cascade(lambda op: op.process_watermark_chunks(watermark))

    def end_input_chunks(self) -> Generator[tuple[Batch, Timestamps], None, None]:
        """Cascade end of input: each operator's final output flows through the rest, in chunks."""
        return self._cascade(lambda op: op.end_input_chunks())

    def process_watermark(self, watermark: int) -> tuple[Batch, Timestamps]:
        """:meth:`process_watermark_chunks` as one output."""
        return concat(self.process_watermark_chunks(watermark))

    def end_input(self) -> tuple[Batch, Timestamps]:
        """:meth:`end_input_chunks` as one output."""
        return concat(self.end_input_chunks())
