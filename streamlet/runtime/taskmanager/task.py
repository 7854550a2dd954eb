"""Task: one subtask attempt, run as one asyncio task.

Main loop of a task that reads channels (a source task polls its reader instead)::

    serve the mailbox (checkpoint triggers and notifications, timers) between elements
    poll the input gate; when empty: flush partly filled batches, then wait for input OR the mailbox
    RecordBatch         -> chain (input 0, or process_right for input 1) -> outputs (may wait: backpressure)
    Watermark / status  -> per-channel watermark; when the minimum over active channels advances:
                           chain.process_watermark_chunks -> outputs chunk by chunk (the loop
                           runs other coroutines between chunks), then the watermark goes downstream
    CheckpointBarrier   -> align (exactly-once: hold the channels that delivered it until all have;
                           at-least-once: hold none), then snapshot, forward the barrier, acknowledge
    EndOfPartition      -> the channel's watermark becomes MAX; when every channel ended:
                           chain.end_input_chunks, flush, EndOfPartition out

A source task: ``reader.poll()`` returns a batch (decoded, timestamped when the source declares
event time, one watermark generator per split), ``[]`` (flush, then wait for
``reader.wait_available()`` OR the mailbox) or the end of input (the final watermark MAX, then
end of input as above).  Watermarks of an event-time source leave every
``pipeline.auto-watermark-interval``, from a timer.

Metrics (:class:`~streamlet.metrics.registry.TaskIOMetrics`): busy time is measured around the
task's own synchronous steps, backpressure around output waits (counted while in progress); idle
is the rest.  A partly filled output batch waits at most ``execution.buffer-timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Generator, Protocol

from streamlet.connectors.base import SinkWriter
from streamlet.metrics.registry import MetricGroup, TaskIOMetrics, perf
from streamlet.runtime.taskmanager.mailbox import Mailbox, TaskTimers
from streamlet.runtime.taskmanager.network.channels import InputChannel, InputGate, OutputChannel
from streamlet.runtime.taskmanager.network.elements import (
    ACTIVE_STATUS, END_OF_PARTITION, IDLE_STATUS, CheckpointBarrier, EndOfPartition, LatencyMarker, RecordBatch,
    Watermark, WatermarkStatus,
)
from streamlet.runtime.taskmanager.network.errors import ElementEncodingError
from streamlet.runtime.taskmanager.network.partitioners import Split
from streamlet.runtime.taskmanager.network.projection import Projection
from streamlet.runtime.taskmanager.operator_chain import OperatorChain
from streamlet.serde import json_copy, raise_not_json
from streamlet.time.watermarks import IDLE, MAX_WATERMARK, MIN_WATERMARK, WatermarkStrategy, WatermarkTracker

logger = logging.getLogger(__name__)

EXACTLY_ONCE = "exactly_once"
AT_LEAST_ONCE = "at_least_once"


@dataclass(frozen=True)
class TaskConfig:
    """Per-task settings from the configuration (``execution.*``, ``pipeline.*``)."""

    buffer_timeout: float = 0.1
    watermark_interval: float = 0.2
    checkpointing_mode: str = EXACTLY_ONCE
    #: seconds between latency markers at sources (``metrics.latency.interval``; 0: none)
    latency_interval: float = 0.0


@dataclass
class TaskSnapshot:
    """What one subtask contributes to checkpoint ``checkpoint_id`` (the synchronous part is done).

    ``keyed`` is the keyed-state backend's snapshot whose asynchronous part (``persist``) the
    receiver runs off the task; everything else is small JSON.
    """

    checkpoint_id: int
    operators: dict[str, Any]
    splits: list[dict[str, Any]] | None
    sink_state: Any
    committables: list[Any]
    keyed: Any
    alignment_ms: float
    sync_ms: float


class CheckpointListener(Protocol):
    """Where a task reports its checkpoints (the TaskExecutor forwards them to the JobMaster)."""

    def acknowledge(self, task: Task, snapshot: TaskSnapshot) -> None:
        """The task took its part of the checkpoint (the asynchronous part may still be pending)."""

    def decline(self, task: Task, checkpoint_id: int, reason: str) -> None:
        """The task could not take its part of the checkpoint."""


class _DiscardCheckpoints:
    """The listener of a task that nobody asks for checkpoints: snapshots are dropped."""

    def acknowledge(self, task: Task, snapshot: TaskSnapshot) -> None:
        if snapshot.keyed is not None:
            snapshot.keyed.discard()

    def decline(self, task: Task, checkpoint_id: int, reason: str) -> None:
        logger.warning("task %s declined checkpoint %d: %s", task.name, checkpoint_id, reason)


class RecordWriter:
    """Output of one edge: partitions batches over its channels and batches them up.

    A channel's batch is sent when it reaches ``batch_size`` records (a batch never holds more:
    a larger output is cut into full batches), and every partly filled batch is sent by
    :meth:`flush`.  Records leave as JSON values: with ``copy`` (the chain's output
    may not be JSON, or several consumers read it) a local channel gets a JSON round trip of the
    batch, the same a remote channel delivers; remote channels encode it anyway.  ``node_id``
    names the producer in the error for a record that is not JSON.  ``project`` (see
    :mod:`.network.projection`) narrows the batches sent on remote channels.

    ``eager_copy`` (with ``copy``; every channel local, each record to one channel) copies each
    emitted batch at once, before :meth:`emit` returns, instead of when a channel's batch is sent:
    then no record of the producer's output waits here uncopied, so one other consumer may take
    the originals (see :func:`~streamlet.runtime.taskmanager.deployment.build_task`).
    """

    def __init__(self, channels: list[OutputChannel], split: Split, batch_size: int, metrics: TaskIOMetrics,
                 node_id: str = "", copy: bool = False, on_pending: Callable[[], None] | None = None,
                 project: Projection | None = None, eager_copy: bool = False) -> None:
        self.channels = channels
        self.split = split
        self.batch_size = batch_size
        self.metrics = metrics
        self.node_id = node_id
        n = len(channels)
        self._local = [getattr(ch, "target", None) is not None for ch in channels]
        self._eager = copy and eager_copy
        #: copied when a batch is sent (a lazy copy)
        self._copy = copy and not eager_copy
        self._project = project
        self._pending: list[list[Any]] = [[] for _ in range(n)]
        self._pending_ts: list[list[int] | None] = [None] * n
        self._on_pending = on_pending
        self._marker_next = -1

    async def emit(self, records: list[Any], ts: list[int] | None) -> None:
        size = self.batch_size
        pending = self._pending
        if self._eager and records:
            records = json_copy(records, self.node_id)
        for i, (recs, t) in enumerate(self.split(records, ts)):
            if not recs:
                continue
            p = pending[i]
            if not p and len(recs) >= size:
                if len(recs) == size:
                    await self._put(i, RecordBatch(recs, t))
                    continue
                # a larger output (a window firing) leaves in full batches too: a frame of one
                # batch decodes in cache, and a consumer never gets one element of many MB
                full = len(recs) - len(recs) % size
                await self._put_full(i, recs, t, full)
                if full == len(recs):
                    continue
                recs = recs[full:]
                t = t[full:] if t is not None else None
            if not p and self._on_pending is not None:
                self._on_pending()
            p.extend(recs)
            if t is not None:
                pt = self._pending_ts[i]
                if pt is None:
                    self._pending_ts[i] = list(t)
                else:
                    pt.extend(t)
            if len(p) >= size:
                if len(p) == size:
                    await self._send(i)
                else:
                    await self._send_full(i)

    async def _put_full(self, i: int, recs: list[Any], t: list[int] | None, full: int) -> None:
        """Send ``recs[:full]`` (``full`` a multiple of ``batch_size``) as full batches."""
        size = self.batch_size
        for lo in range(0, full, size):
            await self._put(i, RecordBatch(recs[lo:lo + size], t[lo:lo + size] if t is not None else None))

    async def _send_full(self, i: int) -> None:
        """Send the full batches of channel ``i``'s pending records; the rest stays pending."""
        p, pt = self._pending[i], self._pending_ts[i]
        full = len(p) - len(p) % self.batch_size
        self._pending[i] = p[full:]
        self._pending_ts[i] = pt[full:] if pt is not None and full < len(p) else None
        await self._put_full(i, p, pt, full)

    async def _send(self, i: int) -> None:
        batch = RecordBatch(self._pending[i], self._pending_ts[i])
        self._pending[i] = []
        self._pending_ts[i] = None
        await self._put(i, batch)

    async def _put(self, i: int, element: Any) -> None:
        ch = self.channels[i]
        if type(element) is RecordBatch:
            if self._local[i]:
                if self._copy:
                    element = RecordBatch(json_copy(element.records, self.node_id), element.timestamps)
            elif self._project is not None:
                element = self._project(element)
        try:
            if ch.has_space():
                await ch.put(element)
            else:
                bp = self.metrics.backpressured
                bp.begin()
                try:
                    await ch.put(element)
                finally:
                    bp.end()
        except ElementEncodingError as exc:
            if type(element) is RecordBatch:
                raise_not_json(element.records, self.node_id, exc)
            raise

    async def emit_marker(self, marker: LatencyMarker) -> None:
        """Send a latency marker on one channel (round robin), after that channel's pending records,
        so it waits where records wait."""
        if not self.channels:
            return
        i = self._marker_next = (self._marker_next + 1) % len(self.channels)
        if self._pending[i]:
            await self._send(i)
        await self._put(i, marker)

    @property
    def has_pending(self) -> bool:
        return any(self._pending)

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

    has_pending = False

    def __init__(self, writer: SinkWriter, metrics: TaskIOMetrics) -> None:
        self.writer = writer
        self.metrics = metrics

    async def emit(self, records: list[Any], ts: list[int] | None) -> None:
        await self.writer.write(records)

    async def flush(self) -> None:
        return None

    async def broadcast(self, element: Any) -> None:
        if element is END_OF_PARTITION:
            await self.writer.finish()

    async def emit_marker(self, marker: LatencyMarker) -> None:
        return None  # a marker ends at the sink: the task recorded its latency


