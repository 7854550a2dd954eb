"""An in-process cluster: a JobManagerProcess and N TaskManagerProcesses on one event loop.

The same services as ``streamlet jobmanager`` / ``streamlet taskmanager`` (RPC, REST, data
endpoints on loopback sockets with free ports), without starting OS processes: the middle tier of
"prove distribution in process, then with processes".

Example::

    async with InProcessCluster(taskmanagers=2, slots=2) as cluster:
        job_id = await cluster.submit_graph(graph)
        info = await cluster.wait(job_id)
        assert info.state == "FINISHED"
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamlet import config as cfg
from streamlet.graph.job_graph import JobGraph
from streamlet.rest.schemas import JobInfo, JobSubmission
from streamlet.runtime.jobmanager.dispatcher import Dispatcher
from streamlet.runtime.jobmanager.process import JobManagerProcess
from streamlet.runtime.taskmanager.process import TaskManagerProcess

TERMINAL = ("FINISHED", "FAILED", "CANCELED", "SUSPENDED")


class InProcessCluster:
    """Start with ``async with``; everything is stopped (in reverse) on exit, also after a failure."""

    def __init__(self, taskmanagers: int = 2, slots: int = 2, **overrides: Any) -> None:
        base = {"rest.port": 0, "jobmanager.rpc.port": 0, "heartbeat.interval": "200ms", "heartbeat.timeout": "2s",
                "taskmanager.registration.max-backoff": "200ms", "taskmanager.metrics.interval": "200ms",
                "log.level": "WARNING"}
        self.config = cfg.load(overrides={**base, **overrides}, env={})
        self.n = taskmanagers
        self.slots = slots
        self.jobmanager = JobManagerProcess(self.config)
        self.taskmanagers: list[TaskManagerProcess] = []
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def dispatcher(self) -> Dispatcher:
        assert self.jobmanager.dispatcher is not None
        return self.jobmanager.dispatcher

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.jobmanager.rest_port}"

    async def __aenter__(self) -> InProcessCluster:
        self._tasks.append(asyncio.create_task(self.jobmanager.run(), name="jobmanager"))
        await _first(self.jobmanager.ready.wait(), self._tasks[0], 10)
        for _ in range(self.n):
            tm = TaskManagerProcess(self.config, f"127.0.0.1:{self.jobmanager.rpc_port}", self.slots)
            self.taskmanagers.append(tm)
            task = asyncio.create_task(tm.run(), name=f"taskmanager {tm.id}")
            self._tasks.append(task)
            await _first(tm.registered.wait(), task, 10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for tm in reversed(self.taskmanagers):
            tm.stop()
        self.jobmanager.stop()
        errors = [r for r in await asyncio.gather(*self._tasks, return_exceptions=True) if isinstance(r, Exception)]
        if errors and exc[0] is None:
            raise errors[0]

    async def submit_graph(self, graph: JobGraph) -> str:
        return await self.dispatcher.submit(JobSubmission(job_graph=graph.to_json()))

    async def submit_yaml(self, text: str, base_dir: str | None = None, **kwargs: Any) -> str:
        return await self.dispatcher.submit(JobSubmission(pipeline_yaml=text, base_dir=base_dir, **kwargs))

    async def wait(self, job_id: str, timeout: float = 30.0, states: tuple[str, ...] = TERMINAL) -> JobInfo:
        """The job's info once it reached one of ``states`` (polls; raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while True:
                info = self.dispatcher.job(job_id)
                if info.state in states:
                    return info
                await asyncio.sleep(0.02)

    async def wait_free_slots(self, slots: int, timeout: float = 30.0) -> None:
        """Return once ``slots`` slots are free (a finished job's slots come back after the release
        round trip to its taskmanagers; polls; raises TimeoutError)."""
        async with asyncio.timeout(timeout):
            while self.dispatcher.overview().slots_available != slots:
                await asyncio.sleep(0.02)


async def _first(waiter: Any, task: asyncio.Task[None], timeout: float) -> None:
    """Wait for ``waiter``; raise what ``task`` raised if it ended first."""
    w = asyncio.ensure_future(waiter)
    try:
        done, _ = await asyncio.wait({w, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        w.cancel()
    if task in done:
        task.result()
        raise RuntimeError(f"{task.get_name()} stopped while starting")
    if w not in done:
        raise TimeoutError(f"{task.get_name()} did not start within {timeout:g}s")
