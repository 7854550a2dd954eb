"""Latency markers (``metrics.latency.interval``): end-to-end latency histograms in ``GET /metrics``.

Markers leave the source every 50 ms, cross a keyed (hash) exchange and reach the sink's task;
each task that receives them records ``now - marked time`` per source, exported with Flink's name
``flink_taskmanager_job_latency_source_id_operator_id_operator_subtask_index_latency`` (a
summary: quantiles, count, sum).  Markers off (the default): no such metric.  With two TaskManager processes the markers cross
remote channels and each TaskManager's ``metrics.port`` serves the latency its tasks recorded.
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamlet import config as cfg
from streamlet.runtime.minicluster import MiniCluster
from streamlet.runtime.taskmanager.network.elements import LatencyMarker, from_wire
from tests.support.pipelines import plan_file, write_pipeline

NAME = "flink_taskmanager_job_latency_source_id_operator_id_operator_subtask_index_latency"
PIPELINE = """
    name: timed
    sources:
      gen: {type: datagen, rate: 300, parallelism: 1, fields: {id: {kind: sequence}, user: {kind: random, min: 1, max: 9}}}
    transforms:
      sums: {input: gen, key_by: user, parallelism: 2, aggregate: {total: {sum: id}}}
    sinks:
      out: {input: sums, type: blackhole, parallelism: 2}
"""


def _scrape(url: str) -> dict[str, list[Any]]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback in a test
        text = resp.read().decode()
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _merged(urls: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for url in urls:
        for name, rows in _scrape(url).items():
            out.setdefault(name, []).extend(rows)
    return out


def _run(tmp_path: Path, interval: str, ready: Any, taskmanagers: int = 0) -> dict[str, list[Any]]:
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))

    async def main() -> dict[str, list[Any]]:
        conf = cfg.load(overrides={"log.level": "WARNING", "rest.port": 0, "metrics.latency.interval": interval},
                        env={})
        async with MiniCluster(conf, taskmanagers=taskmanagers, slots=1 if taskmanagers else 2, rest=True) as cluster:
            job = await cluster.submit(graph)
            base = f"http://127.0.0.1:{cluster.rest_port}"
            urls = [f"{base}/metrics"]
            if taskmanagers:  # each TaskManager process serves its own
                import json

                def ports() -> list[int]:
                    tms = json.loads(urllib.request.urlopen(f"{base}/taskmanagers", timeout=10).read())["taskmanagers"]
                    return [json.loads(urllib.request.urlopen(f"{base}/taskmanagers/{t['id']}", timeout=10).read())
                            ["resources"]["metrics_port"] for t in tms]

                urls = [f"http://127.0.0.1:{p}/metrics" for p in await asyncio.to_thread(ports)]
            async with asyncio.timeout(30):
                while not ready(samples := await asyncio.to_thread(_merged, urls)):
                    await asyncio.sleep(0.1)  # markers come every 50 ms
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)
            return samples

    return asyncio.run(main())


@pytest.mark.parametrize("taskmanagers", [0, 2])
def test_markers_give_end_to_end_latency_per_source_and_operator(tmp_path: Path, taskmanagers: int) -> None:
    def ready(s: dict[str, list[Any]]) -> bool:
        # sums and its sink are one chain: its task records, with the chain's head as operator
        return sum(v for r, v in s.get(NAME + "_count", []) if r["operator_id"] == "sums") >= 5

    s = _run(tmp_path, "50ms", ready, taskmanagers)
    rows = s[NAME]
    assert {r["source_id"] for r, _ in rows} == {"gen"}
    assert {r["quantile"] for r, _ in rows} >= {"0.5", "0.99"}
    # one marker per interval goes to one channel: the subtasks of sums share the markers
    assert {r["operator_id"] for r, _ in rows} == {"sums"}
    for labels, v in rows:
        assert 0 <= v < 5000, (labels, v)  # ms, on loopback in one process
        assert labels["job_name"] == "timed" and labels["operator_subtask_index"] in ("0", "1")
    for labels, total in s[NAME + "_sum"]:
        assert total >= 0


def test_no_markers_by_default(tmp_path: Path) -> None:
    s = _run(tmp_path, "0ms", lambda s: len(s.get("flink_taskmanager_job_task_numRecordsIn", [])) == 3)
    assert NAME not in s and NAME + "_count" not in s


def test_a_marker_crosses_the_wire() -> None:
    marker = LatencyMarker(1_700_000_000_123, "gen", 3)
    assert from_wire(marker.to_wire()) == marker