class SideOutputs:
    """``ctx.side_output(tag, ...)`` of the chain's operators: buffered, then sent by the task."""

    def __init__(self, writers: dict[str, list[RecordWriter]]) -> None:
        self.writers = writers
        self.pending: list[tuple[str, list[Any], list[int] | None]] = []

    def emit(self, tag: str, records: list[Any], timestamps: list[int] | None) -> None:
        if tag not in self.writers:
            return  # nobody reads this side output: dropped (the operator counts it)
        self.pending.append((tag, records, timestamps))

    async def drain(self, metrics: TaskIOMetrics) -> None:
        pending, self.pending = self.pending, []
        for tag, records, ts in pending:
            metrics.records_out.count += len(records)
            for w in self.writers[tag]:
                await w.emit(records, ts)


class ProcessingTimeOf:
    """The ProcessingTimeService of operator ``index`` of a task's chain (``task()`` gives the task,
    which is built after its operators)."""

    def __init__(self, task: Callable[[], Task], index: int) -> None:
        self.task = task
        self.index = index

    def register(self, time_ms: int, callback: Callable[[int], Any]) -> None:
        task = self.task()
        task.timers.at(time_ms, lambda: task._fire_processing_time(self.index, callback, time_ms))


class _Alignment:
    """Barrier alignment of one checkpoint on a task with several input channels."""

    def __init__(self, barrier: CheckpointBarrier, started: float) -> None:
        self.barrier = barrier
        self.arrived: set[int] = set()
        self.started = started


