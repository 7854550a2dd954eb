"""Task: one subtask attempt, run as one asyncio task.

Main loop of a task that reads channels::

    poll the input gate; when empty: flush partly filled output batches, then wait (idle time)
    RecordBatch      -> chain.process -> every output (may wait for space: backpressure time)
    EndOfPartition   -> when every channel ended: chain.end_input, flush, EndOfPartition out

A source task polls its reader instead of a gate: a batch goes through the chain; ``[]`` (nothing
now) flushes the outputs and awaits ``reader.wait_available()`` (idle time); None ends the input.
Time is split into busy, idle (waiting for input) and backpressured (waiting for output space),
reported per second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamlet.connectors.base import SinkWriter
from streamlet.runtime.taskmanager.network.channels import InputGate, OutputChannel
from streamlet.runtime.taskmanager.network.elements import (
    END_OF_PARTITION, CheckpointBarrier, EndOfPartition, RecordBatch, Watermark,
)
from streamlet.runtime.taskmanager.network.partitioners import Split
from streamlet.runtime.taskmanager.operator_chain import OperatorChain

_perf = time.perf_counter


class TaskMetrics:
    """Counters of one subtask, read by progress reporters and heartbeats."""

    __slots__ = ("records_in", "records_out", "idle", "backpressured", "started", "ended", "progress")

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.idle = 0.0
        self.backpressured = 0.0
        self.started = 0.0
        self.ended = 0.0
        #: fraction of a bounded source read, when known
        self.progress: float | None = None


class RecordWriter:
    """Output of one edge: partitions batches over its channels and batches them up.

    A channel's batch is sent when it reaches ``batch_size`` records, and every partly filled
    batch is sent by :meth:`flush` (called when the task is about to wait, and at the end).
    """

    def __init__(self, channels: list[OutputChannel], split: Split, batch_size: int, metrics: TaskMetrics) -> None:
        self.channels = channels
        self.split = split
        self.batch_size = batch_size
        self.metrics = metrics
        n = len(channels)
        self._pending: list[list[Any]] = [[] for _ in range(n)]
        self._pending_ts: list[list[int] | None] = [None] * n

    async def emit(self, records: list[Any], ts: list[int] | None) -> None:
        size = self.batch_size
        pending = self._pending
        for i, (recs, t) in enumerate(self.split(records, ts)):
            if not recs:
                continue
            p = pending[i]
            if not p and len(recs) >= size:
                await self._put(i, RecordBatch(recs, t))
                continue
            p.extend(recs)
            if t is not None:
                pt = self._pending_ts[i]
                if pt is None:
                    self._pending_ts[i] = list(t)
                else:
                    pt.extend(t)
            if len(p) >= size:
                await self._send(i)

    async def _send(self, i: int) -> None:
        batch = RecordBatch(self._pending[i], self._pending_ts[i])
        self._pending[i] = []
        self._pending_ts[i] = None
        await self._put(i, batch)

    async def _put(self, i: int, element: Any) -> None:
        ch = self.channels[i]
        if ch.has_space():
            await ch.put(element)
        else:
            t0 = _perf()
            await ch.put(element)
            self.metrics.backpressured += _perf() - t0

    async def flush(self) -> None:
        for i, p in enumerate(self._pending):
            if p:
                await self._send(i)

    async def broadcast(self, element: Any) -> None:
        """Send a control element to every channel, after the records before it."""
        await self.flush()
        for i in range(len(self.channels)):
            await self._put(i, element)


class SinkOutput:
    """Output of a chain that ends in a sink."""

    def __init__(self, writer: SinkWriter, metrics: TaskMetrics) -> None:
        self.writer = writer
        self.metrics = metrics

    async def emit(self, records: list[Any], ts: list[int] | None) -> None:
        await self.writer.write(records)

    async def flush(self) -> None:
        return None

    async def broadcast(self, element: Any) -> None:
        if element is END_OF_PARTITION:
            await self.writer.finish()


class Task:
    """One subtask attempt."""

    def __init__(self, name: str, chain: OperatorChain, gate: InputGate | None,
                 outputs: list[RecordWriter | SinkOutput], metrics: TaskMetrics) -> None:
        self.name = name
        self.chain = chain
        self.gate = gate
        self.outputs = outputs
        self.metrics = metrics

    async def run(self) -> None:
        """Run to the end of input; raises what the chain or a connector raised."""
        m = self.metrics
        m.started = _perf()
        try:
            if self.chain.reader is not None:
                await self._run_source()
            else:
                await self._run_inputs()
            records, ts = self.chain.end_input()
            if records:
                await self._emit(records, ts)
            for out in self.outputs:
                await out.broadcast(END_OF_PARTITION)
            m.progress = 1.0 if m.progress is not None else None
        finally:
            m.ended = _perf()
            self.chain.close()
            if self.chain.reader is not None:
                await self.chain.reader.close()
            if self.chain.writer is not None:
                await self.chain.writer.close()

    async def _emit(self, records: list[Any], ts: list[int] | None) -> None:
        # counted once per record, however many edges it leaves on (as Flink counts)
        self.metrics.records_out += len(records)
        for out in self.outputs:
            await out.emit(records, ts)

    async def flush(self) -> None:
        for out in self.outputs:
            await out.flush()

    async def _run_source(self) -> None:
        reader = self.chain.reader
        assert reader is not None
        process = self.chain.process
        m = self.metrics
        await reader.open()
        reader.add_splits(self.chain.splits)
        while True:
            raw = reader.poll()
            if raw is None:
                break
            if not raw:
                # nothing now (a read under way, pacing): send what is buffered, then wait
                await self.flush()
                t0 = _perf()
                await reader.wait_available()
                m.idle += _perf() - t0
                continue
            m.records_in += len(raw)
            m.progress = reader.progress()
            records, ts = process(raw, None)
            if records:
                await self._emit(records, ts)
            # a source whose outputs never fill would otherwise never let other tasks run
            await asyncio.sleep(0)
        await self.flush()

    async def _run_inputs(self) -> None:
        gate = self.gate
        assert gate is not None
        process = self.chain.process
        m = self.metrics
        remaining = len(gate.channels)
        while remaining:
            got = gate.poll()
            if got is None:
                await self.flush()
                t0 = _perf()
                got = await gate.next()
                m.idle += _perf() - t0
            ch, element = got
            if type(element) is RecordBatch:
                m.records_in += len(element.records)
                records, ts = process(element.records, element.timestamps)
                if records:
                    await self._emit(records, ts)
            elif type(element) is EndOfPartition:
                ch.finished = True
                remaining -= 1
            elif type(element) in (Watermark, CheckpointBarrier):
                # event time and checkpoints arrive with their issues; channels already carry them
                continue
            else:
                raise TypeError(f"unexpected element {element!r} on channel {ch.channel_id}")
        await self.flush()


class SourceContextImpl:
    """The :class:`~streamlet.connectors.base.SourceContext` of a source task."""

    def __init__(self, subtask_index: int, parallelism: int, batch_size: int, clock: Any,
                 node_id: str = "source") -> None:
        self.subtask_index = subtask_index
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.clock = clock
        #: the source's node id, for errors that name it
        self.node_id = node_id

    def time_ms(self) -> int:
        return self.clock.time_ms()


def create_task(tdd: Any, gate: InputGate | None, output_channels: dict[str, OutputChannel], clock: Any,
                state: Any, console: Any = None) -> Task:
    """Build the Task of one deployment descriptor.

    ``gate`` holds the task's input channels (None for a source); ``output_channels`` maps every
    channel id of the descriptor's outputs to the producer side of that channel (local or remote).
    """
    from streamlet.ids import subtask_name
    from streamlet.operators.base import RuntimeContext
    from streamlet.runtime.taskmanager.network import partitioners
    from streamlet.udf import ensure_on_path

    ensure_on_path(tdd.sys_path)
    ctx = RuntimeContext(job_name=tdd.job_name, vertex_name=tdd.vertex_name, subtask_index=tdd.subtask_index,
                         parallelism=tdd.parallelism, max_parallelism=tdd.max_parallelism, mode=tdd.mode,
                         state=state, clock=clock, console=console)
    src_ctx = SourceContextImpl(tdd.subtask_index, tdd.parallelism, tdd.batch_size, clock, tdd.operators[0].id)
    chain = OperatorChain(tdd.operators, ctx, tdd.splits, src_ctx)
    metrics = TaskMetrics()
    outputs: list[RecordWriter | SinkOutput] = []
    for o in tdd.outputs:
        split = partitioners.build(o.partitioner, len(o.channel_ids), o.key, o.key_node, tdd.max_parallelism,
                                   tdd.subtask_index)
        outputs.append(RecordWriter([output_channels[c] for c in o.channel_ids], split, tdd.batch_size, metrics))
    if chain.writer is not None:
        outputs.append(SinkOutput(chain.writer, metrics))
    return Task(subtask_name(tdd.vertex_name, tdd.subtask_index, tdd.parallelism), chain, gate, outputs, metrics)
