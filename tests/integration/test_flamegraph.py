"""Flame graphs end to end: a JobManager and two TaskManagers on RPC (in process), a job whose
map burns CPU in a known function, ``GET .../flamegraph`` polled until it has data."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from streamlet.testing.cluster import InProcessCluster

BURN = b'''
def burn(r):
    total = 0
    for i in range(300):
        total += i * i
    return dict(r, burnt=total)
'''
PIPELINE = b"""
name: burner
parallelism: 2
sources: {g: {type: datagen, fields: {k: {kind: sequence}}}}
transforms:
  hot: {input: g, map: "burn_mod:burn"}
  keyed: {input: hot, key_by: k, aggregate: {n: count}}
sinks: {o: {input: keyed, type: blackhole}}
"""
# one loop runs the JobManager and both TaskManagers here: a burning map delays heartbeats
FAST = {"rest.flamegraph.num-samples": 30, "rest.flamegraph.delay-between-samples": "10ms", "heartbeat.timeout": "10s"}


def names(node: dict[str, Any]) -> set[str]:
    out = {node["name"]}
    for c in node["children"]:
        out |= names(c)
    return out


def check_values(node: dict[str, Any]) -> None:
    """A node's samples are at least its children's (a frame is on every stack through it)."""
    assert node["value"] >= sum(c["value"] for c in node["children"]), node["name"]
    for c in node["children"]:
        check_values(c)


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with client.get(url) as r:
        return r.status, await r.json()


def test_flame_graph_of_a_vertex_running_on_two_taskmanagers() -> None:
    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=1, **FAST) as cluster:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                form = aiohttp.FormData()
                form.add_field("pipeline", PIPELINE, filename="burner.yaml")
                form.add_field("file", BURN, filename="burn_mod.py")
                async with client.post(cluster.rest_url + "/jobs", data=form) as r:
                    assert r.status == 202, await r.text()
                    jid = (await r.json())["jid"]
                base = f"{cluster.rest_url}/jobs/{jid}"
                deadline = asyncio.get_running_loop().time() + 20
                while True:
                    _, job = await get(client, base)
                    if all(v["status"] == "RUNNING" for v in job["vertices"]) and job["vertices"]:
                        break
                    assert asyncio.get_running_loop().time() < deadline and job["state"] in ("INITIALIZING", "CREATED", "RUNNING"), (job["state"], await get(client, base + "/exceptions"))
                    await asyncio.sleep(0.05)
                hot = job["vertices"][0]  # the source chained with the map
                url = f"{base}/vertices/{hot['id']}/flamegraph"
                status, first = await get(client, url)
                assert status == 200 and first == {"endTimestamp": -3}, (first, await get(client, base + "/exceptions"))
                while True:
                    status, graph = await get(client, url)
                    if "data" in graph:
                        break
                    assert graph.get("endTimestamp") == -3 and asyncio.get_running_loop().time() < deadline, graph
                    await asyncio.sleep(0.1)
                root = graph["data"]
                # 30 samples of each of the 2 subtasks, one on each TaskManager
                assert root["name"] == "root" and root["value"] == 60, root["value"]
                assert graph["endTimestamp"] > job["start-time"]
                check_values(root)
                assert any(n.startswith("burn (") for n in names(root)), sorted(names(root))
                for sub in (0, 1):
                    _, one = await get(client, f"{url}?subtaskindex={sub}")
                    assert one["data"]["value"] == 30 and one["endTimestamp"] == graph["endTimestamp"]
                _, on = await get(client, f"{url}?type=ON_CPU")
                _, off = await get(client, f"{url}?type=off_cpu")
                assert on["data"]["value"] + off["data"]["value"] == 60
                assert on["data"]["value"] > 0
                assert any(n.startswith("burn (") for n in names(on["data"]))
                # bad parameters and unknown vertices
                assert (await get(client, f"{url}?type=WARM"))[0] == 400
                assert (await get(client, f"{url}?subtaskindex=x"))[0] == 400
                assert (await get(client, f"{base}/vertices/{'0' * 32}/flamegraph"))[0] == 404
                async with client.patch(f"{base}?mode=cancel") as r:
                    assert r.status == 202
                await cluster.dispatcher.wait_terminal(jid)
                status, ended = await get(client, url)
                assert status == 200 and ended == {"endTimestamp": -1}  # Flink's "terminated"

    asyncio.run(main())


def test_disabled_flame_graphs_answer_minus_two_and_sample_nothing() -> None:
    async def main() -> None:
        async with InProcessCluster(taskmanagers=1, slots=2, **{"rest.flamegraph.enabled": False}) as cluster:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
                async with client.post(cluster.rest_url + "/jobs", data=PIPELINE.replace(b"burn_mod:burn", b"dict(r)"),
                                       headers={"Content-Type": "application/x-yaml"}) as r:
                    jid = (await r.json())["jid"]
                _, job = await get(client, f"{cluster.rest_url}/jobs/{jid}")
                vid = job["vertices"][0]["id"]
                assert (await get(client, f"{cluster.rest_url}/jobs/{jid}/vertices/{vid}/flamegraph")) == \
                    (200, {"endTimestamp": -2})
                cluster.dispatcher.cancel(jid)
                await cluster.dispatcher.wait_terminal(jid)

    asyncio.run(main())
