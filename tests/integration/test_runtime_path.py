"""The one runtime path of ``streamlet run``: the MiniCluster's tasks and their control plane.

* a checkpoint barrier is injected at a source through its mailbox while the source waits for
  input (a paced source on a manual clock: no time passes, no record is produced), travels to the
  sink in order with the records, and "checkpoint complete" reaches the sink's commit the same way;
* watermarks and barriers flow through the chain in order with the records, and the final
  watermark comes after every record;
* the live metrics are true: a sink that takes a long time per batch shows its source
  backpressured while it waits, and two sources sharing the event loop are not both "busy".
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pytest

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.graph.job_graph import JobGraph
from streamlet.graph.operators import SPECS, OpSpec, SourceSpec, op_spec
from streamlet.operators.base import Operator
from streamlet.rpc.messages import TriggerCheckpoint
from streamlet.runtime.minicluster import MiniCluster
from streamlet.time.watermarks import MAX_WATERMARK
from tests.support.connectors import COMMIT_LOG, SINK_STATS
from tests.support.checkpoints import RecordingCheckpoints, until
from tests.support.pipelines import plan_file, vertex_named, write_pipeline


@pytest.fixture
def commit_sink(register_connector) -> Iterator[None]:
    register_connector("sink", "commit", "tests.support.connectors:CommitSink")
    COMMIT_LOG.reset()
    yield
    COMMIT_LOG.reset()


def _conf(**overrides: Any) -> Any:
    return cfg.load(overrides={"log.level": "WARNING", **overrides}, env={})


def test_a_barrier_reaches_a_waiting_source_and_its_completion_the_sink_without_a_new_record(
        tmp_path: Path, commit_sink: None) -> None:
    graph = plan_file(write_pipeline(tmp_path, """
        name: paced
        sources: {slow: {type: datagen, rate: 1, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: slow, type: commit, partition: rebalance}}
    """))
    assert len(graph.vertices) == 2  # source and sink are separate tasks: the barrier crosses a channel

    async def main() -> None:
        clock = ManualClock()
        COMMIT_LOG.changed = asyncio.Event()
        async with MiniCluster(_conf(), slots=1, clock=clock) as cluster:
            job = await cluster.submit(graph)
            # the first row is due at once; the next one only after a second of (manual) time
            await until(lambda: ("write", 1) in COMMIT_LOG.events, COMMIT_LOG.changed, "the first row")
            executor = cluster.task_executor
            assert executor is not None
            acks = RecordingCheckpoints()
            for task in executor.tasks(job):
                task.checkpoints = acks
            writes_before = list(COMMIT_LOG.events)

            assert executor.trigger_checkpoint(TriggerCheckpoint(job, 1, clock.time_ms(), "unused://", "chk-1")) == 1  # one source subtask
            await until(lambda: len(acks.acks) == 2, acks.changed, "both tasks to take checkpoint 1")
            assert sorted(a.checkpoint_id for _, a in acks.acks) == [1, 1]
            assert COMMIT_LOG.events == writes_before + [("prepare", 1)]
            assert COMMIT_LOG.written == []  # prepared, not visible yet

            executor.notify_checkpoint_complete(job, 1)
            await until(lambda: ("commit", 1) in COMMIT_LOG.events, COMMIT_LOG.changed, "the commit of checkpoint 1")
            assert COMMIT_LOG.written == [{"id": 0}]
            # all of it happened while the source waited: no time passed and no new row was made
            assert clock.monotonic() == 0.0
            assert [e for e in COMMIT_LOG.events if e[0] == "write"] == [("write", 1)]
            cluster.cancel(job)
            assert (await cluster.dispatcher.wait_terminal(job)).state == "CANCELED"

    asyncio.run(main())


# -- watermarks and barriers in order with the records --------------------------------------------

#: what the recording operator saw, in order: ("batch", [ts...]) / ("watermark", w) / ("snapshot", n) / ("end",)
SEEN: list[tuple[Any, ...]] = []


class _Recorder(Operator):
    """Records the elements it is handed (a test-only operator kind) and passes batches on."""

    def process(self, records: list[Any], timestamps: list[int] | None) -> tuple[list[Any], list[int] | None]:
        SEEN.append(("batch", list(timestamps or [])))
        return records, timestamps

    def process_watermark(self, watermark: int) -> tuple[list[Any], None]:
        SEEN.append(("watermark", watermark))
        return [], None

    def snapshot_state(self, checkpoint_id: int) -> Any:
        SEEN.append(("snapshot", checkpoint_id))
        return {"seen": len(SEEN)}

    def end_input(self) -> tuple[list[Any], None]:
        SEEN.append(("end",))
        return [], None


@pytest.fixture
def recorder_kind() -> Iterator[type[OpSpec]]:
    @op_spec
    @dataclass(frozen=True)
    class RecorderSpec(OpSpec):
        KIND: ClassVar[str] = "test-recorder"
        OPERATOR: ClassVar[str | None] = f"{__name__}:_Recorder"

    SEEN.clear()
    try:
        yield RecorderSpec
    finally:
        SPECS.pop("test-recorder", None)
        SEEN.clear()


def _with_event_time(graph: JobGraph, recorder: type[OpSpec]) -> JobGraph:
    """The graph with event time on its source (``ts`` field, monotonous) and the recorder at the
    head of the second vertex (what YAML's ``timestamp:`` and a custom operator would plan)."""
    src, rest = graph.vertices
    spec = dataclasses.replace(src.operators[0], timestamp={"field": "ts"})
    assert isinstance(spec, SourceSpec)
    rest = dataclasses.replace(rest, operators=(recorder("rec"), *rest.operators))
    return dataclasses.replace(graph, vertices=(dataclasses.replace(src, operators=(spec,)), rest))


def test_watermarks_and_barriers_flow_in_order_with_the_records(tmp_path: Path, recorder_kind: Any,
                                                                 commit_sink: None) -> None:
    rows = 60
    graph = _with_event_time(plan_file(write_pipeline(tmp_path, f"""
        name: timed
        sources:
          ev: {{type: datagen, rows: {rows}, rate: 100, fields: {{id: {{kind: sequence}}, ts: {{kind: timestamp}}}}}}
        sinks: {{out: {{input: ev, type: commit, partition: rebalance}}}}
    """)), recorder_kind)

    async def main() -> None:
        clock = ManualClock()
        conf = _conf(**{"pipeline.auto-watermark-interval": "50ms", "execution.buffer-timeout": "10ms"})
        async with MiniCluster(conf, slots=1, clock=clock) as cluster:
            job = await cluster.submit(graph)
            done = asyncio.ensure_future(cluster.dispatcher.wait_terminal(job))
            step = 0
            triggered = False
            while not done.done():
                step += 1
                if not triggered and len(COMMIT_LOG.events) >= rows // 3:
                    # mid-way: a checkpoint through the source's mailbox
                    assert cluster.task_executor is not None
                    assert cluster.task_executor.trigger_checkpoint(TriggerCheckpoint(job, 7, clock.time_ms(), "unused://", "chk-7")) == 1
                    triggered = True
                await clock.advance(0.01)
                for _ in range(20):
                    await asyncio.sleep(0)
                assert step < 2000, "the paced job did not end"
            assert done.result().state == "FINISHED"

    asyncio.run(main())
    assert ("end",) == SEEN[-1] and ("watermark", MAX_WATERMARK) == SEEN[-2]  # the final watermark, last
    seen_ts: list[int] = []
    last_wm = None
    for event in SEEN:
        if event[0] == "batch":
            # no record arrives at or below a watermark already passed on (monotonous source)
            assert last_wm is None or min(event[1]) > last_wm, (event, last_wm)
            seen_ts.extend(event[1])
        elif event[0] == "watermark":
            w = event[1]
            assert last_wm is None or w > last_wm  # watermarks only advance
            # ... and a watermark comes after every record it covers
            assert w == MAX_WATERMARK or (seen_ts and max(seen_ts) >= w), (w, seen_ts[-3:])
            last_wm = w
    assert len(seen_ts) == rows and seen_ts == sorted(seen_ts)
    intermediate = [e for e in SEEN if e[0] == "watermark" and e[1] != MAX_WATERMARK]
    assert intermediate, "no periodic watermark reached the operator"
    snaps = [i for i, e in enumerate(SEEN) if e[0] == "snapshot"]
    assert len(snaps) == 1 and SEEN[snaps[0]] == ("snapshot", 7)
    assert 0 < snaps[0] < len(SEEN) - 2  # taken between records, not at the end
    assert ("prepare", 7) in COMMIT_LOG.events
    assert sorted(r["id"] for r in COMMIT_LOG.written) == list(range(rows))


# -- the metrics are true ------------------------------------------------------------------------


def test_a_source_blocked_by_a_slow_sink_reads_backpressured_while_it_waits(tmp_path: Path, slow_sink: None) -> None:
    graph = plan_file(write_pipeline(tmp_path, """
        name: very-slow
        batch_size: 8
        sources: {gen: {type: datagen, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: gen, type: slow, delay: 0.6, partition: rebalance}}
    """))

    async def main() -> list[tuple[float, float]]:
        conf = _conf(**{"taskmanager.network.queue-capacity": 1, "taskmanager.metrics.interval": "100ms"})
        SINK_STATS.reached = asyncio.Event()
        SINK_STATS.target_batches = 2
        samples: list[tuple[float, float]] = []
        async with MiniCluster(conf, slots=1) as cluster:
            job = await cluster.submit(graph)
            reached = asyncio.ensure_future(SINK_STATS.reached.wait())
            async with asyncio.timeout(20):
                while not reached.done():
                    # what GET /jobs/:id shows every 100 ms, read while the sink is inside a write
                    await asyncio.wait([reached], timeout=0.1)
                    m = vertex_named(cluster.dispatcher.job(job), "gen").metrics
                    if SINK_STATS.batches >= 1:
                        samples.append((m.backpressured_ms_per_second, m.busy_ms_per_second))
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)
        return samples

    samples = asyncio.run(main())
    # one write lasts 0.6 s: the samples taken meanwhile see the source waiting for space, live
    assert len(samples) >= 3, samples
    assert max(bp for bp, _ in samples) > 900, samples
    assert sum(1 for bp, busy in samples if bp > 800 and busy < 100) >= 2, samples


def test_sources_sharing_the_event_loop_are_not_each_counted_busy(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, """
        name: two-flat-out
        sources: {gen: {type: datagen, fields: {id: {kind: sequence}, s: {kind: string, length: 8}}}}
        sinks: {out: {input: gen, type: blackhole}}
    """), parallelism=2)

    async def main() -> list[float]:
        conf = _conf(**{"taskmanager.metrics.interval": "100ms"})
        async with MiniCluster(conf, slots=2) as cluster:
            job = await cluster.submit(graph)
            sums = []
            for _ in range(10):
                await asyncio.sleep(0.1)  # the sampling period: the job runs flat out meanwhile
                subtasks = vertex_named(cluster.dispatcher.job(job), "gen -> out").subtasks
                if all(s.metrics.records_out for s in subtasks):
                    sums.append(sum(s.metrics.busy_ms_per_second for s in subtasks))
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)
        return sums

    sums = asyncio.run(main())
    assert len(sums) >= 5, sums
    # two subtasks on one event loop (one core) can be busy 1000 ms per second together, not 2 x 980
    assert all(s < 1150 for s in sums[1:]), sums
    assert max(sums) > 300, sums  # ... and they are busy: it is measured, not zero
