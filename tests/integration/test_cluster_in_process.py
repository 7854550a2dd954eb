"""The cluster services in one process: JobManager + 2 TaskManagers over loopback sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streamlet.testing.cluster import InProcessCluster
from tests.support.pipelines import canonical, plan_file, read_output, run_graph, write_jsonl, write_pipeline

PIPELINE = """
name: keyed
mode: batch
parallelism: 4
sources: {{src: {{type: file, path: in.jsonl}}}}
transforms:
  per_key: {{input: src, key_by: k, aggregate: {{n: count, total: {{sum: v}}}}}}
sinks: {{out: {{input: per_key, type: file, path: {out}}}}}
"""


def test_keyed_job_on_two_in_process_taskmanagers_equals_the_local_run(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"k": i % 37, "v": i} for i in range(5000)])
    local = plan_file(write_pipeline(tmp_path, PIPELINE.format(out="local"), "local.yaml"))
    assert run_graph(local).state == "FINISHED"
    clustered = plan_file(write_pipeline(tmp_path, PIPELINE.format(out="cluster"), "cluster.yaml"))

    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=2) as cluster:
            job_id = await cluster.submit_graph(clustered)
            info = await cluster.wait(job_id)
            assert info.state == "FINISHED", cluster.dispatcher.job_exceptions(job_id).to_json()
            hosts = {s.host for v in info.vertices for s in v.subtasks}
            assert len(hosts) == 2
            assert info.vertices[0].metrics.records_in == 5000
            await cluster.wait_free_slots(4)  # released after the job ended: the round trip to both

    asyncio.run(main())
    assert canonical(read_output(tmp_path / "cluster")) == canonical(read_output(tmp_path / "local"))


def test_cancel_and_user_function_failure_in_process(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"v": 1}, {"v": 0}])

    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=1) as cluster:
            failing = await cluster.submit_yaml(
                "name: boom\nsources: {s: {type: file, path: in.jsonl}}\n"
                "transforms: {inv: {input: s, map: \"{'x': 1 / r['v']}\"}}\n"
                "sinks: {o: {input: inv, type: blackhole}}\n", base_dir=str(tmp_path))
            info = await cluster.wait(failing)
            assert info.state == "FAILED"
            root = cluster.dispatcher.job_exceptions(failing).to_json()["root-exception"]
            assert "node 'inv'" in root and "ZeroDivisionError" in root and "{'v': 0}" in root
            endless = await cluster.submit_yaml(
                "name: endless\nparallelism: 2\nsources: {g: {type: datagen, rate: 1000, "
                "fields: {id: {kind: sequence}}}}\nsinks: {o: {input: g, type: blackhole}}\n")
            await cluster.wait(endless, states=("RUNNING",))
            cluster.dispatcher.cancel(endless)
            assert (await cluster.wait(endless)).state == "CANCELED"
            await cluster.wait_free_slots(2)  # the release round trip to both taskmanagers

    asyncio.run(main())