class Task:
    """One subtask attempt (see the module docstring)."""

    def __init__(self, name: str, chain: OperatorChain, gate: InputGate | None,
                 outputs: list[RecordWriter | SinkOutput], metrics: TaskIOMetrics, clock: Any,
                 config: TaskConfig | None = None, state: Any = None,
                 side_outputs: SideOutputs | None = None) -> None:
        self.name = name
        self.chain = chain
        self.gate = gate
        self.outputs = outputs
        self.metrics = metrics
        self.clock = clock
        self.config = config or TaskConfig()
        self.state = state
        self.side_outputs = side_outputs or SideOutputs({})
        self.mailbox = Mailbox(name)
        self.timers = TaskTimers(clock, self.mailbox)
        self.checkpoints: CheckpointListener = _DiscardCheckpoints()
        #: restored operator states (by node id) and sink state, set before run() on a restore
        self.restored_operators: dict[str, Any] = {}
        self.restored_sink: Any = None
        #: committables of the restored checkpoint, committed again (idempotently) at open
        self.restored_committables: list[Any] = []
        #: a source ends its input at the next batch boundary (stop --drain after the savepoint)
        self._end_requested = False
        #: the watermark this task last sent downstream, and the combined watermark of its inputs
        #: (a source's: what its splits' generators gave) that produced it
        self.output_watermark = MIN_WATERMARK
        self.input_watermark = MIN_WATERMARK
        self._idle_out = False
        self._flush_armed = False
        self._alignment: _Alignment | None = None
        self._last_checkpoint = 0
        self._pending_commits: dict[int, list[Any]] = {}
        src = chain.source
        self._timestamps = None
        self._strategy: WatermarkStrategy | None = None
        if src is not None and src.timestamp is not None:
            from streamlet.time.timestamps import compile_timestamps

            # the reader's own timestamps when it gives them (the chain then has no decoder: the
            # branch in _run_source that reads them from decoded records takes the raw batch)
            self._timestamps = chain.native_timestamps or compile_timestamps(src.timestamp, src.id)
            self._strategy = (WatermarkStrategy.from_spec(src.watermark) if src.watermark is not None
                              else WatermarkStrategy(0, None))
        #: set by the builder: this subtask's index, and the id of its chain's first operator (the
        #: ``operator_id`` of the latency it records)
        self.subtask_index = 0
        self.head_id = name
        #: source id -> the end-to-end latency histogram of markers from it (created on first marker)
        self._latency: dict[str, Any] = {}
        self._split_tracker = WatermarkTracker()
        self._split_index: dict[str, int] = {}
        self._generators: list[Any] = []

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run to the end of input; raises what the chain or a connector raised."""
        m = self.metrics
        m.started = perf()
        try:
            await self._open()
            if self.chain.reader is not None:
                await self._run_source()
            else:
                await self._run_inputs()
            await self._end_input()
            m.progress = 1.0 if m.progress is not None else None
        finally:
            m.ended = perf()
            await self._close()

    async def _open(self) -> None:
        chain = self.chain
        if chain.writer is not None:
            if self.restored_sink is not None:
                chain.writer.restore_state(self.restored_sink)
            await chain.writer.open()
            if self.restored_committables:
                await chain.writer.commit(self.restored_committables)
        chain.open(self.restored_operators)
        if chain.reader is not None:
            await chain.reader.open()
            chain.reader.add_splits(chain.splits)
            if self._strategy is not None:
                self._track_active_splits()
                self.timers.every(self.config.watermark_interval, self._emit_source_watermark)
            if self.config.latency_interval > 0:
                self.timers.every(self.config.latency_interval, self._emit_latency_marker)

    async def _close(self) -> None:
        """Release everything, also when one release raises (the first error is raised at the end)."""
        errors: list[BaseException] = []
        try:
            await self.timers.close()
        except Exception as exc:  # noqa: BLE001 - collected below
            errors.append(exc)
        errors.extend(self.chain.close())
        for resource in (self.chain.reader, self.chain.writer, self.state):
            if resource is None:
                continue
            try:
                await resource.close()
            except Exception as exc:  # noqa: BLE001 - collected below
                errors.append(exc)
        for exc in errors[1:]:
            logger.warning("task %s: another error while closing: %s: %s", self.name, type(exc).__name__, exc)
        if errors:
            raise errors[0]

    async def _emit(self, records: list[Any], ts: list[int] | None) -> None:
        # counted once per record, however many edges it leaves on (as Flink counts)
        self.metrics.records_out.count += len(records)
        for out in self.outputs:
            await out.emit(records, ts)

    async def _after_chain(self, records: list[Any], ts: list[int] | None) -> None:
        if self.side_outputs.pending:
            await self.side_outputs.drain(self.metrics)
        if records:
            await self._emit(records, ts)

    async def flush(self) -> None:
        self._flush_armed = False
        for out in self.outputs:
            await out.flush()
        for writers in self.side_outputs.writers.values():
            for w in writers:
                await w.flush()

    def arm_flush(self) -> None:
        """A partly filled batch is waiting: send it at the latest after the buffer timeout."""
        if not self._flush_armed:
            self._flush_armed = True
            self.timers.at(self.clock.time_ms() + max(1, int(self.config.buffer_timeout * 1000)), self.flush)

    async def _broadcast(self, element: Any) -> None:
        for out in self.outputs:
            await out.broadcast(element)
        for writers in self.side_outputs.writers.values():
            for w in writers:
                await w.broadcast(element)

    async def _wait(self, input_ready: asyncio.Future[Any] | None) -> None:
        """Wait for input (``input_ready``) or a mailbox action, counting the time as idle."""
        await self.flush()
        wakeup = self.mailbox.wakeup()
        if input_ready is not None:
            if input_ready.done():
                return
            input_ready.add_done_callback(lambda _: self.mailbox.wake())
        await wakeup

    # -- sources ----------------------------------------------------------------------------

    async def _run_source(self) -> None:
        reader = self.chain.reader
        assert reader is not None
        process = self.chain.process
        decoder = self.chain.decoder
        timestamps = self._timestamps
        m = self.metrics
        busy = m.busy
        bp = m.backpressured
        mailbox = self.mailbox
        available: asyncio.Task[None] | None = None
        try:
            while True:
                if mailbox:
                    await mailbox.serve()
                if self._end_requested:
                    break
                t0 = perf()
                raw = reader.poll()
                if raw is None:
                    break
                if not raw:
                    busy.total += perf() - t0
                    if available is None or available.done():
                        available = asyncio.ensure_future(reader.wait_available())
                    await self._wait(available)
                    if available.done():
                        available.result()  # a failed read raises here
                        available = None
                    continue
                m.records_in.count += len(raw)
                m.progress = reader.progress()
                bp0 = bp.total
                if timestamps is None:
                    records, ts = process(raw, None)
                else:
                    decoded = decoder.process(raw, None)[0] if decoder is not None else raw
                    ts = timestamps(decoded)
                    self._generator(reader.current_split).on_batch(ts, self.clock.time_ms())
                    records, ts = process(decoded, ts)
                await self._after_chain(records, ts)
                busy.total += perf() - t0 - (bp.total - bp0)
                # a source whose outputs never fill would otherwise never let other tasks run
                await asyncio.sleep(0)
        finally:
            if available is not None and not available.done():
                available.cancel()
                try:
                    await available
                except (asyncio.CancelledError, Exception):  # noqa: BLE001 - it was cancelled
                    pass
        await self._advance_watermark(MAX_WATERMARK)

    def _generator(self, split: str | None) -> Any:
        key = split or ""
        index = self._split_index.get(key)
        if index is None:
            assert self._strategy is not None
            index = self._split_index[key] = self._split_tracker.add_input()
            self._generators.append(self._strategy.create_generator())
        return self._generators[index]

    def _track_active_splits(self) -> set[int] | None:
        """A reader reading its splits together (``active_splits()``, e.g. Kafka partitions) gets a
        generator per split from the start, so a split that has not delivered yet holds the watermark
        back (until its ``idle_timeout``); returns the indexes of splits no longer active (finished),
        which leave the minimum.  None for readers without the hook (splits count from their first batch)."""
        active = getattr(self.chain.reader, "active_splits", None)
        if active is None:
            return None
        ids = active()
        for split_id in ids:
            self._generator(split_id)
        live = {self._split_index[i] for i in ids}
        return {i for i in range(len(self._generators)) if i not in live}

    async def _emit_source_watermark(self) -> None:
        """Periodic: the minimum over the source's active splits, sent when it advanced."""
        now = self.clock.time_ms()
        tracker = self._split_tracker
        advanced = None
        finished = self._track_active_splits() or ()
        for i, gen in enumerate(self._generators):
            if i in finished:
                if not tracker.is_idle(i):
                    advanced = tracker.set_idle(i, True) or advanced
                continue
            wm = gen.current(now)
            if wm is IDLE:
                advanced = tracker.set_idle(i, True) or advanced
            else:
                if tracker.is_idle(i):
                    advanced = tracker.set_idle(i, False) or advanced
                advanced = tracker.update(i, wm) or advanced
        if self._generators and tracker.idle:
            await self._set_idle_out(True)
            return
        if advanced is not None:
            await self._advance_watermark(advanced)

    async def _emit_latency_marker(self) -> None:
        """Periodic at a source: a latency marker to one channel of each output."""
        src = self.chain.source
        marker = LatencyMarker(self.clock.time_ms(), src.id if src is not None else self.head_id, self.subtask_index)
        if self.chain.writer is not None:  # the sink is chained to the source
            self._record_latency(marker)
        for out in self.outputs:
            await out.emit_marker(marker)

    def _record_latency(self, marker: LatencyMarker) -> None:
        h = self._latency.get(marker.source_id)
        if h is None:
            group = self.metrics.group.attach(MetricGroup(
                {k: v for k, v in self.metrics.group.scope.items() if k in ("host", "tm_id", "job_id", "job_name")}
                | {"source_id": marker.source_id, "operator_id": self.head_id,
                   "operator_subtask_index": str(self.subtask_index)},
                "taskmanager_job_latency_source_id_operator_id_operator_subtask_index"))
            h = self._latency[marker.source_id] = group.histogram("latency")
        h.update(max(0, self.clock.time_ms() - marker.marked_time))

    async def _set_idle_out(self, idle: bool) -> None:
        if idle != self._idle_out:
            self._idle_out = idle
            await self._broadcast(IDLE_STATUS if idle else ACTIVE_STATUS)

    async def _advance_watermark(self, watermark: int) -> None:
        """The combined input watermark advanced: fire what it fires, then send it downstream."""
        if watermark <= self.output_watermark:
            return
        self.input_watermark = watermark
        if self._idle_out:
            await self._set_idle_out(False)
        await self._emit_chunks(self.chain.process_watermark_chunks(watermark))
        t0 = perf()
        bp0 = self.metrics.backpressured.total
        self.output_watermark = watermark
        await self._broadcast(Watermark(watermark))
        self.metrics.busy.total += perf() - t0 - (self.metrics.backpressured.total - bp0)

    async def _emit_chunks(self, chunks: Generator[tuple[list[Any], list[int] | None], None, None]) -> None:
        """Send what a watermark (or end of input) fires, chunk by chunk, letting the event loop run
        between two chunks: heartbeats, RPC (cancel), other subtasks go on while a watermark fires
        millions of windows.  The mailbox is not served meanwhile: its actions (checkpoints,
        processing-time timers, periodic watermarks) never see an operator half-way through a
        firing, so output order and snapshots are what one synchronous call gave."""
        m = self.metrics
        bp = m.backpressured
        first = True
        try:
            while True:
                if not first:
                    await asyncio.sleep(0)
                first = False
                t0 = perf()
                bp0 = bp.total
                chunk = next(chunks, None)
                if chunk is None:
                    m.busy.total += perf() - t0
                    return
                await self._after_chain(*chunk)
                m.busy.total += perf() - t0 - (bp.total - bp0)
        finally:
            chunks.close()

    async def _fire_processing_time(self, index: int, callback: Callable[[int], Any], time_ms: int) -> None:
        """A processing-time callback of operator ``index``: its chunks go through the rest of the
        chain and out one by one, the loop running between two (as a watermark's firing)."""
        process_from = self.chain.process_from

        def chunks() -> Generator[tuple[list[Any], list[int] | None], None, None]:
            for records, ts in callback(time_ms):
                if records:
                    records, ts = process_from(index + 1, records, ts)
                yield records, ts

        await self._emit_chunks(chunks())

    # -- tasks with input channels ----------------------------------------------------------

    async def _run_inputs(self) -> None:
        gate = self.gate
        assert gate is not None
        chain = self.chain
        process = chain.process
        m = self.metrics
        busy = m.busy
        bp = m.backpressured
        mailbox = self.mailbox
        channels = gate.channels
        tracker = WatermarkTracker(len(channels))
        remaining = len(channels)
        # a backend with a write cache flushes it between batches (off the loop when over its bound)
        maintain = self.state.maintain if self.state is not None and chain.stateful else None
        while remaining:
            if mailbox:
                await mailbox.serve()
            got = gate.poll()
            if got is None:
                await self.flush()
                await gate.wait(mailbox.wakeup())
                continue
            ch, element = got
            kind = type(element)
            if kind is RecordBatch:
                t0 = perf()
                bp0 = bp.total
                m.records_in.count += len(element.records)
                if ch.input_index == 0:
                    records, ts = process(element.records, element.timestamps)
                else:
                    records, ts = chain.process_right(element.records, element.timestamps)
                await self._after_chain(records, ts)
                if maintain is not None:
                    await maintain()
                busy.total += perf() - t0 - (bp.total - bp0)
            elif kind is Watermark:
                wm = tracker.update(ch.index, element.timestamp)
                if wm is not None:
                    await self._advance_watermark(wm)
            elif kind is WatermarkStatus:
                wm = tracker.set_idle(ch.index, element.idle)
                if tracker.idle:
                    await self._set_idle_out(True)
                elif wm is not None:
                    await self._advance_watermark(wm)
                elif not element.idle:
                    await self._set_idle_out(False)
            elif kind is CheckpointBarrier:
                await self._on_barrier(ch, element)
            elif kind is LatencyMarker:
                self._record_latency(element)
                for out in self.outputs:
                    await out.emit_marker(element)
            elif kind is EndOfPartition:
                ch.finished = True
                remaining -= 1
                if tracker.is_idle(ch.index):
                    tracker.set_idle(ch.index, False)
                wm = tracker.update(ch.index, MAX_WATERMARK)
                if wm is not None:
                    await self._advance_watermark(wm)
                if self._alignment is not None:
                    await self._check_aligned()
            else:
                raise TypeError(f"unexpected element {element!r} on channel {ch.channel_id}")

    async def _end_input(self) -> None:
        await self._emit_chunks(self.chain.end_input_chunks())
        await self._broadcast(END_OF_PARTITION)

    # -- checkpoints ------------------------------------------------------------------------

    def trigger_checkpoint(self, checkpoint_id: int, timestamp: int, savepoint: bool = False,
                           drain: bool = False) -> None:
        """At a source: take checkpoint ``checkpoint_id`` between two batches and emit its barrier;
        with ``drain`` the source then ends its input (stop --drain: windows fire, the job finishes).

        Called by the TaskExecutor; runs as a mailbox action, so it does not wait for input.
        """
        barrier = CheckpointBarrier(checkpoint_id, timestamp, savepoint)

        async def action() -> None:
            await self._take_checkpoint(barrier, perf())
            if drain:
                self._end_requested = True

        self.mailbox.put(action)

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """At a source: give the reader new splits (from the source coordinator) between two batches.

        Called by the TaskExecutor; a mailbox action, so it also wakes a source waiting for input.
        """
        reader = self.chain.reader
        if reader is None:
            raise TypeError(f"task {self.name} is not a source: it takes no splits")
        self.mailbox.put(lambda: reader.add_splits(splits))

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: commit what it covers (a mailbox action)."""
        self.mailbox.put(lambda: self._complete(checkpoint_id))

    async def _on_barrier(self, ch: InputChannel, barrier: CheckpointBarrier) -> None:
        gate = self.gate
        assert gate is not None
        al = self._alignment
        if barrier.checkpoint_id <= self._last_checkpoint:
            return  # a barrier of a checkpoint this task already took or abandoned
        if al is not None and barrier.checkpoint_id > al.barrier.checkpoint_id:
            # a newer checkpoint overtook the one being aligned: that one can never complete here
            self.checkpoints.decline(self, al.barrier.checkpoint_id, "a newer barrier arrived during alignment")
            gate.unblock_all()
            al = self._alignment = None
        if al is None:
            al = self._alignment = _Alignment(barrier, perf())
        al.arrived.add(ch.index)
        if self.config.checkpointing_mode == EXACTLY_ONCE:
            gate.block(ch)
        await self._check_aligned()

    async def _check_aligned(self) -> None:
        al = self._alignment
        gate = self.gate
        assert al is not None and gate is not None
        if all(c.index in al.arrived or c.finished for c in gate.channels):
            self._alignment = None
            try:
                await self._take_checkpoint(al.barrier, al.started)
            finally:
                gate.unblock_all()

    async def _take_checkpoint(self, barrier: CheckpointBarrier, started: float) -> None:
        n = barrier.checkpoint_id
        if n <= self._last_checkpoint:
            return
        self._last_checkpoint = n
        t0 = perf()
        chain = self.chain
        try:
            committables: list[Any] = []
            sink_state = None
            if chain.writer is not None:
                committables = await chain.writer.prepare_commit(n)
                sink_state = chain.writer.snapshot_state(n)
                self._pending_commits[n] = committables
            await self.flush()
            splits = chain.reader.snapshot_state(n) if chain.reader is not None else None
            operators = chain.snapshot_state(n)
            keyed = (await self.state.snapshot(n, self_contained=barrier.savepoint)
                     if self.state is not None else None)
        except Exception as exc:  # noqa: BLE001 - the checkpoint is declined; the job goes on
            logger.warning("task %s: checkpoint %d failed: %s: %s", self.name, n, type(exc).__name__, exc)
            self.checkpoints.decline(self, n, f"{type(exc).__name__}: {exc}")
            await self._broadcast(barrier)
            return
        await self._broadcast(barrier)
        self.checkpoints.acknowledge(self, TaskSnapshot(n, operators, splits, sink_state, committables, keyed,
                                                        (t0 - started) * 1000, (perf() - t0) * 1000))

    async def _complete(self, checkpoint_id: int) -> None:
        chain = self.chain
        done = sorted(n for n in self._pending_commits if n <= checkpoint_id)
        if chain.writer is not None:
            for n in done:
                await chain.writer.commit(self._pending_commits.pop(n))
        if chain.reader is not None:
            chain.reader.notify_checkpoint_complete(checkpoint_id)
        chain.notify_checkpoint_complete(checkpoint_id)
        if self.state is not None:
            self.state.notify_checkpoint_complete(checkpoint_id)


@dataclass
class SourceContextImpl:
    """The :class:`~streamlet.connectors.base.SourceContext` of a source task."""

    subtask_index: int
    parallelism: int
    batch_size: int
    clock: Any
    #: the source's node id, for errors that name it
    node_id: str = "source"

    def time_ms(self) -> int:
        return self.clock.time_ms()
