"""``GET /jobs/:id/exceptions`` keeps every failure and every restart, with their times.

A map that fails on record 50 fails every attempt; with ``fixed-delay, attempts: 2`` the job
restarts twice and then FAILS: three failures, the first two each causing a restart, and two
restarts each deployed after its failure (and at least its delay later).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

from jsonschema import validate

from streamlet import config as cfg
from streamlet.rest.schemas import EXCEPTIONS_SCHEMA
from streamlet.runtime.minicluster import MiniCluster
from tests.support.pipelines import plan_file, write_pipeline

PIPELINE = """
    name: flaky
    restart: {strategy: fixed-delay, attempts: 2, delay: 50ms}
    sources:
      gen: {type: datagen, rows: 100, fields: {id: {kind: sequence}}}
    transforms:
      boom: {input: gen, map: "dict(r, x=1 // (r['id'] - 50))"}
    sinks:
      out: {input: boom, type: blackhole}
"""


def test_failures_and_restarts_are_kept_with_their_times(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))

    async def main() -> dict:
        conf = cfg.load(overrides={"log.level": "ERROR", "rest.port": 0}, env={})
        async with MiniCluster(conf, slots=1, rest=True) as cluster:
            job = await cluster.submit(graph)
            info = await cluster.dispatcher.wait_terminal(job)
            assert info.state == "FAILED"
            url = f"http://127.0.0.1:{cluster.rest_port}/jobs/{job}/exceptions"
            return json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read()))

    body = asyncio.run(main())
    validate(body, EXCEPTIONS_SCHEMA)
    entries = body["exceptionHistory"]["entries"]
    assert len(entries) == 3 and all("ZeroDivisionError" in e["stacktrace"] for e in entries)
    assert [e["restart"] for e in entries] == [1, 2, None]  # the last one failed the job
    times = [e["timestamp"] for e in entries]
    assert times == sorted(times)
    restarts = body["restarts"]
    assert [r["restart"] for r in restarts] == [1, 2]
    for r, cause in zip(restarts, entries):
        assert r["failure-timestamp"] == cause["timestamp"] and r["delay"] == 50
        assert r["timestamp"] >= r["failure-timestamp"] + 50
        assert "ZeroDivisionError" in r["cause"] and r["checkpoint-id"] is None  # no checkpointing: from the start
    assert restarts[0]["timestamp"] <= times[1] <= restarts[1]["timestamp"] <= times[2]
    assert body["root-exception"] == entries[0]["stacktrace"]
