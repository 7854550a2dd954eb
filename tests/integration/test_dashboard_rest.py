"""What the web dashboard reads, against a real JobManager with TaskManagers on RPC (in process):
its own files at ``/``, ``POST /jobs/validate``, the TaskManagers' RSS and CPU load, restarts."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp

from streamlet.testing.cluster import InProcessCluster

GOOD = """
name: validated
parallelism: 2
sources: {g: {type: datagen, rows: 10, fields: {k: {kind: sequence}}}}
transforms:
  m: {input: g, map: "dict(r, v=r['k'] * 2)"}
  c: {input: m, key_by: k, aggregate: {n: count}}
sinks: {o: {input: c, type: blackhole}}
"""
BAD = GOOD.replace("key_by: k, aggregate: {n: count}", "key_by: k, aggregate: {n: count}, colour: red")


def run(body: Any, **overrides: Any) -> None:
    async def main() -> None:
        async with InProcessCluster(taskmanagers=1, slots=2, **overrides) as cluster:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                await body(cluster, client)

    asyncio.run(main())


def test_the_dashboard_files_are_served_and_need_no_token() -> None:
    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        url = cluster.rest_url
        async with client.get(url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
        assert '<script src="/static/app.js"></script>' in page
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
            async with client.get(f"{url}/static/{name}") as r:
                assert r.status == 200 and r.content_type == ctype and len(await r.read()) > 0
        for missing in ("/static/secret.txt", "/static/..%2Fapp.py"):
            async with client.get(url + missing) as r:
                assert r.status == 404, missing
        # the API itself still wants the token
        async with client.get(url + "/overview") as r:
            assert r.status == 401
        async with client.get(url + "/overview", headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 200

    run(body, **{"security.auth.token": "s3cret"})


def test_validate_answers_the_plan_or_where_the_pipeline_is_wrong() -> None:
    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        url = cluster.rest_url + "/jobs/validate?filename=p.yaml"
        async with client.post(url, data=GOOD.encode(), headers={"Content-Type": "application/x-yaml"}) as r:
            assert r.status == 200, await r.text()
            plan = (await r.json())["plan"]
        assert plan["jid"] is None and plan["name"] == "validated"
        nodes = plan["nodes"]
        # g -> m chained (forward, same parallelism); hash exchange into the keyed aggregate and sink
        assert [n["parallelism"] for n in nodes] == [2, 2]
        assert [op["id"] for op in nodes[0]["operators"]] == ["g", "m"]
        assert nodes[1]["inputs"][0]["ship_strategy"] == "HASH" and nodes[1]["inputs"][0]["id"] == nodes[0]["id"]
        async with client.post(url, data=BAD.encode(), headers={"Content-Type": "application/x-yaml"}) as r:
            assert r.status == 400
            answer = await r.json()
        detail = answer["details"][0]
        assert detail["file"] == "p.yaml" and detail["node"] == "c" and "colour" in answer["errors"][0], answer
        assert detail["path"].startswith("transforms.c"), detail
        # nothing ran
        async with client.get(cluster.rest_url + "/jobs") as r:
            assert (await r.json())["jobs"] == []

    run(body)


def test_taskmanagers_report_their_rss_and_cpu_load_with_heartbeats() -> None:
    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        tm = cluster.taskmanagers[0]
        # the TaskManager runs in this process: its RSS is this process's, read independently here
        with open("/proc/self/statm") as fh:
            rss_here = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            async with client.get(f"{cluster.rest_url}/taskmanagers/{tm.id}") as r:
                info = await r.json()
            # the second heartbeat carries a CPU load (the first has no interval to measure)
            if info["cpuLoad"] is not None or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        assert info["cpuLoad"] is not None and 0.0 <= info["cpuLoad"] <= 4.0, info
        assert 0.5 * rss_here < info["memoryRss"] < 2 * rss_here, (info["memoryRss"], rss_here)

    run(body)
