"""Queryable state and the status/list/state CLI against a real running job.

The job counts and sums a sequence for one constant key, with its source at parallelism 1, so the
ids arrive in order and any live reading ``[n, total]`` must satisfy ``total == n (n - 1) / 2``
(computed here, independently of the job).  The query is routed to the subtask owning the key
group: in process (``taskmanagers=0``) and over the RPC to a TaskManager process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streamlet import config as cfg
from streamlet.keys import subtask_for_key
from streamlet.runtime.minicluster import MiniCluster
from tests.support.pipelines import plan_file, write_pipeline

PIPELINE = """
    name: queried
    sources:
      gen: {type: datagen, rate: 500, parallelism: 1,
            fields: {id: {kind: sequence}, user: {kind: constant, value: alice}}}
    transforms:
      agg: {input: gen, key_by: user, parallelism: 2, aggregate: {n: count, total: {sum: id}}}
    sinks:
      out: {input: agg, type: blackhole}
"""


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback in a test
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "streamlet", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env={**os.environ, "STREAMLET_TOKEN": ""})
    async with asyncio.timeout(60):
        out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("taskmanagers", [0, 1])
def test_live_state_of_a_key_is_read_from_the_owning_subtask(tmp_path: Path, taskmanagers: int) -> None:
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))
    agg = next(v for v in graph.vertices if any(op.id == "agg" for op in v.operators))
    owner = subtask_for_key("alice", agg.parallelism, graph.max_parallelism)

    async def main() -> None:
        conf = cfg.load(overrides={"log.level": "WARNING", "rest.port": 0}, env={})
        async with MiniCluster(conf, taskmanagers=taskmanagers, slots=2, rest=True) as cluster:
            job = await cluster.submit(graph)
            base = f"http://127.0.0.1:{cluster.rest_port}"
            async with asyncio.timeout(30):
                while True:  # each query is a fresh reading; stop once enough records were counted
                    status, body = await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/agg?key=alice")
                    if status == 200 and body["states"] and body["states"][0]["value"][0] >= 100:
                        break
                    assert status in (200, 409), body  # 409 until the subtask runs
            (entry,) = body["states"]
            n, total = entry["value"]
            assert total == n * (n - 1) // 2
            assert body["live"] is True and body["subtask"] == f"agg ({owner + 1}/2)"
            assert entry["name"] == "value" and entry["namespace"] is None
            # another key, another reading: an absent key has no state; bad requests say why
            status, other = await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/agg?key=%22bob%22")
            assert status == 200 and other["states"] == [] and other["key"] == "bob"
            assert (await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/gen?key=1"))[0] == 400
            assert (await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/nope?key=1"))[0] == 404
            assert (await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/agg"))[0] == 400

            # the CLI prints the same, and status/list as tables and JSON
            m = ["--jobmanager", base]
            code, out = await _cli("state", job, "agg", "alice", *m)
            assert code == 0, out
            name, value = out.strip().split(": ", 1)
            n2, total2 = json.loads(value)
            assert name == "value" and n2 >= n and total2 == n2 * (n2 - 1) // 2
            code, out = await _cli("state", job, "agg", "bob", *m)
            assert code == 1 and "no state for key bob" in out
            code, out = await _cli("status", job, "--output", "json", *m)
            assert code == 0, out
            st = json.loads(out)
            assert st["jid"] == job and st["state"] == "RUNNING"
            assert {v["name"] for v in st["vertices"]} == {v.name for v in graph.vertices}
            for v in st["vertices"]:
                assert v["backpressure"]["backpressure-level"] in ("ok", "low", "high")
                assert {w["id"] for w in v["watermarks"]} == {f"{i}.current{d}Watermark" for i in range(v["parallelism"])
                                                              for d in ("Input", "Output")}
            code, out = await _cli("status", job, *m)
            assert code == 0 and "VERTEX" in out and "LEVEL" in out and "RUNNING" in out, out
            code, out = await _cli("list", "--output", "json", *m)
            assert code == 0 and [j["jid"] for j in json.loads(out)] == [job]
            cluster.cancel(job)
            await cluster.dispatcher.wait_terminal(job)
            status, body = await asyncio.to_thread(_get, f"{base}/jobs/{job}/state/agg?key=alice")
            assert status == 409 and "readable while it runs" in body["errors"][0]

    asyncio.run(main())
