"""Entry points that run a job on this machine: the embedded mini-cluster of ``streamlet run``.

``run_local`` runs every subtask in this process (the default).  uvloop is installed here, at
the process entry, and nowhere in library code.  ``run_cluster`` (``--taskmanagers N``) starts a
JobManager and N TaskManager OS processes on loopback and drives the job over REST.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from streamlet.config import Configuration
from streamlet.graph.job_graph import JobGraph
from streamlet.runtime.jobmanager.job_status import JobStatus
from streamlet.runtime.local import JobResult, LocalExecutor, Progress


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_local(graph: JobGraph, config: Configuration, on_progress: Callable[[Progress], None] | None = None,
              console: Any = None, progress_interval: float | None = None) -> JobResult:
    """Run ``graph`` in this process on a uvloop event loop until it ends."""
    executor = LocalExecutor(
        graph, queue_capacity=config["taskmanager.network.queue-capacity"], console=console,
        on_progress=on_progress,
        progress_interval=progress_interval if progress_interval is not None else config["execution.progress-interval"])
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(executor.run())


# -- run_cluster: a JobManager and N TaskManager OS processes on this machine ----------------------

_TERMINAL = frozenset(s.value for s in JobStatus if s.is_terminal)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (another process may still take it before it is bound)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def progress_from_details(details: dict[str, Any], elapsed: float, final: bool = False) -> Progress:
    """A :class:`Progress` from ``GET /jobs/:id`` (the metrics the TaskManagers reported)."""
    from streamlet.runtime.local import VertexProgress

    vertices = []
    for v in details.get("vertices", []):
        m = v.get("metrics", {})
        vertices.append(VertexProgress(
            v["id"], v["name"], v["parallelism"], int(m.get("read-records", 0)), int(m.get("write-records", 0)),
            float(m.get("read-records-per-second", 0.0)), float(m.get("write-records-per-second", 0.0)),
            m.get("input-progress"), float(m.get("busy-time-ms-per-second", 0.0)) / 1000,
            float(m.get("idle-time-ms-per-second", 0.0)) / 1000,
            float(m.get("backpressured-time-ms-per-second", 0.0)) / 1000, int(v.get("tasks", {}).get("FINISHED", 0))))
    return Progress(details.get("name", ""), elapsed, vertices, final)


class _Processes:
    """The child processes of :func:`run_cluster`; :meth:`stop` ends them all (TERM, then KILL)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, Any]] = []

    def start(self, name: str, args: list[str]) -> Any:
        import os
        import subprocess
        import sys

        log = open(os.path.join(self.log_dir, f"{name}.log"), "wb")  # noqa: SIM115 - closed with the process
        try:
            # stdout is inherited: a print sink on a TaskManager prints to this terminal
            proc = subprocess.Popen([sys.executable, "-m", "streamlet", *args], stdout=None, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        from streamlet.errors import StreamletError

        for name, proc in self.procs:
            if proc.poll() is not None:
                raise StreamletError(f"the {name} process exited with status {proc.returncode}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 5) -> str:
        import os

        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), "rb") as fh:
                text = fh.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        import os
        import signal
        import time as _time

        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = _time.monotonic() + timeout
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.0, deadline - _time.monotonic()))
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: escalate below
                pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


def _wait_for(predicate: Callable[[], bool], procs: _Processes, timeout: float, what: str) -> None:
    import time as _time

    from streamlet.errors import StreamletError

    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        procs.check_alive()
        if predicate():
            return
        _time.sleep(0.05)
    raise StreamletError(f"timed out after {timeout:g}s waiting for {what}")


