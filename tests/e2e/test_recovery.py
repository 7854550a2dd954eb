"""Fault tolerance with real processes: TaskManagers killed with SIGKILL mid-run, replaced, and the
job restarts from its last checkpoint (issue 9's proof).

The job is a keyed running count at parallelism 2 over 2 TaskManagers: ids 0..N-1 keyed by
``id % 5``; its committed output must hold, per key, the counts 1..N/5 exactly once (exactly-once
mode) or at least once (at-least-once mode).  Expected values come from the input definition.
"""

from __future__ import annotations

import collections
import json
import signal
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import Cluster, wait_for


def _pipeline(tmp: Path, rows: int, rate: int, mode: str) -> str:
    return textwrap.dedent(f"""
        name: running-count
        parallelism: 2
        checkpointing: {{interval: 1s, mode: {mode}, dir: {tmp / 'chk'}}}
        restart: {{strategy: fixed-delay, attempts: 10, delay: 200ms}}
        sources: {{g: {{type: datagen, rows: {rows}, rate: {rate}, fields: {{id: {{kind: sequence}}}}}}}}
        transforms:
          counts: {{input: g, key_by: "r['id'] % 5", aggregate: {{n: count}}}}
        sinks: {{out: {{input: counts, type: file, path: out}}}}
    """)


def _committed(out: Path) -> dict[int, list[int]]:
    by: dict[int, list[int]] = collections.defaultdict(list)
    for f in out.glob("part-*"):
        with open(f) as fh:
            for line in fh:
                r = json.loads(line)
                by[r["key"]].append(r["n"])
    return by


def _completed(cluster: Cluster, job: str) -> int:
    return cluster.get(f"/jobs/{job}/checkpoints")["counts"]["completed"]


def _kill_and_replace(cluster: Cluster, job: str, victim: str) -> None:
    """SIGKILL one TaskManager mid-run, start a replacement, wait until the job restarted and
    checkpointed again."""
    before = cluster.job(job)["numRestarts"]
    done = _completed(cluster, job)
    wait_for(lambda: _completed(cluster, job) > done, 30, "a checkpoint before the kill", cluster.logs)
    next(p for p in cluster.procs if p.name == victim).kill(signal.SIGKILL)
    # the replacement (the dead one counts as registered until its heartbeat timeout)
    cluster.taskmanager(1, wait=False)
    wait_for(lambda: cluster.job(job)["numRestarts"] > before, 30, "the restart", cluster.logs)
    cluster.wait_state(job, "RUNNING", "FINISHED", timeout=30)
    if cluster.job(job)["state"] == "RUNNING":
        done = _completed(cluster, job)
        wait_for(lambda: _completed(cluster, job) > done or cluster.job(job)["state"] == "FINISHED", 30,
                 "a checkpoint after the restart", cluster.logs)


