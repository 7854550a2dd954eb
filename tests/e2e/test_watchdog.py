"""User code that never returns, or that calls sys.exit(), on a real TaskManager process.

* a map that loops forever holds the TaskManager's event loop; the loop watchdog interrupts it
  within ``task.watchdog.timeout`` (unset: half of ``heartbeat.timeout``), the cancel sent over
  REST completes (CANCELED), and the TaskManager (the same process, the same registration) keeps
  heartbeating and runs the next job;
* a map calling ``sys.exit(3)`` fails its job with a message saying so; the TaskManager lives on.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from tests.e2e.conftest import Cluster, read_outputs, wait_for

#: heartbeats of 4 s here, so the default watchdog timeout (2 s) leaves room on a loaded machine
SLOW_HEARTBEAT = ("-D", "heartbeat.timeout=4s")


def _pipelines(tmp_path: Path) -> None:
    (tmp_path / "udfs").mkdir()
    (tmp_path / "udfs" / "e2e_stuck.py").write_text(textwrap.dedent(f"""
        import sys

        def spin(r):
            open({str(tmp_path / "spinning")!r}, "w").close()  # the test cancels once the loop is held
            n = 0
            while True:      # never returns
                n += 1

        def leave(r):
            sys.exit(3)
    """))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"v": i}) + "\n" for i in range(50)))
    for name, fn in (("stuck", "spin"), ("exits", "leave")):
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(f"""
            name: {name}
            sources: {{src: {{type: file, path: in.jsonl}}}}
            transforms: {{f: {{input: src, map: "e2e_stuck:{fn}"}}}}
            sinks: {{out: {{input: f, type: blackhole}}}}
        """))
    (tmp_path / "next.yaml").write_text(textwrap.dedent("""
        name: next
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {doubled: {input: src, map: "dict(r, v=r['v'] * 2)"}}
        sinks: {out: {input: doubled, type: file, path: next-out}}
    """))


def _submit(cluster: Cluster, tmp_path: Path, name: str) -> str:
    url = f"http://127.0.0.1:{cluster.rest_port}"
    res = cluster.cli("submit", str(tmp_path / f"{name}.yaml"), "-m", url, "-f", str(tmp_path / "udfs" / "e2e_stuck.py"))
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[-1]


def _the_taskmanager(cluster: Cluster) -> dict:
    tms = cluster.get("/taskmanagers")["taskmanagers"]
    assert len(tms) == 1, tms
    return tms[0]


def _runs_the_next_job(cluster: Cluster, tmp_path: Path) -> None:
    job = _submit(cluster, tmp_path, "next")
    cluster.wait_state(job, "FINISHED", timeout=20)
    assert read_outputs(tmp_path / "next-out") == sorted(json.dumps({"v": i * 2}, separators=(",", ":"))
                                                          for i in range(50))


def test_an_endless_user_function_is_cancelled_and_the_taskmanager_heartbeats_on(cluster: Cluster,
                                                                                  tmp_path: Path) -> None:
    _pipelines(tmp_path)
    cluster.jobmanager(*SLOW_HEARTBEAT)
    tm = cluster.taskmanager(1, *SLOW_HEARTBEAT)
    tm_id = _the_taskmanager(cluster)["id"]
    job = _submit(cluster, tmp_path, "stuck")
    cluster.wait_state(job, "RUNNING")
    # RUNNING is reported before the first record reaches the map: cancel only once it spins (a
    # cancel before would end the job without the watchdog)
    wait_for(lambda: (tmp_path / "spinning").exists(), 15, "the user function to start spinning", cluster.logs)
    started = time.monotonic()
    status, body = cluster.request("PATCH", f"/jobs/{job}?mode=cancel")
    assert status == 202, body
    cluster.wait_state(job, "CANCELED", timeout=15)
    took = time.monotonic() - started
    assert took < 4.0 + 2.0, f"cancel took {took:.1f}s"  # within the watchdog's 2 s, well before the 4 s timeout
    assert "held the taskmanager's event loop" in tm.text() and "interrupted by the watchdog" in tm.text()
    # (the job was being cancelled: its exception history holds no failure; the TaskManager's log
    # says where the code was stuck)
    assert "e2e_stuck" in tm.text()
    # the same TaskManager, never lost: still registered under its id, heartbeating, slot free
    info = _the_taskmanager(cluster)
    assert info["id"] == tm_id and tm.popen.poll() is None
    wait_for(lambda: cluster.get("/overview")["slots-available"] == 1, 10, "the slot to be freed", cluster.logs)
    assert "lost" not in cluster.procs[0].text(), "the jobmanager lost the taskmanager"
    assert "lost the jobmanager" not in tm.text()
    _runs_the_next_job(cluster, tmp_path)
    assert _the_taskmanager(cluster)["timeSinceLastHeartbeat"] < 4000


def test_a_user_function_calling_sys_exit_fails_its_job_not_the_taskmanager(cluster: Cluster,
                                                                           tmp_path: Path) -> None:
    _pipelines(tmp_path)
    cluster.jobmanager()
    tm = cluster.taskmanager(1)
    tm_id = _the_taskmanager(cluster)["id"]
    job = _submit(cluster, tmp_path, "exits")
    cluster.wait_state(job, "FAILED", timeout=20)
    exceptions = json.dumps(cluster.get(f"/jobs/{job}/exceptions"))
    assert "SystemExit" in exceptions and "node 'f'" in exceptions
    assert tm.popen.poll() is None and _the_taskmanager(cluster)["id"] == tm_id
    wait_for(lambda: cluster.get("/overview")["slots-available"] == 1, 10, "the slot to be freed", cluster.logs)
    _runs_the_next_job(cluster, tmp_path)
