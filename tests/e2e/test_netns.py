"""Multi-host without leaving this machine: the JobManager and two TaskManagers in their own
network namespaces, joined by veth pairs to a bridge (in a namespace of its own), each process
bound to its namespace's address only.  A keyed job runs across the two TaskManagers; then the
link of one TaskManager goes down mid-run.  The JobManager detects the loss by heartbeat timeout
and the job FAILS (restarts come with the state issue); no process hangs: each stops on SIGTERM.

Needs root and iproute2 (``ip netns add``); skipped with the reason otherwise.  Namespaces and
veths are removed even when the test fails.  The addresses (10.199.77.0/24) exist only inside
the namespaces this test makes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.conftest import FAST, REPO, wait_for

NET = "10.199.77"
JM_IP, TM_IPS, HOST_IP = f"{NET}.1", (f"{NET}.2", f"{NET}.3"), f"{NET}.100"
REST, RPC = 18081, 16123

JOB = """\
name: keyed-across-hosts
parallelism: 2
sources: {g: {type: datagen, rate: 2000, fields: {k: {kind: random, min: 1, max: 50}}}}
transforms: {c: {input: g, key_by: k, aggregate: {n: count}}}
sinks: {o: {input: c, type: blackhole}}
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=check)


class Hosts:
    """Namespaces ``<tag>-jm``, ``-tm0``, ``-tm1`` on a bridge in ``<tag>-br``; the test's own
    end of a veth on the bridge gives it ``HOST_IP``."""

    def __init__(self) -> None:
        self.tag = "sl" + secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.host_veth = f"{self.tag}h"

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def create(self) -> None:
        br = self.ns("br")
        self._add_ns(br)
        _ip("-n", br, "link", "add", "br0", "type", "bridge")
        _ip("-n", br, "link", "set", "br0", "up")
        for name, addr in (("jm", JM_IP), ("tm0", TM_IPS[0]), ("tm1", TM_IPS[1])):
            ns = self.ns(name)
            self._add_ns(ns)
            inner, outer = f"{self.tag}{name}i", f"{self.tag}{name}o"
            _ip("link", "add", inner, "type", "veth", "peer", "name", outer)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "netns", br)
            _ip("-n", ns, "link", "set", inner, "name", "eth0")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", br, "link", "set", outer, "master", "br0")
            _ip("-n", br, "link", "set", outer, "up")
        # the test process reaches the JobManager's REST API through its own veth on the bridge
        _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", f"{self.tag}b")
        _ip("link", "set", f"{self.tag}b", "netns", br)
        _ip("-n", br, "link", "set", f"{self.tag}b", "master", "br0")
        _ip("-n", br, "link", "set", f"{self.tag}b", "up")
        _ip("addr", "add", f"{HOST_IP}/24", "dev", self.host_veth)
        _ip("link", "set", self.host_veth, "up")

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, name: str) -> None:
        """Take the link of namespace ``name`` down at the bridge (the cable is pulled)."""
        _ip("-n", self.ns("br"), "link", "set", f"{self.tag}{name}o", "down")

    def destroy(self) -> None:
        _ip("link", "del", self.host_veth, check=False)
        for ns in reversed(self.namespaces):  # deleting a namespace deletes the veth ends in it
            _ip("netns", "del", ns, check=False)
        self.namespaces.clear()


def _can_make_namespaces() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    probe = "slprobe" + secrets.token_hex(3)
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = _can_make_namespaces()
    if reason is not None:
        pytest.skip(reason)
    h = Hosts()
    try:
        h.create()
        yield h
    finally:
        h.destroy()


def _rest(path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(f"http://{JM_IP}:{REST}{path}", method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
        return json.loads(body) if body else None


def test_a_keyed_job_across_namespaces_fails_when_a_link_is_cut(hosts: Hosts, tmp_path: Path) -> None:
    procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def spawn(name: str, *args: str) -> None:
        log = tmp_path / f"{name}.log"
        with open(log, "wb") as fh:
            p = subprocess.Popen(["ip", "netns", "exec", hosts.ns(name), sys.executable, "-m", "streamlet", *args],
                                 stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
        procs.append((name, p, log))

    def logs() -> str:
        return "\n".join(f"--- {n} (exit {p.poll()}) ---\n{log.read_text(errors='replace')[-2000:]}"
                         for n, p, log in procs)

    try:
        spawn("jm", "jobmanager", "-D", f"rest.address={JM_IP}", "-D", f"rest.port={REST}",
              "-D", f"jobmanager.rpc.address={JM_IP}", "-D", f"jobmanager.rpc.port={RPC}", *FAST)
        wait_for(lambda: _rest("/overview"), 20, "the jobmanager in its namespace", logs)
        for i, ip in enumerate(TM_IPS):
            spawn(f"tm{i}", "taskmanager", "--jobmanager", f"{JM_IP}:{RPC}", "--slots", "1",
                  "-D", f"taskmanager.data.address={ip}", "-D", f"taskmanager.tmp.dir={tmp_path}", *FAST)
        wait_for(lambda: _rest("/overview")["taskmanagers"] == 2, 20, "both taskmanagers to register", logs)
        addresses = sorted(t["address"].rsplit(":", 1)[0] for t in _rest("/taskmanagers")["taskmanagers"])
        assert addresses == sorted(TM_IPS)

        req = urllib.request.Request(f"http://{JM_IP}:{REST}/jobs", data=JOB.encode(), method="POST",
                                     headers={"Content-Type": "application/x-yaml"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            job = json.loads(resp.read())["jid"]

        def aggregated() -> bool:
            d = _rest(f"/jobs/{job}")
            return d["state"] == "RUNNING" and d["vertices"][-1]["metrics"]["read-records"] > 500
        wait_for(aggregated, 20, "records to cross between the taskmanagers", logs)
        vertex = _rest(f"/jobs/{job}")["vertices"][-1]["id"]
        hosts_used = {s["host"].rsplit(":", 1)[0] for s in _rest(f"/jobs/{job}/vertices/{vertex}")["subtasks"]}
        assert hosts_used == set(TM_IPS)

        cut_at = time.monotonic()
        hosts.cut("tm1")
        failed = wait_for(lambda: (d := _rest(f"/jobs/{job}"))["state"] == "FAILED" and d, 20,
                          "the job to fail after the link went down", logs)
        detected = time.monotonic() - cut_at
        assert detected < 10, detected  # heartbeat.timeout is 2s (FAST)
        root = _rest(f"/jobs/{job}/exceptions")["root-exception"]
        assert "heartbeat" in root and "lost" in root, root
        assert failed["state"] == "FAILED"
        overview = _rest("/overview")
        assert overview["taskmanagers"] == 1 and overview["slots-available"] == 1, overview
    finally:
        # no process hangs: each stops on SIGTERM within a bound, the cut-off one included
        for _, p, _ in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        hung = []
        for name, p, _ in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung.append(name)
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
    assert not hung, f"{hung} did not stop on SIGTERM within 10s\n{logs()}"
