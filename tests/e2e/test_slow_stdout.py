"""A print sink whose stdout nobody reads: the pipe fills, the print subtask waits (backpressure),
and the TaskManager's event loop does not: its heartbeats keep arriving for longer than the
heartbeat timeout, REST shows it alive, and the job can be cancelled."""

from __future__ import annotations

import time

from tests.e2e.conftest import Cluster, wait_for

ENDLESS_PRINT = """\
name: flood
sources: {g: {type: datagen, fields: {id: {kind: sequence}, pad: {kind: string, length: 200}}}}
sinks: {out: {input: g, type: print}}
"""


def test_a_stalled_stdout_does_not_stop_the_heartbeats(cluster: Cluster) -> None:
    cluster.jobmanager()
    tm = cluster.taskmanager(1, stdout_pipe=True)  # a pipe nobody reads: full after 64 KiB
    job = cluster.submit(ENDLESS_PRINT)
    cluster.wait_state(job, "RUNNING")
    wait_for(lambda: cluster.job(job)["vertices"][0]["metrics"]["read-records"] > 1000, 15,
             "the flood to start", cluster.logs)
    # three heartbeat timeouts (2 s each) with stdout stalled: the taskmanager never goes silent
    deadline = time.monotonic() + 6.0
    worst = 0
    while time.monotonic() < deadline:
        tms = cluster.get("/taskmanagers")["taskmanagers"]
        assert len(tms) == 1, "the taskmanager was declared lost"
        worst = max(worst, tms[0]["timeSinceLastHeartbeat"])
        assert cluster.job(job)["state"] == "RUNNING"
        time.sleep(0.1)  # sampling period of this observation, not a wait for an event
    assert worst < 2000, worst
    status, _ = cluster.request("PATCH", f"/jobs/{job}?mode=cancel")
    assert status == 202
    cluster.wait_state(job, "CANCELED", timeout=15)
    # the release round trip frees the slot: the taskmanager answers while its stdout is stalled
    wait_for(lambda: cluster.get("/overview")["slots-available"] == 1, 10, "the slot to be freed", cluster.logs)
    assert tm.popen.poll() is None
