"""MiniCluster: the JobManager services and TaskManagers of ``streamlet run``, in this process.

As Flink's MiniCluster, it runs the real services, not a second executor:

* the JobManager's ResourceManager, Dispatcher and a JobMaster per job
  (:class:`~streamlet.runtime.jobmanager.process.JobManagerProcess`, with its RPC server only when
  TaskManager processes connect, and its REST API only when asked for: ``--rest-port``);
* with ``taskmanagers=0`` one TaskManager in this process (a TaskExecutor with as many slots as
  the job needs), wired to the JobManager by in-process gateways: no socket at all;
* with ``taskmanagers=N``, N ``streamlet taskmanager`` OS processes that register over RPC on
  loopback and exchange data over their own data endpoints.

A job is submitted through the Dispatcher (:meth:`MiniCluster.submit`) and watched through it
(:meth:`MiniCluster.wait`); the REST API, when served, shows the same job.  :func:`execute` is
the whole of ``streamlet run``: start, submit, report progress, stop, return how the job ended.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from streamlet.client.results import JobResult, Progress, progress_from_details, result_from_details
from streamlet.clock import Clock, SystemClock
from streamlet.config import Configuration, render_yaml
from streamlet.errors import JobFailedError, StreamletError
from streamlet.graph.job_graph import JobGraph
from streamlet.ids import new_id
from streamlet.lifecycle import Lifecycle
from streamlet.rest.schemas import JobInfo
from streamlet.rpc.messages import RegisterTaskManager
from streamlet.runtime.eventloop import gc_threshold, new_event_loop
from streamlet.runtime.jobmanager.dispatcher import Dispatcher
from streamlet.runtime.jobmanager.gateway import LocalJobManagerGateway
from streamlet.runtime.jobmanager.process import JobManagerProcess
from streamlet.runtime.taskmanager.executor import (
    LocalOnlyNetwork, TaskExecutor, state_options, task_config, watchdog_timeout,
)
from streamlet.runtime.taskmanager.gateway import LocalTaskManagerGateway
from streamlet.runtime.taskmanager.session import JobManagerSession
from streamlet.runtime.taskmanager.slots import SlotTable

logger = logging.getLogger(__name__)

_TERMINAL = ("FINISHED", "FAILED", "CANCELED", "SUSPENDED")


class MiniCluster:
    """See the module docstring.  Use as ``async with MiniCluster(config, slots=n) as cluster``."""

    def __init__(self, config: Configuration, taskmanagers: int = 0, slots: int = 1, clock: Clock | None = None,
                 console: Any = None, rest: bool = False) -> None:
        overrides: dict[str, Any] = {}
        if taskmanagers:
            # TaskManager processes reach this process on loopback, on a port the OS picks
            overrides.update({"jobmanager.rpc.address": "127.0.0.1", "jobmanager.rpc.port": 0})
        self.config = config.with_overrides(overrides) if overrides else config
        self.taskmanagers = taskmanagers
        self.slots = max(1, slots)
        self.clock = clock or SystemClock()
        self.console = console
        self.jobmanager = JobManagerProcess(self.config, self.clock, serve_rpc=taskmanagers > 0, serve_rest=rest)
        self._lc = Lifecycle("minicluster")
        self._stopping = asyncio.Event()
        self._tm_registered = asyncio.Event()
        self._processes: _Processes | None = None
        #: the in-process TaskManager's executor (``taskmanagers=0``), for diagnostics and tests
        self.task_executor: TaskExecutor | None = None

    @property
    def dispatcher(self) -> Dispatcher:
        assert self.jobmanager.dispatcher is not None, "start the MiniCluster first"
        return self.jobmanager.dispatcher

    @property
    def rest_port(self) -> int | None:
        return self.jobmanager.rest_port

    async def __aenter__(self) -> MiniCluster:
        try:
            await self.start()
        except BaseException:
            await self._lc.aclose(raise_errors=False)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stopping.set()
        await self._lc.aclose(raise_errors=exc[0] is None)

    async def start(self) -> None:
        """Start the JobManager services, then the TaskManager(s); returns once they registered."""
        jm = self.jobmanager
        task = self._lc.spawn(jm.run(), "jobmanager", stop=jm.stop)
        await _first(jm.ready.wait(), task, "the jobmanager services")
        if self.taskmanagers == 0:
            tm = self._lc.spawn(self._in_process_taskmanager(), "taskmanager")
            await _first(self._tm_registered.wait(), tm, "the in-process taskmanager")
        else:
            await self._start_processes()

    async def _in_process_taskmanager(self) -> None:
        """One TaskManager in this process, registered through in-process gateways."""
        conf = self.config
        tm_id = new_id()
        job_root = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="streamlet-run-", dir=conf["taskmanager.tmp.dir"]))
        executor = self.task_executor = TaskExecutor(
            tm_id, SlotTable(self.slots), LocalOnlyNetwork(), self.clock, job_root,
            conf["taskmanager.network.queue-capacity"], task_config(conf), self.console,
            state_options(conf), storage_config=conf, watchdog_timeout=watchdog_timeout(conf))
        rm = self.jobmanager.resource_manager
        assert rm is not None
        # one process: its GET /metrics shows this TaskManager's metrics beside the JobManager's
        self.dispatcher.metric_roots.append(executor.metrics)
        gateway = LocalJobManagerGateway(rm, self.dispatcher, LocalTaskManagerGateway(executor))
        resources = {"hostname": socket.gethostname(), "pid": os.getpid(), "cpu_cores": os.cpu_count() or 1,
                     "slots": self.slots, "in_process": True}
        session = JobManagerSession(gateway, executor, RegisterTaskManager(tm_id, self.slots, "local", resources),
                                    self.clock, conf["taskmanager.metrics.interval"], name="the in-process jobmanager")
        try:
            async with asyncio.TaskGroup() as tg:
                executor.bind(tg)
                try:
                    if await session.register() is None:
                        raise StreamletError(session.refusal or "the in-process taskmanager could not register")
                    self._tm_registered.set()
                    await session.run(self._stopping.wait())
                finally:
                    await executor.reset()
                    gateway.disconnect()
        finally:
            executor.unbind()
            await asyncio.to_thread(shutil.rmtree, job_root, True)

    async def _start_processes(self) -> None:
        conf = self.config
        log_dir = await asyncio.to_thread(tempfile.mkdtemp, prefix="streamlet-cluster-")
        procs = self._processes = _Processes(log_dir)
        self._lc.on_stop("taskmanager processes", lambda: asyncio.to_thread(procs.stop))
        conf_file = os.path.join(log_dir, "streamlet.yaml")

        def write_config() -> None:
            with open(os.open(conf_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as fh:  # may hold the token
                fh.write(render_yaml(conf))

        await asyncio.to_thread(write_config)
        address = f"127.0.0.1:{self.jobmanager.rpc_port}"
        for i in range(self.taskmanagers):
            await asyncio.to_thread(procs.start, f"taskmanager-{i}", [
                "taskmanager", "--config", conf_file, "-D", "log.level=WARNING", "--jobmanager", address,
                "--slots", str(self.slots), "-D", "taskmanager.data.address=127.0.0.1",
                "-D", "metrics.port=0"])
        rm = self.jobmanager.resource_manager
        assert rm is not None
        deadline = self.clock.monotonic() + 60.0
        while len(rm.task_manager_ids()) < self.taskmanagers:
            procs.check_alive()
            if self.clock.monotonic() > deadline:
                raise StreamletError(f"timed out after 60s waiting for {self.taskmanagers} taskmanager(s) to "
                                     f"register (logs in {log_dir})")
            await self.clock.sleep(0.05)

    @property
    def log_dir(self) -> str | None:
        """Where the TaskManager processes log (None without processes)."""
        return self._processes.log_dir if self._processes is not None else None

    async def submit(self, graph: JobGraph, savepoint_path: str | None = None,
                     allow_non_restored_state: bool = False) -> str:
        """Start ``graph`` as a job (restored from ``savepoint_path`` when given); returns its id."""
        return await self.dispatcher.submit_graph(graph, savepoint_path, allow_non_restored_state)

    async def wait(self, job_id: str, on_progress: Callable[[JobInfo], None] | None = None,
                   interval: float = 5.0) -> JobInfo:
        """The job's info once it ended; ``on_progress`` is called every ``interval`` seconds meanwhile."""
        if on_progress is None:
            return await self.dispatcher.wait_terminal(job_id)
        done = asyncio.ensure_future(self.dispatcher.wait_terminal(job_id))
        try:
            while True:
                sleeper = asyncio.ensure_future(self.clock.sleep(interval))
                try:
                    await asyncio.wait({done, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                if done.done():
                    return done.result()
                if self._processes is not None:
                    self._processes.check_alive()
                on_progress(self.dispatcher.job(job_id))
        finally:
            if not done.done():
                done.cancel()

    def cancel(self, job_id: str) -> None:
        self.dispatcher.cancel(job_id)


async def _first(waiter: Any, task: asyncio.Task[Any], what: str, timeout: float = 60.0) -> None:
    """Wait for ``waiter``; raise what ``task`` raised if it ended first."""
    w = asyncio.ensure_future(waiter)
    try:
        done, _ = await asyncio.wait({w, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        w.cancel()
    if task in done:
        task.result()
        raise StreamletError(f"{what} stopped while starting")
    if w not in done:
        raise StreamletError(f"{what} did not start within {timeout:g}s")


# -- streamlet run -------------------------------------------------------------------------------


async def execute_async(graph: JobGraph, config: Configuration, taskmanagers: int = 0,
                        on_progress: Callable[[Progress], None] | None = None, progress_interval: float | None = None,
                        console: Any = None, rest: bool = False,
                        on_started: Callable[[MiniCluster, str], None] | None = None,
                        savepoint_path: str | None = None, allow_non_restored_state: bool = False) -> JobResult:
    """Run ``graph`` on a fresh MiniCluster until it ends; never raises for a job that failed.

    ``progress_interval`` defaults to ``execution.progress-interval``; ``rest`` serves the REST API
    on ``rest.port`` meanwhile; ``on_started(cluster, job_id)`` is called once the job is submitted;
    ``savepoint_path`` restores the job from a savepoint or retained checkpoint.
    A cancellation (Ctrl-C) cancels the job before the cluster stops.
    """
    t0 = time.perf_counter()
    interval = progress_interval if progress_interval is not None else config["execution.progress-interval"]
    slots = graph.max_vertex_parallelism if not taskmanagers else max(1, math.ceil(graph.max_vertex_parallelism
                                                                                   / taskmanagers))
    if on_progress is not None and interval < config["taskmanager.metrics.interval"]:
        config = config.with_overrides({"taskmanager.metrics.interval": f"{int(interval * 1000)}ms"})
    async with MiniCluster(config, taskmanagers, slots, console=console, rest=rest) as cluster:
        job_id = await cluster.submit(graph, savepoint_path, allow_non_restored_state)
        if on_started is not None:
            on_started(cluster, job_id)

        def report(info: JobInfo) -> None:
            if on_progress is not None:
                on_progress(progress_from_details(info.to_details_json(), time.perf_counter() - t0))

        try:
            info = await cluster.wait(job_id, report if on_progress is not None else None, interval)
        except asyncio.CancelledError:
            cluster.cancel(job_id)
            with_timeout = asyncio.ensure_future(cluster.dispatcher.wait_terminal(job_id))
            try:
                await asyncio.wait_for(asyncio.shield(with_timeout), 10.0)
            except (TimeoutError, asyncio.CancelledError):
                pass
            raise
        details = info.to_details_json()
        error: BaseException | None = None
        if details["state"] == "FAILED":
            root = cluster.dispatcher.job_exceptions(job_id).to_json().get("root-exception") or "unknown cause"
            where = f" (taskmanager logs in {cluster.log_dir})" if cluster.log_dir else ""
            error = JobFailedError(f"{root}{where}")
        elif details["state"] != "FINISHED":
            error = JobFailedError(f"the job ended {details['state']}")
        result = result_from_details(details, error)
        if cluster._processes is not None and result.state == "FINISHED":
            cluster._processes.keep_logs = False
    if on_progress is not None and result.progress is not None:
        on_progress(result.progress)
    return result


def execute(graph: JobGraph, config: Configuration, **kwargs: Any) -> JobResult:
    """:func:`execute_async` on a fresh uvloop event loop (the ``streamlet run`` entry)."""
    with gc_threshold(config["process.gc.young-threshold"]), asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(execute_async(graph, config, **kwargs))


#: ports free_port handed out in this process (the kernel may offer a closed one again at once)
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (another process may still take it before it is bound),
    never one this process was given before: two calls in a row (a REST and an RPC port) cannot
    get the same port, which made a jobmanager fail to bind its second one."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            if len(_HANDED_OUT) > 20000:
                _HANDED_OUT.clear()
            _HANDED_OUT.add(port)
            return port
    return port


class _Processes:
    """TaskManager child processes; :meth:`stop` ends them all (TERM, then KILL). Blocking: use threads."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.procs: list[tuple[str, Any]] = []
        #: keep the logs after :meth:`stop` (a job failed: the error message points at them)
        self.keep_logs = True

    def start(self, name: str, args: list[str]) -> Any:
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
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise StreamletError(f"the {name} process exited with status {proc.returncode}: {self.tail(name)}")

    def tail(self, name: str, lines: int = 5) -> str:
        try:
            with open(os.path.join(self.log_dir, f"{name}.log"), "rb") as fh:
                text = fh.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if not self.keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)