def run_cluster(graph: JobGraph, config: Configuration, taskmanagers: int,
                on_progress: Callable[[Progress], None] | None = None,
                progress_interval: float | None = None) -> JobResult:
    """Run ``graph`` on a JobManager and ``taskmanagers`` TaskManager processes on this machine.

    1. start ``streamlet jobmanager`` on free loopback ports with this process's configuration;
    2. start the TaskManagers with enough slots together for the job (its largest parallelism);
    3. submit the planned JobGraph over REST, poll ``GET /jobs/:id`` and report progress every
       ``progress_interval`` (default ``execution.progress-interval``) from the metrics the
       TaskManagers report;
    4. when the job ended (or on Ctrl-C, which cancels it), stop every process and return how it
       ended.  Process logs go to a temporary directory, shown in the error of a failed start.
    """
    import math
    import os
    import tempfile
    import time as _time

    from streamlet.client.rest import JobManagerUnreachableError, RestClient, RestError
    from streamlet.config import render_yaml
    from streamlet.errors import JobFailedError

    t0 = _time.perf_counter()
    interval = progress_interval if progress_interval is not None else config["execution.progress-interval"]
    slots = max(1, math.ceil(graph.max_vertex_parallelism / taskmanagers))
    log_dir = tempfile.mkdtemp(prefix="streamlet-cluster-")
    conf_file = os.path.join(log_dir, "streamlet.yaml")
    with open(os.open(conf_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:  # may hold the token
        fh.write(render_yaml(config))
    rest_port, rpc_port = free_port(), free_port()
    common = ["--config", conf_file, "-D", "log.level=WARNING"]
    procs = _Processes(log_dir)
    client = RestClient(f"http://127.0.0.1:{rest_port}", config["security.auth.token"], timeout=10.0)
    job_id = ""
    keep_logs = True

    def up() -> bool:
        try:
            return client.overview()["taskmanagers"] >= taskmanagers
        except (JobManagerUnreachableError, RestError):
            return False

    try:
        procs.start("jobmanager", ["jobmanager", *common, "-D", f"rest.port={rest_port}",
                                   "-D", "rest.address=127.0.0.1", "-D", f"jobmanager.rpc.port={rpc_port}",
                                   "-D", "jobmanager.rpc.address=127.0.0.1"])
        for i in range(taskmanagers):
            procs.start(f"taskmanager-{i}", ["taskmanager", *common, "--jobmanager", f"127.0.0.1:{rpc_port}",
                                             "--slots", str(slots), "-D", "taskmanager.data.address=127.0.0.1"])
        _wait_for(up, procs, 60.0, f"the jobmanager and {taskmanagers} taskmanager(s) to start (logs in {log_dir})")
        job_id = client.submit_graph(graph.to_json())
        t_running: float | None = None
        next_report = _time.perf_counter() + interval
        while True:
            details = client.job(job_id)
            now = _time.perf_counter()
            if t_running is None and details["state"] == "RUNNING":
                t_running = now
            if details["state"] in _TERMINAL:
                break
            if on_progress is not None and now >= next_report:
                on_progress(progress_from_details(details, now - t0))
                next_report = now + interval
            procs.check_alive()
            _time.sleep(0.05)
        t_end = _time.perf_counter()
        t_running = t_running or t_end
        run_seconds = t_end - t_running
        final = progress_from_details(details, t_end - t0, final=True)
        for vp in final.vertices:
            vp.rate_in = vp.records_in / max(run_seconds, 1e-9)
            vp.rate_out = vp.records_out / max(run_seconds, 1e-9)
        if on_progress is not None:
            on_progress(final)
        error: BaseException | None = None
        if details["state"] == "FAILED":
            root = client.exceptions(job_id).get("root-exception") or "unknown cause"
            error = JobFailedError(f"{root} (process logs in {log_dir})")
        keep_logs = details["state"] != "FINISHED"
        return JobResult(job_id, graph.name, details["state"], t_running - t0, run_seconds, final, error,
                         final.vertices)
    except KeyboardInterrupt:
        if job_id:
            try:
                client.cancel(job_id)
            except Exception:  # noqa: BLE001 - the processes are stopped right after anyway
                pass
        raise
    finally:
        procs.stop()
        if not keep_logs:
            import shutil

            shutil.rmtree(log_dir, ignore_errors=True)
