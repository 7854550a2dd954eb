"""``GET /metrics`` of a real running job, parsed with prometheus_client's parser.

* ``streamlet run``'s MiniCluster (JobManager and TaskManager in one process): the REST port
  exports the JobManager's job metrics and the in-process TaskManager's task and operator metrics
  with Flink's names and labels;
* a TaskManager process serves its own on ``metrics.port`` (the port it reports at registration).

The expected values come from the job itself (its id, name, vertices and parallelism from the
REST API) and from what the test configured (the source's rate), never from the exporter.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streamlet import config as cfg
from streamlet.runtime.minicluster import MiniCluster
from tests.support.pipelines import plan_file, write_pipeline

PIPELINE = """
    name: metered
    parallelism: 2
    sources:
      gen:
        type: datagen
        rate: 400
        timestamp: ts
        watermark: {max_out_of_orderness: 1s}
        fields: {id: {kind: sequence}, user: {kind: random, min: 1, max: 20}, ts: {kind: timestamp}}
    transforms:
      sums: {input: gen, key_by: user, aggregate: {total: {sum: id}}}
    sinks:
      out: {input: sums, type: blackhole}
"""

TASK_METRICS = ("numRecordsIn", "numRecordsOut", "numRecordsInPerSecond", "numRecordsOutPerSecond",
                "busyTimeMsPerSecond", "backPressuredTimeMsPerSecond", "idleTimeMsPerSecond")
JOB_METRICS = ("uptime", "numRestarts", "lastCheckpointDuration", "lastCheckpointSize",
               "numberOfCompletedCheckpoints", "numberOfFailedCheckpoints")


def _get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback in a test
        return resp.headers["Content-Type"], resp.read().decode()


def _json(url: str) -> Any:
    return json.loads(_get(url)[1])


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _conf(**overrides: Any) -> Any:
    return cfg.load(overrides={"log.level": "WARNING", "rest.port": 0, "taskmanager.metrics.interval": "200ms",
                               **overrides}, env={})


async def _scrape_until(url: str, ready: Any, timeout: float = 20.0) -> dict[str, Any]:
    """Scrape until ``ready(samples)``; the scrape itself is the event (each one a fresh reading)."""
    async with asyncio.timeout(timeout):
        while True:
            ctype, text = await asyncio.to_thread(_get, url)
            samples = _samples(text)
            if ready(samples):
                return {"content_type": ctype, "samples": samples}
            await asyncio.sleep(0.2)  # the next metrics sample is due every 200 ms


def test_jobmanager_metrics_of_a_running_job_in_one_process(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))

    async def main() -> None:
        async with MiniCluster(_conf(), slots=2, rest=True) as cluster:
            job = await cluster.submit(graph)
            base = f"http://127.0.0.1:{cluster.rest_port}"

            def ready(s: dict[str, Any]) -> bool:
                rates = s.get("flink_taskmanager_job_task_numRecordsInPerSecond", [])
                return len(rates) == 4 and all(v > 0 for _, v in rates)

            got = await _scrape_until(f"{base}/metrics", ready)
            details = await asyncio.to_thread(_json, f"{base}/jobs/{job}")
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)

        assert got["content_type"].startswith("text/plain")
        s = got["samples"]
        vertices = {v["name"]: v for v in details["vertices"]}
        for name in TASK_METRICS:
            rows = s[f"flink_taskmanager_job_task_{name}"]
            seen = {(r["task_name"], r["subtask_index"]) for r, _ in rows}
            assert seen == {(v, str(i)) for v in vertices for i in range(vertices[v]["parallelism"])}, name
            for labels, _ in rows:
                assert labels["job_id"] == job and labels["job_name"] == "metered"
                assert labels["tm_id"] and labels["task_id"] in {v["id"] for v in vertices.values()}
        for labels, v in s["flink_taskmanager_job_task_busyTimeMsPerSecond"]:
            assert 0 <= v <= 1000
        # the source is paced at 400 rows/s over two subtasks
        source = [v for r, v in s["flink_taskmanager_job_task_numRecordsOutPerSecond"] if r["task_name"].startswith("gen")]
        assert 100 < sum(source) < 800, source
        for name in ("currentInputWatermark", "currentOutputWatermark"):
            rows = s[f"flink_taskmanager_job_task_operator_{name}"]
            assert {r["operator_id"] for r, _ in rows} >= {"gen", "sums", "out"}
        # event time is the wall clock (paced datagen): the source's watermark is recent
        import time

        gen_wm = [v for r, v in s["flink_taskmanager_job_task_operator_currentOutputWatermark"] if r["operator_id"] == "gen"]
        assert all(abs(time.time() * 1000 - w) < 60_000 for w in gen_wm), gen_wm
        for name in JOB_METRICS:
            (labels, value), = s[f"flink_jobmanager_job_{name}"]
            assert labels["job_id"] == job and labels["job_name"] == "metered"
        assert s["flink_jobmanager_job_uptime"][0][1] > 0
        assert s["flink_jobmanager_job_numRestarts"][0][1] == 0
        assert s["flink_jobmanager_numRegisteredTaskManagers"][0][1] == 1

    asyncio.run(main())


def test_a_taskmanager_process_serves_its_metrics_on_metrics_port(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))

    async def main() -> None:
        async with MiniCluster(_conf(), taskmanagers=1, slots=2, rest=True) as cluster:
            job = await cluster.submit(graph)
            base = f"http://127.0.0.1:{cluster.rest_port}"
            (tm,) = (await asyncio.to_thread(_json, f"{base}/taskmanagers"))["taskmanagers"]
            detail = await asyncio.to_thread(_json, f"{base}/taskmanagers/{tm['id']}")
            port = detail["resources"]["metrics_port"]
            assert isinstance(port, int) and port > 0

            def ready(s: dict[str, Any]) -> bool:
                return len(s.get("flink_taskmanager_job_task_numRecordsIn", [])) == 4

            got = await _scrape_until(f"http://127.0.0.1:{port}/metrics", ready)
            jm_text = (await asyncio.to_thread(_get, f"{base}/metrics"))[1]
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)

        s = got["samples"]
        assert {r["tm_id"] for r, _ in s["flink_taskmanager_job_task_numRecordsIn"]} == {tm["id"]}
        assert {r["job_id"] for r, _ in s["flink_taskmanager_job_task_numRecordsIn"]} == {job}
        # the JobManager process runs no task: its /metrics has job metrics, no task metrics
        jm = _samples(jm_text)
        assert "flink_jobmanager_job_uptime" in jm
        assert not any(name.startswith("flink_taskmanager_job_task") for name in jm)

    asyncio.run(main())


def test_checkpoint_metrics_of_the_jobmanager_follow_the_coordinator(tmp_path: Path) -> None:
    # an absolute directory: a relative one is the JobManager's working directory's
    text = PIPELINE.replace("    parallelism: 2\n",
                            f"    parallelism: 2\n    checkpointing: {{interval: 100ms, dir: '{tmp_path / 'chk'}'}}\n")
    graph = plan_file(write_pipeline(tmp_path, text))

    async def main() -> tuple[dict[str, Any], Any]:
        async with MiniCluster(_conf(), slots=2, rest=True) as cluster:
            job = await cluster.submit(graph)
            base = f"http://127.0.0.1:{cluster.rest_port}"

            def ready(s: dict[str, Any]) -> bool:
                return s.get("flink_jobmanager_job_numberOfCompletedCheckpoints", [({}, 0)])[0][1] >= 3

            got = await _scrape_until(f"{base}/metrics", ready)
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)
            return got["samples"], cluster.dispatcher.checkpoint_stats(job)

    s, stats = asyncio.run(main())
    completed = s["flink_jobmanager_job_numberOfCompletedCheckpoints"][0][1]
    # the REST view read after the scrape has at least as many (the job went on)
    assert 3 <= completed <= stats["counts"]["completed"]
    assert s["flink_jobmanager_job_lastCheckpointDuration"][0][1] >= 0
    assert s["flink_jobmanager_job_lastCheckpointSize"][0][1] > 0  # the keyed sums have state
    assert s["flink_jobmanager_job_numberOfFailedCheckpoints"][0][1] == 0
    assert s["flink_jobmanager_job_totalNumberOfCheckpoints"][0][1] >= completed