@pytest.mark.parametrize("mode", ["exactly_once", "at_least_once"])
def test_taskmanagers_killed_one_after_the_other(cluster: Cluster, tmp_path: Path, mode: str) -> None:
    rows = 2_000_000 if mode == "exactly_once" else 400_000
    cluster.jobmanager()
    cluster.taskmanager(1)
    cluster.taskmanager(1)
    job = cluster.submit(_pipeline(tmp_path, rows, rows // 12, mode), base_dir=str(tmp_path))
    cluster.wait_state(job, "RUNNING")
    _kill_and_replace(cluster, job, "taskmanager-0")
    if mode == "exactly_once":
        _kill_and_replace(cluster, job, "taskmanager-1")
    info = cluster.wait_state(job, "FINISHED", "FAILED", "CANCELED", timeout=120)
    assert info["state"] == "FINISHED", cluster.logs()
    assert info["numRestarts"] == (2 if mode == "exactly_once" else 1)
    exceptions = cluster.get(f"/jobs/{job}/exceptions")
    assert exceptions["exceptionHistory"]["entries"], "the failures are in the history"
    by = _committed(tmp_path / "out")
    assert sorted(by) == [0, 1, 2, 3, 4]
    for key, counts in by.items():
        expected = list(range(1, rows // 5 + 1))
        if mode == "exactly_once":
            assert len(counts) == len(expected), f"key {key}: {len(counts) - len(expected)} rows too many"
            assert sorted(counts) == expected, f"key {key}: duplicates or gaps"
        else:
            # replayed records are counted again (at-least-once): counts may go past N, none is missing
            assert set(expected) <= set(counts), f"key {key}: rows lost"


def test_a_killed_jobmanager_resumes_its_jobs_from_their_last_checkpoints(cluster: Cluster, tmp_path: Path) -> None:
    rows = 600_000
    ha = ["-D", f"high-availability.storageDir={tmp_path / 'ha'}"]
    jm = cluster.jobmanager(*ha)
    cluster.taskmanager(1)
    cluster.taskmanager(1)
    job = cluster.submit(_pipeline(tmp_path, rows, rows // 10, "exactly_once"), base_dir=str(tmp_path))
    cluster.wait_state(job, "RUNNING")
    wait_for(lambda: _completed(cluster, job) >= 2, 30, "two checkpoints", cluster.logs)
    assert (tmp_path / "ha" / "jobs" / job / "checkpoint").exists()
    jm.kill(signal.SIGKILL)
    jm.popen.wait(10)
    cluster.jobmanager(*ha)  # same ports and recovery directory; the TaskManagers reconnect by themselves
    info = cluster.wait_state(job, "FINISHED", "FAILED", "CANCELED", timeout=120)
    assert info["state"] == "FINISHED", cluster.logs()
    assert cluster.get(f"/jobs/{job}/checkpoints")["counts"]["restored"] == 1
    by = _committed(tmp_path / "out")
    for key in range(5):
        assert sorted(by[key]) == list(range(1, rows // 5 + 1)), f"key {key}: duplicates or gaps"
    # a job that reached a terminal state is no longer in the recovery metadata
    wait_for(lambda: not (tmp_path / "ha" / "jobs" / job).exists(), 10, "the job's recovery metadata to go")


def test_savepoint_stop_and_resume_at_another_parallelism_with_the_cli(cluster: Cluster, tmp_path: Path) -> None:
    rows = 200_000
    cluster.jobmanager()
    cluster.taskmanager(2)
    cluster.taskmanager(2)
    (tmp_path / "p.yaml").write_text(_pipeline(tmp_path, rows, rows // 8, "exactly_once"))
    r = cluster.cli("submit", "p.yaml", "-m", f"127.0.0.1:{cluster.rest_port}")
    assert r.returncode == 0, r.stderr
    job = r.stdout.split()[-1]
    wait_for(lambda: _completed(cluster, job) >= 1, 30, "a checkpoint", cluster.logs)
    r = cluster.cli("savepoint", job, str(tmp_path / "sp"), "-m", f"127.0.0.1:{cluster.rest_port}")
    assert r.returncode == 0, r.stderr
    first = r.stdout.strip().rsplit(" ", 1)[-1]
    assert (Path(first) / "_metadata").exists() and cluster.job(job)["state"] == "RUNNING"
    r = cluster.cli("stop", job, "--savepoint-dir", str(tmp_path / "sp"), "-m", f"127.0.0.1:{cluster.rest_port}")
    assert r.returncode == 0, r.stderr
    location = r.stdout.strip().rsplit(" ", 1)[-1]
    assert cluster.wait_state(job, "FINISHED")["state"] == "FINISHED"
    partial = sum(len(v) for v in _committed(tmp_path / "out").values())
    assert 0 < partial < rows
    r = cluster.cli("submit", "p.yaml", "-p", "3", "--from-savepoint", location, "-m", f"127.0.0.1:{cluster.rest_port}")
    assert r.returncode == 0, r.stderr
    resumed = r.stdout.split()[-1]
    info = cluster.wait_state(resumed, "FINISHED", "FAILED", timeout=60)
    assert info["state"] == "FINISHED", cluster.logs()
    assert {v["parallelism"] for v in info["vertices"]} == {3}
    assert cluster.get(f"/jobs/{resumed}/checkpoints")["latest"]["restored"]["external_path"] == location
    by = _committed(tmp_path / "out")
    for key in range(5):
        assert sorted(by[key]) == list(range(1, rows // 5 + 1)), f"key {key}: duplicates or gaps"
