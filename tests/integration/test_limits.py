"""Hostile and broken submissions against a real JobManager (REST over loopback) with two real
TaskManagers on RPC: every one is refused quickly with a 4xx naming the limit and its key, and
nothing else in the cluster notices (the TaskManagers stay registered, REST keeps answering)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from streamlet.testing.cluster import InProcessCluster

SINK = "sinks: {o: {input: g, type: blackhole}}\n"
SOURCE = "sources: {g: {type: datagen, rows: 10, fields: {k: {kind: sequence}}}}\n"


def billion_laughs() -> str:
    """A few hundred bytes whose aliases expand to 10**9 list elements."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    return "\n".join(lines) + "\n"


async def post(client: aiohttp.ClientSession, url: str, body: bytes | aiohttp.FormData,
               ctype: str | None = "application/x-yaml") -> tuple[int, Any, float]:
    t0 = time.perf_counter()
    headers = {"Content-Type": ctype} if ctype else {}
    async with client.post(url + "/jobs", data=body, headers=headers) as resp:
        return resp.status, await resp.json(), time.perf_counter() - t0


def run(body: Any, **overrides: Any) -> None:
    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=1, **overrides) as cluster:
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as client:
                await body(cluster, client)
                # nothing else noticed: both taskmanagers are still there, REST answers, no job exists
                async with client.get(cluster.rest_url + "/overview") as resp:
                    overview = await resp.json()
                assert overview["taskmanagers"] == 2 and overview["jobs-running"] == 0

    asyncio.run(main())


def test_yaml_bombs_are_refused_while_loading_naming_the_limit() -> None:
    deep = "name: " + "[" * 40 + "]" * 40 + "\n" + SOURCE + SINK
    many_aliases = "x: &x 1\nname: [" + ", ".join(["*x"] * 1200) + "]\n"
    cases = [(billion_laughs(), "pipeline.yaml.max-nodes"), (deep, "pipeline.yaml.max-depth"),
             (many_aliases, "pipeline.yaml.max-aliases"),
             ("name: x\n" + "#" * 2_000_000 + "\n" + SOURCE + SINK, "pipeline.yaml.max-bytes")]

    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        for text, key in cases:
            status, answer, seconds = await post(client, cluster.rest_url, text.encode())
            assert status == 413, (key, answer)
            assert len(answer["errors"]) == 1 and key in answer["errors"][0], answer
            assert seconds < 2.0, (key, seconds)

    run(body)


def test_plan_size_limits_are_checked_before_the_graph_is_expanded() -> None:
    huge = "parallelism: 100000\nmax_parallelism: 100000\n" + SOURCE + SINK
    channels = ("parallelism: 400\nmax_parallelism: 1024\n" + SOURCE
                + "transforms: {c: {input: g, key_by: k, aggregate: {n: count}}}\n"
                + "sinks: {o: {input: c, type: blackhole}}\n")
    subtasks = "parallelism: 20000\nmax_parallelism: 20000\n" + SOURCE + SINK
    nodes = ("sources:\n" + "".join(f"  s{i}: {{type: datagen, rows: 1, fields: {{k: {{kind: sequence}}}}}}\n"
                                    for i in range(1001)) + "sinks: {o: {input: s0, type: blackhole}}\n")
    expression = SOURCE + "transforms: {m: {input: g, map: \"" + "r + " * 3000 + "r\"}}\n" \
        + "sinks: {o: {input: m, type: blackhole}}\n"
    cases = [(huge, 400, "pipeline.max-parallelism-limit"), (channels, 400, "pipeline.max-channels"),
             (subtasks, 400, "pipeline.max-subtasks"), (nodes, 413, "pipeline.max-nodes"),
             (expression, 413, "pipeline.expression.max-length")]

    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        for text, code, key in cases:
            status, answer, seconds = await post(client, cluster.rest_url, text.encode())
            assert status == code and key in answer["errors"][0], (key, status, answer)
            assert seconds < 2.0, (key, seconds)
        assert cluster.dispatcher.jobs() == []

    run(body)


