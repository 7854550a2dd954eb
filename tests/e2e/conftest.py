"""Real ``streamlet jobmanager`` / ``streamlet taskmanager`` processes on 127.0.0.1.

Every process gets its own process group and free ports; the ``cluster`` fixture kills every
group it started (SIGTERM, then SIGKILL) even when the test failed.  Waiting is always polling
with a deadline, never a fixed sleep.  Processes started with ``test_connectors=True`` run
through ``launch.py``, which registers the test connectors (``slow`` sink, ``endless`` source)
and then runs the same CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from streamlet.runtime.minicluster import free_port

REPO = Path(__file__).resolve().parents[2]
LAUNCH = Path(__file__).with_name("launch.py")
#: fast failure detection and registration retries, so the suite stays quick
FAST = ["-D", "heartbeat.interval=200ms", "-D", "heartbeat.timeout=2s",
        "-D", "taskmanager.registration.max-backoff=300ms", "-D", "taskmanager.metrics.interval=250ms",
        "-D", "taskmanager.cancel.timeout=3s"]


@dataclass
class Proc:
    """One started process and its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass


def wait_for(cond: Callable[[], Any], timeout: float, what: str, logs: Callable[[], str] = lambda: "") -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` and the logs after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})\n{logs()}")


class Cluster:
    """Starts processes and talks to the JobManager's REST API."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.rest_port = free_port()
        self.rpc_port = free_port()
        self.token: str | None = None
        #: set when the JobManager serves HTTPS: verifies it (its CA)
        self.ssl_context: Any = None
        #: extra ``-D`` options given to every process
        self.common: list[str] = []
        #: put ``token`` on the processes' command lines (off when they read it from a file)
        self.pass_token = True

    # -- processes --------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str], test_connectors: bool = False,
              env: dict[str, str] | None = None, stdout_pipe: bool = False) -> Proc:
        """Start a process logging to ``<name>.log``; ``stdout_pipe``: its stdout is a pipe nobody
        reads (``Proc.popen.stdout``), stderr still goes to the log."""
        log = self.tmp / f"{name}.log"
        cmd = [sys.executable, str(LAUNCH)] if test_connectors else [sys.executable, "-m", "streamlet"]
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        full_env.pop("STREAMLET_TOKEN", None)
        with open(log, "wb") as fh:
            popen = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE if stdout_pipe else fh,
                                     stderr=fh if stdout_pipe else subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.tmp, env=full_env, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def jobmanager(self, *extra: str, test_connectors: bool = False) -> Proc:
        args = ["jobmanager", "-D", f"rest.port={self.rest_port}", "-D", f"jobmanager.rpc.port={self.rpc_port}",
                "-D", f"web.upload.dir={self.tmp}", *FAST, *self.common, *extra]
        if self.token and self.pass_token:
            args += ["-D", f"security.auth.token={self.token}"]
        proc = self.spawn("jobmanager", args, test_connectors)
        wait_for(lambda: self.get("/overview"), 15, "the jobmanager's REST API", self.logs)
        return proc

    def taskmanager(self, slots: int = 1, *extra: str, token: str | None = None, wait: bool = True,
                    test_connectors: bool = False, stdout_pipe: bool = False) -> Proc:
        before = self.get("/overview")["taskmanagers"] if wait else 0
        # job files go under the test's directory: a SIGKILLed TaskManager cannot remove its own
        args = ["taskmanager", "--jobmanager", f"127.0.0.1:{self.rpc_port}", "--slots", str(slots),
                "-D", f"taskmanager.tmp.dir={self.tmp}", *FAST, *self.common, *extra]
        tok = token if token is not None else self.token
        if tok and (self.pass_token or token is not None):
            args += ["-D", f"security.auth.token={tok}"]
        n = sum(1 for p in self.procs if p.name.startswith("taskmanager"))
        proc = self.spawn(f"taskmanager-{n}", args, test_connectors, stdout_pipe=stdout_pipe)
        if wait:
            wait_for(lambda: self.get("/overview")["taskmanagers"] > before, 15, "the taskmanager to register",
                     self.logs)
        return proc

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a client verb of ``streamlet`` against this cluster's REST API."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if self.token:
            env["STREAMLET_TOKEN"] = self.token
        return subprocess.run([sys.executable, "-m", "streamlet", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=self.tmp, env=env)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (exit {p.popen.poll()}) ---\n{p.text()[-3000:]}" for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                p.kill(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill(signal.SIGKILL)
                p.popen.wait(5)
            if p.popen.stdout is not None:
                p.popen.stdout.close()

    # -- REST -------------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                token: str | None = None, auth: bool = True) -> tuple[int, Any]:
        scheme = "https" if self.ssl_context is not None else "http"
        req = urllib.request.Request(f"{scheme}://127.0.0.1:{self.rest_port}{path}", data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        tok = token if token is not None else self.token
        if auth and tok:
            req.add_header("Authorization", f"Bearer {tok}")
        try:
            with urllib.request.urlopen(req, timeout=10, context=self.ssl_context) as resp:
                data = resp.read()
                return resp.status, json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            data = exc.read()
            try:
                return exc.code, json.loads(data)
            except ValueError:
                return exc.code, data.decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        assert status == 200, (status, body)
        return body

    def submit(self, yaml_text: str, **query: Any) -> str:
        qs = "&".join(f"{k.replace('_', '-')}={v}" for k, v in query.items())
        status, body = self.request("POST", "/jobs" + (f"?{qs}" if qs else ""), yaml_text.encode(),
                                    "application/x-yaml")
        assert status == 202, (status, body)
        return body["jid"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/jobs/{job_id}")

    def wait_state(self, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: (d := self.job(job_id))["state"] in states and d, timeout,
                        f"job {job_id} to reach {states}", self.logs)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def read_outputs(directory: Path) -> list[str]:
    """Every line of every part file under ``directory``, sorted."""
    lines: list[str] = []
    for f in sorted(directory.glob("part-*")):
        lines.extend(ln for ln in f.read_text().splitlines() if ln)
    return sorted(lines)
