"""Checkpoints, restarts and savepoints end to end, through ``streamlet run`` and the REST API.

Expected outputs are computed here from the input definition (a keyed running count over ids
0..N-1 keyed by ``id % 5`` emits, per key, the counts 1..N/5 exactly once), never by streamlet.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamlet import config as cfg
from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.client.rest import RestClient
from streamlet.runtime.minicluster import MiniCluster, execute_async, free_port

FAIL_ONCE = textwrap.dedent('''
    import os
    def fail_at(r):
        if r["id"] == int(os.environ.get("FAIL_AT", "12000")) and not os.path.exists("marker"):
            open("marker", "w").close()
            raise RuntimeError("boom at " + str(r["id"]))
        return r
''')


def _pipeline(rows: int, rate: int, extra: str = "", checkpoint: str = "{interval: 100ms, dir: chk}") -> str:
    return textwrap.dedent(f"""
        name: counts
        parallelism: 2
        checkpointing: {checkpoint}
        {extra}
        sources: {{g: {{type: datagen, rows: {rows}, rate: {rate}, fields: {{id: {{kind: sequence}}}}}}}}
        transforms:
          boom: {{input: g, map: "failonce:fail_at"}}
          counts: {{input: boom, key_by: "r['id'] % 5", aggregate: {{n: count}}}}
        sinks: {{out: {{input: counts, type: file, path: out}}}}
    """)


def _committed(out: Path) -> dict[int, list[int]]:
    """Key -> the counts in the committed (visible) part files, in no particular order."""
    by: dict[int, list[int]] = collections.defaultdict(list)
    for f in out.glob("part-*"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            by[r["key"]].append(r["n"])
    return by


def _assert_exactly_once(out: Path, rows: int) -> None:
    by = _committed(out)
    assert sorted(by) == [0, 1, 2, 3, 4]
    for key, counts in by.items():
        expected = list(range(1, len([i for i in range(rows) if i % 5 == key]) + 1))
        assert sorted(counts) == expected, f"key {key}: duplicates or gaps"


def _run(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamlet", "run", *args], cwd=tmp, capture_output=True,
                          text=True, timeout=timeout)


def test_a_failed_task_restarts_from_the_last_checkpoint_exactly_once(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    (tmp_path / "p.yaml").write_text(_pipeline(20_000, 20_000,
                                               "restart: {strategy: fixed-delay, attempts: 3, delay: 50ms}"))
    r = _run(tmp_path, "p.yaml")
    assert r.returncode == 0, r.stderr
    assert "boom at 12000" in r.stderr  # it did fail once
    assert (tmp_path / "marker").exists()
    _assert_exactly_once(tmp_path / "out", 20_000)
    # retained: the last 3 completed checkpoints (and the one restored from, while it is needed)
    kept = sorted(p.name for p in (tmp_path / "chk").glob("*/chk-*"))
    assert 3 <= len(kept) <= 4, kept
    assert all((tmp_path / "chk").glob("*/chk-*/_metadata"))


def test_without_a_restart_strategy_the_job_fails(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    (tmp_path / "p.yaml").write_text(_pipeline(20_000, 20_000, "restart: {strategy: none}"))
    r = _run(tmp_path, "p.yaml")
    assert r.returncode == 1
    assert "FAILED" in r.stderr and "boom at 12000" in r.stderr


def test_attempts_run_out(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE.replace('and not os.path.exists("marker")', ""))
    (tmp_path / "p.yaml").write_text(_pipeline(20_000, 40_000,
                                               "restart: {strategy: fixed-delay, attempts: 2, delay: 10ms}"))
    r = _run(tmp_path, "p.yaml")
    assert r.returncode == 1 and "boom at 12000" in r.stderr


@pytest.mark.parametrize("setup, words", [
    (lambda d: None, ["holds no checkpoint or savepoint", "_metadata"]),
    (lambda d: (d.mkdir(), (d / "_metadata").write_text("{not json")), ["is corrupted"]),
])
def test_a_bad_savepoint_path_is_refused(tmp_path: Path, setup: Any, words: list[str]) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    (tmp_path / "p.yaml").write_text(_pipeline(100, 1000))
    sp = tmp_path / "sp"
    setup(sp)
    r = _run(tmp_path, "p.yaml", "--from-savepoint", str(sp))
    assert r.returncode != 0
    for w in words:
        assert w in r.stderr
    assert not (tmp_path / "out").exists()  # the job never started


def test_an_unwritable_checkpoint_location_fails_the_job_at_its_start(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    (tmp_path / "blocker").write_text("a file, not a directory")
    (tmp_path / "p.yaml").write_text(_pipeline(100, 1000, checkpoint="{interval: 100ms, dir: blocker/chk}"))
    r = _run(tmp_path, "p.yaml")
    assert r.returncode == 1
    assert "cannot be written" in r.stderr and "checkpointing.dir" in r.stderr


def test_bad_checkpointing_and_restart_keys_name_the_place(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    for extra, words in [
        ("checkpointing: {interval: often}", ["checkpointing.interval", "expected a duration"]),
        ("checkpointing: {mode: twice}", ["checkpointing.mode", "exactly_once, at_least_once"]),
        ("restart: {strategy: fixed-delay, max_backoff: 1s}", ["restart.max_backoff", "attempts, delay"]),
        ("restart: {attempts: 3}", ["restart", "missing key 'strategy'"]),
    ]:
        text = _pipeline(100, 1000).replace("checkpointing: {interval: 100ms, dir: chk}", extra)
        (tmp_path / "p.yaml").write_text(text)
        r = subprocess.run([sys.executable, "-m", "streamlet", "validate", "p.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, extra
        for w in words:
            assert w in r.stderr, (extra, r.stderr)


# -- REST: statistics, triggers, savepoints, stop and resume at another parallelism ---------------

def _graph(tmp: Path, text: str, parallelism: int | None = None) -> Any:
    (tmp / "p.yaml").write_text(text)
    pdef = loads(text, source_file=str(tmp / "p.yaml"), base_dir=str(tmp))
    return plan(pdef, parallelism_override=parallelism)


def test_rest_checkpoints_savepoint_stop_and_resume_at_another_parallelism(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # the file sink and checkpoint dir are relative
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = 30_000
    text = _pipeline(rows, 10_000, checkpoint="{interval: 200ms, dir: chk}")
    port = free_port()
    conf = cfg.load(overrides={"log.level": "WARNING", "rest.port": port}, env={})
    client = RestClient(f"http://127.0.0.1:{port}")

    async def first_part() -> str:
        async with MiniCluster(conf, slots=2, rest=True) as cluster:
            job = await cluster.submit(_graph(tmp_path, text))

            def rest_calls() -> str:
                deadline = time.monotonic() + 30
                while client.checkpoints(job)["counts"]["completed"] < 2:
                    assert time.monotonic() < deadline, "no checkpoint completed"
                    time.sleep(0.05)
                stats = client.checkpoints(job)
                latest = stats["latest"]["completed"]
                assert latest["status"] == "COMPLETED" and latest["num_acknowledged_subtasks"] == 4
                assert latest["state_size"] > 0 and latest["end_to_end_duration"] >= 0
                assert {"min", "max", "avg"} <= set(stats["summary"]["end_to_end_duration"])
                assert stats["history"][0]["id"] >= latest["id"]
                config = client.request("GET", f"/jobs/{job}/checkpoints/config")
                assert (config["interval"], config["mode"], config["retained"]) == (200, "exactly_once", 3)
                # a checkpoint on request
                trigger = client.request("POST", f"/jobs/{job}/checkpoints", b"{}", "application/json")["request-id"]
                op = client._wait_operation(f"/jobs/{job}/checkpoints", trigger, 30)
                assert op["location"].endswith(f"chk-{op['checkpointId']}")
                # no target anywhere: refused with a clear reason
                try:
                    client.request("POST", f"/jobs/{job}/savepoints", b"{}", "application/json")
                    raise AssertionError("a savepoint without a target was accepted")
                except Exception as exc:  # noqa: BLE001 - RestError
                    assert "no target directory" in str(exc)
                return client.stop(job, str(tmp_path / "savepoints"))

            location = await asyncio.to_thread(rest_calls)
            info = await cluster.dispatcher.wait_terminal(job)
            assert info.state == "FINISHED"
            return location

    location = asyncio.run(first_part())
    assert Path(location, "_metadata").exists() and Path(location).parent == tmp_path / "savepoints"
    before = sum(len(v) for v in _committed(tmp_path / "out").values())
    assert 0 < before < rows, "stopped mid-way"
    # resume at parallelism 3 into the same sink directory
    conf2 = cfg.load(overrides={"log.level": "WARNING"}, env={})
    result = asyncio.run(execute_async(_graph(tmp_path, text.replace("rate: 10000", "rate: 100000"), 3), conf2,
                                       savepoint_path=location))
    assert result.state == "FINISHED", result.error
    _assert_exactly_once(tmp_path / "out", rows)
