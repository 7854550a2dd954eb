"""Checkpoint storage end to end: S3, failed uploads, shared-file cleanup, savepoints that do not
fit the pipeline.  Expected outputs come from the input definition (see test_checkpoints.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from streamlet import config as cfg
from streamlet.runtime.minicluster import MiniCluster
from tests.integration.test_checkpoints import FAIL_ONCE, _assert_exactly_once, _graph, _pipeline, _run
from tests.support.s3 import moto_server


def test_checkpoints_on_s3_and_a_restart_from_them(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE)
    with moto_server() as endpoint:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/chk", method="PUT"), timeout=10).read()
        (tmp_path / "p.yaml").write_text(_pipeline(20_000, 20_000, "restart: {strategy: fixed-delay, delay: 50ms}",
                                                   checkpoint="{interval: 100ms, dir: 's3://chk/jobs'}"))
        r = _run(tmp_path, "p.yaml", "-D", f"s3.endpoint={endpoint}", "-D", "s3.access-key=testing",
                 "-D", "s3.secret-key=testing")
        assert r.returncode == 0, r.stderr
        assert "boom at 12000" in r.stderr
        listing = urllib.request.urlopen(f"{endpoint}/chk?list-type=2&prefix=jobs/", timeout=10).read().decode()
        assert "_metadata" in listing
    _assert_exactly_once(tmp_path / "out", 20_000)


def _stats(cluster: MiniCluster, job: str) -> dict[str, Any]:
    return cluster.dispatcher.checkpoint_stats(job)


def test_failed_uploads_abort_those_checkpoints_and_the_job_goes_on(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "failonce.py").write_text(FAIL_ONCE.replace("12000", "99999999"))
    text = _pipeline(30_000, 15_000, "state: {backend: rocksdb}", checkpoint="{interval: 100ms, dir: chk}")
    conf = cfg.load(overrides={"log.level": "ERROR"}, env={})

    async def main() -> tuple[dict[str, Any], set[str]]:
        async with MiniCluster(conf, slots=2) as cluster:
            job = await cluster.submit(_graph(tmp_path, text))
            root = tmp_path / "chk" / job
            root.mkdir(parents=True, exist_ok=True)
            for n in (3, 4, 5):  # a file where checkpoint n's directory must go: its uploads fail
                (root / f"chk-{n}").write_text("in the way")
            deadline = time.monotonic() + 30
            while _stats(cluster, job)["counts"]["completed"] < 3 or _stats(cluster, job)["counts"]["failed"] < 3:
                assert time.monotonic() < deadline, _stats(cluster, job)
                await asyncio.sleep(0.05)
            before = {p.name for p in root.glob("chk-*") if (p / "_metadata").exists()}
            info = await cluster.dispatcher.wait_terminal(job)
            assert info.state == "FINISHED"
            return _stats(cluster, job), before

    stats, before = asyncio.run(main())
    failed = [h for h in stats["history"] if h["status"] == "FAILED"] or [stats["latest"]["failed"]]
    assert "could not write its state" in failed[0]["failure_message"]
    assert {"chk-1", "chk-2"} <= before  # what was checkpointed before the failures stays
    _assert_exactly_once(tmp_path / "out", 30_000)


def test_incremental_checkpoints_keep_exactly_the_shared_files_retained_ones_need(tmp_path: Path) -> None:
    (tmp_path / "failonce.py").write_text(FAIL_ONCE.replace("12000", "99999999"))
    # many keys, so the rocksdb backend flushes SST files that later checkpoints share
    text = _pipeline(60_000, 30_000, "state: {backend: rocksdb}",
                     checkpoint="{interval: 100ms, dir: chk, retained: 2, incremental: true}")
    text = text.replace("r['id'] % 5", "r['id']")
    (tmp_path / "p.yaml").write_text(text)
    r = _run(tmp_path, "p.yaml", "-D", "state.backend.rocksdb.write-cache.entries=1000",
             "-D", "state.backend.rocksdb.writebuffer.size-mb=1")
    assert r.returncode == 0, r.stderr
    (job_dir,) = (tmp_path / "chk").iterdir()
    kept = [p for p in job_dir.glob("chk-*") if (p / "_metadata").exists()]
    assert len(kept) == 2, kept
    # (the last one may have been taken as the keyed subtasks finished, without their state)
    referenced = {path for k in kept for v in orjson.loads((k / "_metadata").read_bytes())["vertices"].values()
                  for st in v["subtasks"].values() if st.get("keyed") for path in st["keyed"]["shared"]}
    on_disk = {str(p.relative_to(job_dir)) for p in (job_dir / "shared").rglob("*") if p.is_file()}
    assert referenced, "the checkpoint references shared SST files"
    assert referenced <= on_disk, "a referenced shared file was deleted"
    assert on_disk == referenced, f"unreferenced shared files left: {sorted(on_disk - referenced)[:5]}"


def test_a_savepoint_with_state_the_pipeline_lacks(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "failonce.py").write_text(FAIL_ONCE.replace("12000", "99999999"))
    port_conf = cfg.load(overrides={"log.level": "ERROR"}, env={})
    text = _pipeline(20_000, 5_000)

    async def savepoint() -> str:
        async with MiniCluster(port_conf, slots=2) as cluster:
            job = await cluster.submit(_graph(tmp_path, text))
            deadline = time.monotonic() + 30
            while _stats(cluster, job)["counts"]["completed"] < 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            done = await cluster.dispatcher._jobs[job].savepoint(str(tmp_path / "sp"), stop=True)
            await cluster.dispatcher.wait_terminal(job)
            return done.location

    location = asyncio.run(savepoint())
    renamed = text.replace("counts: {input: boom", "tally: {input: boom").replace("input: counts", "input: tally")
    (tmp_path / "q.yaml").write_text(renamed)
    r = _run(tmp_path, "q.yaml", "--from-savepoint", location)
    assert r.returncode != 0
    assert "holds state of operators this job does not have" in r.stderr and "counts" in r.stderr
    assert "--allow-non-restored-state" in r.stderr
    r = _run(tmp_path, "q.yaml", "--from-savepoint", location, "--allow-non-restored-state")
    assert r.returncode == 0, r.stderr
