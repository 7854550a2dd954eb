"""A slow sink backpressures a fast endless source, memory stays bounded, and the metrics say so.

The pipeline is an endless ``datagen`` source (as fast as it can) rebalanced into a sink that
needs a few milliseconds per batch, on a MiniCluster (the path of ``streamlet run``).  While the
job runs, the test samples the in-process TaskManager's tasks and the JobManager's view of the
job (what ``GET /jobs/:id`` shows): the records the source has produced may exceed what the sink
wrote only by what the bounded channels and the per-channel output batches can hold; no channel
ever holds more than its capacity; the source is reported backpressured; and the process's
memory does not grow with the number of records generated.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psutil
import pytest

from streamlet import config as cfg
from streamlet.runtime.minicluster import MiniCluster
from streamlet.runtime.taskmanager.network.channels import InputChannel
from tests.support.connectors import SINK_STATS
from tests.support.pipelines import plan_file, read_output, run_graph, vertex_named, write_pipeline

BATCH = 64
CAPACITY = 4


async def _run_until_sink_wrote(graph: Any, target_batches: int) -> dict[str, Any]:
    stats = SINK_STATS
    stats.reached = asyncio.Event()
    stats.target_batches = target_batches
    proc = psutil.Process()
    conf = cfg.load(overrides={"taskmanager.network.queue-capacity": CAPACITY,
                               "taskmanager.metrics.interval": "50ms"}, env={})
    async with MiniCluster(conf, slots=graph.max_vertex_parallelism) as cluster:
        job = await cluster.submit(graph)
        rss_start = proc.memory_info().rss
        channels: list[InputChannel] = []
        worst_gap = most_buffered = produced = 0
        bp_samples: list[float] = []
        reached = asyncio.ensure_future(stats.reached.wait())
        try:
            async with asyncio.timeout(30):
                while not reached.done():
                    # wake when the sink is done, or every 20 ms to sample the running job
                    await asyncio.wait([reached], timeout=0.02)
                    info = cluster.dispatcher.job(job)
                    if info.state != "RUNNING" and info.state != "CREATED":
                        pytest.fail(f"the endless job ended {info.state}")
                    assert cluster.task_executor is not None
                    tasks = cluster.task_executor.tasks(job)
                    if not channels:
                        channels = [ch for t in tasks if t.gate is not None for ch in t.gate.channels]
                    for ch in channels:
                        most_buffered = max(most_buffered, len(ch))
                        assert len(ch) <= ch.capacity == CAPACITY
                    produced = sum(t.metrics.records_out.count for t in tasks if t.chain.reader is not None)
                    worst_gap = max(worst_gap, produced - stats.records)
                    if stats.batches > target_batches // 4:  # past start-up
                        # as the REST API shows it: the source vertex's back pressure (0..1000 ms/s)
                        bp_samples.append(vertex_named(info, "numbers").metrics.backpressured_ms_per_second / 1000)
        finally:
            reached.cancel()
        rss_growth = proc.memory_info().rss - rss_start
        cluster.cancel(job)
        ended = await cluster.dispatcher.wait_terminal(job)
        ended_tasks = [t.metrics.ended for t in cluster.task_executor.tasks(job)] if cluster.task_executor else []
    return {"gap": worst_gap, "buffered": most_buffered, "channels": len(channels), "produced": produced,
            "bp": sum(bp_samples) / max(len(bp_samples), 1), "rss_growth": rss_growth, "state": ended.state,
            "ended": ended_tasks}


def test_slow_sink_bounds_a_fast_endless_source(tmp_path: Path, slow_sink: None) -> None:
    path = write_pipeline(tmp_path, f"""
        name: backpressure
        batch_size: {BATCH}
        sources:
          numbers: {{type: datagen, fields: {{id: {{kind: sequence}}, pad: {{kind: string, length: 40}}}}}}
        sinks:
          slow_out: {{input: numbers, type: slow, delay: 0.004, partition: rebalance}}
    """)
    target = 300
    got = asyncio.run(_run_until_sink_wrote(plan_file(path, parallelism=2), target))

    assert got["channels"] == 4  # 2 source subtasks x 2 sink subtasks, rebalanced
    assert got["state"] == "CANCELED"
    assert SINK_STATS.batches >= target
    assert SINK_STATS.largest_batch <= 2 * BATCH
    # What the source produced but the sink has not written sits in: the channel buffers
    # (capacity batches each), one batch per channel waiting for space, the partly filled output
    # batch per channel (batches can grow to 2 x BATCH - 1), and one batch inside each sink.
    bound = got["channels"] * (CAPACITY + 2) * 2 * BATCH + 2 * 2 * BATCH
    assert got["gap"] <= bound, got
    assert got["buffered"] == CAPACITY, "the channels never filled: the sink was not the bottleneck"
    # the source spent most of its time waiting for channel space
    assert got["bp"] > 0.5, got
    # unthrottled, datagen makes several hundred thousand ~100-byte rows per second; here the
    # job's memory stays at the size of its buffers
    assert got["rss_growth"] < 40 * 2**20, got


def test_backpressure_loses_nothing_in_a_bounded_job(tmp_path: Path, slow_sink: None) -> None:
    path = write_pipeline(tmp_path, f"""
        batch_size: {BATCH}
        sources:
          numbers: {{type: datagen, rows: 4000, fields: {{id: {{kind: sequence}}}}}}
        transforms:
          odd: {{input: numbers, filter: "r['id'] % 2 == 1", partition: rebalance}}
        sinks:
          slow_out: {{input: odd, type: slow, delay: 0.0005}}
          all: {{input: odd, type: file, path: out}}
    """)
    result = run_graph(plan_file(path, parallelism=2), queue_capacity=1)
    assert result.state == "FINISHED", result.error
    assert SINK_STATS.records == 2000
    assert sorted(r["id"] for r in read_output(tmp_path / "out")) == list(range(1, 4000, 2))
