"""A JobManager and TaskManagers as real processes: registration, submission, scheduling,
failures, back pressure, and output equal to the embedded run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from tests.e2e.conftest import Cluster, read_outputs, wait_for

ENDLESS = """
name: endless
parallelism: {p}
sources:
  gen: {{type: datagen, rate: 2000, fields: {{id: {{kind: sequence}}, k: {{kind: random, min: 1, max: 50}}}}}}
transforms:
  counts: {{input: gen, key_by: k, aggregate: {{n: count}}}}
sinks:
  out: {{input: counts, type: blackhole}}
"""


def keyed_pipeline(directory: Path, out: str, parallelism: int = 4, name: str = "pipeline.yaml") -> Path:
    """A keyed batch job over a generated jsonl file, written next to it; returns the YAML path."""
    data = directory / "events.jsonl"
    if not data.exists():
        rnd = random.Random(7)
        data.write_text("".join(json.dumps({"user": f"u{rnd.randrange(300)}", "v": rnd.randrange(1000)}) + "\n"
                                for _ in range(20000)))
    path = directory / name
    path.write_text(textwrap.dedent(f"""
        name: keyed
        mode: batch
        parallelism: {parallelism}
        sources:
          events: {{type: file, path: events.jsonl}}
        transforms:
          big: {{input: events, filter: "r['v'] % 3 != 0"}}
          per_user: {{input: big, key_by: user, aggregate: {{n: count, total: {{sum: v}}, top: {{max: v}}}}}}
        sinks:
          out: {{input: per_user, type: file, path: {out}}}
    """))
    return path


def test_taskmanager_registers_and_is_listed(cluster: Cluster) -> None:
    cluster.jobmanager()
    cluster.taskmanager(2)
    overview = cluster.get("/overview")
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == 2 and overview["slots-available"] == 2
    assert cluster.get("/v1/overview")["slots-total"] == 2
    tms = cluster.get("/taskmanagers")["taskmanagers"]
    assert len(tms) == 1 and tms[0]["slotsNumber"] == 2 and tms[0]["freeSlots"] == 2
    assert tms[0]["timeSinceLastHeartbeat"] < 2000
    detail = cluster.get(f"/taskmanagers/{tms[0]['id']}")
    assert detail["id"] == tms[0]["id"] and detail["allocatedSlots"] == []


def test_wrong_token_is_refused(cluster: Cluster) -> None:
    cluster.token = "s3cret-token"
    cluster.jobmanager()
    status, body = cluster.request("GET", "/overview", auth=False)
    assert status == 401 and body["errors"]
    status, body = cluster.request("GET", "/v1/jobs", token="wrong")
    assert status == 401 and body["errors"]
    bad = cluster.taskmanager(1, token="not-the-token", wait=False)
    wait_for(lambda: bad.popen.poll() is not None, 15, "the refused taskmanager to exit", cluster.logs)
    assert bad.popen.returncode == 2
    assert "refused" in bad.text() and "not-the-token" not in bad.text()
    assert cluster.get("/overview")["taskmanagers"] == 0
    cluster.taskmanager(1)  # the right token registers
    assert cluster.get("/overview")["taskmanagers"] == 1


def test_taskmanager_started_first_retries_until_the_jobmanager_is_up(cluster: Cluster) -> None:
    tm = cluster.taskmanager(1, wait=False)
    wait_for(lambda: "not reachable yet" in tm.text(), 10, "a failed registration attempt", cluster.logs)
    assert tm.popen.poll() is None
    cluster.jobmanager()
    wait_for(lambda: cluster.get("/overview")["taskmanagers"] == 1, 15, "the early taskmanager to register",
             cluster.logs)


def test_submit_list_status_cancel(cluster: Cluster, tmp_path: Path) -> None:
    cluster.jobmanager()
    cluster.taskmanager(3)
    # REST, YAML body
    rest_job = cluster.submit(ENDLESS.format(p=2))
    d = cluster.wait_state(rest_job, "RUNNING")
    assert d["name"] == "endless" and len(d["vertices"]) == 2
    # CLI submit with a job file: the import path resolves on the jobmanager and the taskmanagers
    (tmp_path / "shipped").mkdir()
    udf = tmp_path / "shipped" / "e2e_udfs.py"
    udf.write_text("def double(r):\n    return {**r, 'v': r['v'] * 2}\n")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"v": i}) + "\n" for i in range(100)))
    pipe = tmp_path / "udf.yaml"
    pipe.write_text(textwrap.dedent("""
        name: with-udf
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {doubled: {input: src, map: "e2e_udfs:double"}}
        sinks: {out: {input: doubled, type: file, path: "${OUT_NAME}"}}
    """))
    url = f"http://127.0.0.1:{cluster.rest_port}"
    res = cluster.cli("submit", str(pipe), "--jobmanager", url, "-f", str(udf))  # the variable is resolved here
    assert res.returncode == 2 and "variable 'OUT_NAME' is not set" in res.stderr
    res = cluster.cli("submit", str(pipe), "--jobmanager", url, "--set", "OUT_NAME=udf-out")
    assert res.returncode == 2 and "cannot import 'e2e_udfs:double'" in res.stderr  # without the file
    assert res.returncode == 2 and "cannot import 'e2e_udfs:double'" in res.stderr
    res = cluster.cli("submit", str(pipe), "-m", url, "--file", str(udf), "--file", str(tmp_path / "nope.py"))
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = cluster.cli("submit", str(pipe), "-m", url, "-f", str(udf), "--set", "OUT_NAME=udf-out")
    assert res.returncode == 0, res.stderr
    cli_job = res.stdout.split()[-1]
    cluster.wait_state(cli_job, "FINISHED")
    assert read_outputs(tmp_path / "udf-out") == sorted(json.dumps({"v": i * 2}, separators=(",", ":"))
                                                         for i in range(100))
    listing = cluster.cli("list", "-m", url)
    assert listing.returncode == 0 and rest_job in listing.stdout and cli_job in listing.stdout
    assert "RUNNING" in listing.stdout and "FINISHED" in listing.stdout
    status = cluster.cli("status", rest_job, "-m", url)
    assert status.returncode == 0 and "RUNNING" in status.stdout
    assert any(line.split()[:3] == ["gen", "2", "RUNNING"] for line in status.stdout.splitlines()), status.stdout
    assert cluster.cli("status", "0" * 32, "-m", url).returncode == 2
    res = cluster.cli("cancel", rest_job, "-m", url)
    assert res.returncode == 0 and f"Cancelled job {rest_job}" in res.stdout
    cluster.wait_state(rest_job, "CANCELED", timeout=15)
    wait_for(lambda: cluster.get("/overview")["slots-available"] == 3, 10, "the slots to be freed", cluster.logs)
    overview = cluster.get("/jobs/overview")["jobs"]
    assert {j["jid"]: j["state"] for j in overview} == {rest_job: "CANCELED", cli_job: "FINISHED"}
    assert all(j["end-time"] > 0 and j["tasks"]["total"] > 0 for j in overview)


def test_job_waits_for_slots_then_runs_when_a_taskmanager_joins(cluster: Cluster, tmp_path: Path) -> None:
    cluster.jobmanager()
    cluster.taskmanager(1)
    job = cluster.submit(ENDLESS.format(p=2))
    d = cluster.wait_state(job, "CREATED")
    d = wait_for(lambda: (j := cluster.job(job))["pending-reason"] and j, 10, "a pending reason")
    assert "waiting for 2 free slot(s)" in d["pending-reason"]
    status, _ = cluster.request("PATCH", f"/jobs/{job}?mode=cancel")  # nothing deployed yet: cancelled at once
    assert status == 202
    assert cluster.job(job)["state"] == "CANCELED"
    job = cluster.submit(ENDLESS.format(p=2))
    cluster.wait_state(job, "CREATED")
    cluster.taskmanager(1)
    d = cluster.wait_state(job, "RUNNING")
    assert d["pending-reason"] is None
    wait_for(lambda: all(v["status"] == "RUNNING" for v in cluster.job(job)["vertices"]), 15, "running subtasks")
    cluster.request("PATCH", f"/jobs/{job}?mode=cancel", b"{}", "application/json")
    cluster.wait_state(job, "CANCELED", timeout=15)


def test_keyed_job_over_two_taskmanagers_equals_the_embedded_run(cluster: Cluster, tmp_path: Path) -> None:
    pipe = keyed_pipeline(tmp_path, "embedded-out")
    res = subprocess.run([sys.executable, "-m", "streamlet", "run", str(pipe)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    expected = read_outputs(tmp_path / "embedded-out")
    assert len(expected) == 300
    cluster.jobmanager()
    cluster.taskmanager(2)
    cluster.taskmanager(2)
    pipe2 = keyed_pipeline(tmp_path, "cluster-out", name="cluster.yaml")
    job = cluster.submit(pipe2.read_text(), base_dir=tmp_path)
    d = cluster.wait_state(job, "FINISHED", "FAILED")
    assert d["state"] == "FINISHED", cluster.get(f"/jobs/{job}/exceptions")
    hosts = {s["host"] for v in d["vertices"] for s in cluster.get(f"/jobs/{job}/vertices/{v['id']}")["subtasks"]}
    assert len(hosts) == 2  # both processes ran subtasks: the shuffle crossed processes
    assert read_outputs(tmp_path / "cluster-out") == expected
    src = d["vertices"][0]["metrics"]
    assert src["read-records"] == 20000 and src["read-records-complete"] is True


def test_sigkill_of_a_taskmanager_fails_the_job_and_frees_its_slots(cluster: Cluster) -> None:
    cluster.jobmanager()
    cluster.taskmanager(2)
    victim = cluster.taskmanager(2)
    job = cluster.submit(ENDLESS.format(p=4))
    cluster.wait_state(job, "RUNNING")
    wait_for(lambda: all(v["status"] == "RUNNING" for v in cluster.job(job)["vertices"]), 15, "running subtasks")
    victim_tm = [t for t in cluster.get("/taskmanagers")["taskmanagers"] if t["freeSlots"] == 0]
    assert len(victim_tm) == 2
    victim.kill(signal.SIGKILL)
    cluster.wait_state(job, "FAILED", timeout=20)
    exc = cluster.get(f"/jobs/{job}/exceptions")
    assert exc["root-exception"] and exc["all-exceptions"]
    # the root cause names the lost process: its data connection broke, or its heartbeats stopped
    assert "lost" in exc["root-exception"]
    wait_for(lambda: cluster.get("/overview")["taskmanagers"] == 1, 10, "the dead taskmanager to be removed",
             cluster.logs)
    overview = cluster.get("/overview")
    assert overview["slots-total"] == 2 and overview["slots-available"] == 2 and overview["jobs-failed"] == 1


def test_bad_rest_input_is_answered_with_4xx_errors(cluster: Cluster) -> None:
    cluster.jobmanager()
    cases = [
        ("POST", "/jobs", b"sources: [unclosed", "application/x-yaml", 400, "malformed YAML"),
        ("POST", "/jobs", b"\xff\xfe\x00binary", "application/octet-stream", 400, "UTF-8"),
        ("POST", "/jobs", b"just a string", "text/plain", 400, "expected a map"),
        ("POST", "/jobs", b"", "application/x-yaml", 400, "empty"),
        ("POST", "/jobs", b"name: x\nsources: {a: {type: kafkaa}}\nsinks: {o: {input: a, type: print}}",
         "application/x-yaml", 400, "unknown source type 'kafkaa'"),
        ("POST", "/jobs", b'{"nope": 1}', "application/json", 400, "job-graph"),
        ("GET", "/jobs/" + "0" * 32, None, None, 404, "not found"),
        ("PATCH", "/jobs/" + "0" * 32 + "?mode=cancel", None, None, 404, "not found"),
        ("GET", "/jobs/" + "0" * 32 + "/exceptions", None, None, 404, "not found"),
        ("DELETE", "/jobs", None, None, 405, "not allowed"),
        ("GET", "/no/such/path", None, None, 404, "not found"),
        ("POST", "/jobs?parallelism=zero", b"name: x", "application/x-yaml", 400, "parallelism"),
    ]
    for method, path, body, ctype, status, text in cases:
        got_status, got = cluster.request(method, path, body, ctype)
        assert got_status == status, (method, path, got_status, got)
        assert isinstance(got, dict) and isinstance(got["errors"], list) and got["errors"], (path, got)
        assert text in " ".join(got["errors"]), (path, got)


def test_slow_sink_backpressures_a_fast_source_on_the_other_taskmanager(cluster: Cluster) -> None:
    cluster.jobmanager(test_connectors=True)
    tms = [cluster.taskmanager(1, test_connectors=True), cluster.taskmanager(1, test_connectors=True)]
    job = cluster.submit(textwrap.dedent("""
        name: backpressure
        batch_size: 100
        sources:
          gen: {type: endless, parallelism: 2}
        sinks:
          out: {input: gen, type: slow, delay: 0.05, parallelism: 1}
    """))
    cluster.wait_state(job, "RUNNING")
    d = cluster.job(job)
    src, sink = d["vertices"][0]["id"], d["vertices"][1]["id"]
    # subtask 1 of the source runs alone on the other taskmanager: its only channel is remote
    wait_for(lambda: cluster.get(f"/jobs/{job}/vertices/{src}/backpressure")["subtasks"][1]["backpressure-level"]
             == "high", 20, "the remote source subtask to be back-pressured", cluster.logs)
    bp = cluster.get(f"/jobs/{job}/vertices/{src}/backpressure")
    assert bp["backpressure-level"] == "high" and bp["subtasks"][1]["ratio"] > 0.5
    sink_bp = cluster.get(f"/jobs/{job}/vertices/{sink}/backpressure")
    assert sink_bp["subtasks"][0]["backpressure-level"] == "ok"
    procs = [psutil.Process(t.popen.pid) for t in tms]
    start = [p.memory_info().rss for p in procs]
    deadline = time.monotonic() + 3
    peak = list(start)
    while time.monotonic() < deadline:
        peak = [max(a, p.memory_info().rss) for a, p in zip(peak, procs)]
        time.sleep(0.1)
    for s, p in zip(start, peak):
        assert p - s < 30 * 1024 * 1024, f"rss grew by {(p - s) >> 20} MiB"
        assert p < 300 * 1024 * 1024
    m = cluster.job(job)["vertices"]
    produced, consumed = m[0]["metrics"]["write-records"], m[1]["metrics"]["read-records"]
    # the slow sink takes ~2,000 records/s; an unthrottled source would be ~100x ahead by now
    assert produced - consumed < 20000, (produced, consumed)
    cluster.request("PATCH", f"/jobs/{job}?mode=cancel")
    cluster.wait_state(job, "CANCELED", timeout=15)


def test_run_with_taskmanagers_gives_the_embedded_output(tmp_path: Path) -> None:
    embedded = keyed_pipeline(tmp_path, "out-embedded", parallelism=2)
    clustered = keyed_pipeline(tmp_path, "out-cluster", parallelism=2, name="cluster.yaml")
    for pipe, extra in ((embedded, []), (clustered, ["--taskmanagers", "2"])):
        res = subprocess.run([sys.executable, "-m", "streamlet", "run", str(pipe), *extra], capture_output=True,
                             text=True, timeout=90, cwd=tmp_path, start_new_session=True)
        assert res.returncode == 0, res.stderr
        assert "FINISHED" in res.stderr
    assert read_outputs(tmp_path / "out-cluster") == read_outputs(tmp_path / "out-embedded")
    assert len(read_outputs(tmp_path / "out-cluster")) == 300


def test_a_killed_taskmanager_is_lost_when_its_connection_closes(cluster: Cluster) -> None:
    cluster.jobmanager()
    victim = cluster.taskmanager(2)
    job = cluster.submit(ENDLESS.format(p=2))  # every subtask on the victim: no data connection notices
    wait_for(lambda: all(v["status"] == "RUNNING" for v in cluster.job(job)["vertices"]), 15, "running subtasks")
    cluster.taskmanager(1)
    victim_id = next(t["id"] for t in cluster.get("/taskmanagers")["taskmanagers"] if t["slotsNumber"] == 2)
    victim.kill(signal.SIGKILL)
    cluster.wait_state(job, "FAILED", timeout=15)
    root = cluster.get(f"/jobs/{job}/exceptions")["root-exception"]
    # the kernel closes a killed process's sockets: no need to wait for the heartbeat timeout
    assert victim_id in root and "rpc connection closed" in root
    overview = cluster.get("/overview")
    assert overview["taskmanagers"] == 1 and overview["slots-total"] == 1 and overview["slots-available"] == 1


def test_start_and_stop_cluster_scripts(tmp_path: Path) -> None:
    import shutil
    import urllib.request

    from streamlet.runtime.minicluster import free_port
    from tests.e2e.conftest import REPO

    root = tmp_path / "dist"
    shutil.copytree(REPO / "scripts", root / "scripts")
    (root / "configs").mkdir()
    shutil.copy(REPO / "configs" / "streamlet.yaml", root / "configs" / "streamlet.yaml")
    (root / "configs" / "workers").write_text("# one TaskManager per line\nlocalhost\nlocalhost\n")
    rest = free_port()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "STREAMLET": f"{sys.executable} -m streamlet"}
    defines = ["-D", f"rest.port={rest}", "-D", f"jobmanager.rpc.port={free_port()}", "-D", "heartbeat.interval=200ms"]
    try:
        res = subprocess.run(["bash", "scripts/start-cluster.sh", "-s", "2", *defines], cwd=root, env=env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert len(list((root / ".run").glob("taskmanager-*.pid"))) == 2

        def overview() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{rest}/overview", timeout=2) as r:
                return json.loads(r.read())

        wait_for(lambda: overview()["slots-total"] == 4, 15, "two taskmanagers with 2 slots each")
    finally:
        res = subprocess.run(["bash", "scripts/stop-cluster.sh"], cwd=root, env=env, capture_output=True, text=True,
                             timeout=60)
    assert res.returncode == 0, res.stderr
    assert "stopped jobmanager" in res.stdout and not list((root / ".run").glob("*.pid"))