def test_request_body_and_uploaded_files_are_bounded() -> None:
    pipeline = ("name: files\n" + SOURCE + SINK).encode()

    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        too_big = aiohttp.FormData()
        too_big.add_field("pipeline", pipeline, filename="p.yaml")
        too_big.add_field("file", b"x = 1\n" * 1000, filename="big.py")
        status, answer, _ = await post(client, cluster.rest_url, too_big, ctype=None)
        assert status == 413 and "web.upload.max-file-size" in answer["errors"][0], answer

        too_many = aiohttp.FormData()
        too_many.add_field("pipeline", pipeline, filename="p.yaml")
        for i in range(4):
            too_many.add_field("file", b"x = 1\n", filename=f"m{i}.py")
        status, answer, _ = await post(client, cluster.rest_url, too_many, ctype=None)
        assert status == 413 and "web.upload.max-files" in answer["errors"][0], answer

        status, answer, _ = await post(client, cluster.rest_url, b"#" * 70_000 + b"\n" + pipeline)
        assert status == 413 and "rest.server.max-content-length" in answer["errors"][0], answer

        # within the limits the same submission is accepted
        ok = aiohttp.FormData()
        ok.add_field("pipeline", pipeline, filename="p.yaml")
        ok.add_field("file", b"x = 1\n", filename="m.py")
        status, answer, _ = await post(client, cluster.rest_url, ok, ctype=None)
        assert status == 202, answer
        await cluster.wait(answer["jid"])

    async def checked(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        await body(cluster, client)

    run(checked, **{"rest.server.max-content-length": 65536, "web.upload.max-file-size": 4096,
                    "web.upload.max-files": 3})


async def _raw_request(port: int, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    return reader, writer


def test_an_announced_oversized_body_is_refused_before_it_is_sent_and_a_stalled_one_times_out() -> None:
    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        port = cluster.jobmanager.rest_port
        assert port is not None
        # 10 GB announced, nothing sent: the answer comes at once
        reader, writer = await _raw_request(port, b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-yaml"
                                                  b"\r\nContent-Length: 10000000000\r\n\r\n")
        try:
            async with asyncio.timeout(5):
                status_line = await reader.readline()
            assert b" 413 " in status_line, status_line
        finally:
            writer.close()
        # a client that stops half-way through its body: 408 after rest.server.read-timeout, and
        # meanwhile the REST API answers everyone else
        reader, writer = await _raw_request(port, b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-yaml"
                                                  b"\r\nContent-Length: 1000\r\n\r\nname: slow\n")
        try:
            t0 = time.perf_counter()
            for _ in range(5):
                async with client.get(cluster.rest_url + "/overview") as resp:
                    assert resp.status == 200
            assert time.perf_counter() - t0 < 1.0
            async with asyncio.timeout(10):
                answer = await reader.read(4096)
            assert b" 408 " in answer.split(b"\r\n", 1)[0] and b"rest.server.read-timeout" in answer, answer
        finally:
            writer.close()

    run(body, **{"rest.server.read-timeout": "1s"})


def test_rest_and_heartbeats_stay_responsive_while_a_pathological_valid_job_is_processed() -> None:
    # valid, within every limit, and expensive: 40 000 values (a few hundred bytes of aliases)
    # copied into each of 32 source subtasks' deployment, with a 32 x 32 hash exchange
    v = "[" + ", ".join(["abcdefgh"] * 200) + "]"
    w = "[" + ", ".join(["*v"] * 200) + "]"
    yaml_text = ("name: heavy\nparallelism: 32\n"
                 f"sources: {{g: {{type: datagen, rate: 100, fields: {{k: {{kind: sequence}}, "
                 f"a: {{kind: choice, values: &v {v}}}, c: {{kind: choice, values: {w}}}}}}}}}\n"
                 "transforms: {c: {input: g, key_by: k, aggregate: {n: count}}}\n"
                 "sinks: {o: {input: c, type: blackhole}}\n")

    async def body(cluster: InProcessCluster, client: aiohttp.ClientSession) -> None:
        latencies: list[float] = []
        stop = asyncio.Event()

        async def poll() -> None:
            # the gap between two answers, sleep included: a blocked loop shows up here
            last = time.perf_counter()
            while not stop.is_set():
                async with client.get(cluster.rest_url + "/taskmanagers") as resp:
                    tms = (await resp.json())["taskmanagers"]
                now = time.perf_counter()
                latencies.append(now - last)
                last = now
                assert len(tms) == 2 and all(t["timeSinceLastHeartbeat"] < 2000 for t in tms), tms
                await asyncio.sleep(0.02)

        async with asyncio.TaskGroup() as tg:
            poller = tg.create_task(poll())
            status, answer, _ = await post(client, cluster.rest_url, yaml_text.encode())
            assert status == 202, answer
            info = await cluster.wait(answer["jid"], states=("RUNNING", "FAILED"))
            assert info.state == "RUNNING", cluster.dispatcher.job_exceptions(answer["jid"]).to_json()
            await cluster.wait(answer["jid"], states=("RUNNING",))
            cluster.dispatcher.cancel(answer["jid"])
            assert (await cluster.wait(answer["jid"])).state == "CANCELED"
            stop.set()
            await poller
        assert latencies and max(latencies) < 1.0, max(latencies)

    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=16) as cluster:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as client:
                await body(cluster, client)

    asyncio.run(main())
