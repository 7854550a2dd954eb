"""Embedded execution: every subtask of a job in this process, on one event loop.

This is what ``streamlet run`` uses by default: the same JobGraph, deployment descriptors, tasks,
channels and operators as a cluster, with every channel local.  Progress is reported to a
callback every ``execution.progress-interval`` (or faster for a live terminal display).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from streamlet.api.registry import source_class
from streamlet.clock import Clock, SystemClock
from streamlet.errors import FatalError, JobFailedError
from streamlet.graph.execution_graph import TaskDeploymentDescriptor, expand
from streamlet.graph.job_graph import JobGraph
from streamlet.ids import new_id
from streamlet.keys import KeyGroupRange
from streamlet.runtime.taskmanager.network.channels import InputChannel, InputGate, LocalOutputChannel
from streamlet.runtime.taskmanager.task import Task, create_task
from streamlet.state.heap.backend import HeapKeyedStateBackend


@dataclass
class VertexProgress:
    """Progress of one vertex (summed over its subtasks)."""

    id: str
    name: str
    parallelism: int
    records_in: int
    records_out: int
    rate_in: float
    rate_out: float
    fraction: float | None
    busy: float
    idle: float
    backpressured: float
    finished: int


@dataclass
class Progress:
    """A snapshot of a running job."""

    job_name: str
    elapsed: float
    vertices: list[VertexProgress]
    final: bool = False


@dataclass
class JobResult:
    """How a job ended."""

    job_id: str
    job_name: str
    state: str
    startup_seconds: float
    run_seconds: float
    progress: Progress | None = None
    error: BaseException | None = None
    vertices: list[VertexProgress] = field(default_factory=list)


def assign_splits(graph: JobGraph) -> dict[str, list[list[Any]]]:
    """Enumerate each source's splits and give split ``i`` to subtask ``i % parallelism``."""
    out: dict[str, list[list[Any]]] = {}
    for v in graph.vertices:
        if not v.is_source:
            continue
        src = v.operators[0]
        splits = source_class(src.type).enumerate_splits(src.params, v.parallelism)
        per: list[list[Any]] = [[] for _ in range(v.parallelism)]
        for i, s in enumerate(splits):
            per[i % v.parallelism].append(s)
        out[v.id] = per
    return out


class LocalExecutor:
    """Runs one JobGraph to completion in this process."""

    def __init__(self, graph: JobGraph, queue_capacity: int = 4, clock: Clock | None = None,
                 console: Any = None, on_progress: Callable[[Progress], None] | None = None,
                 progress_interval: float = 5.0) -> None:
        self.graph = graph
        self.queue_capacity = queue_capacity
        self.clock = clock or SystemClock()
        self.console = console
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.job_id = new_id()
        self._tasks: list[tuple[TaskDeploymentDescriptor, Task]] = []
        self._last: tuple[float, dict[str, tuple[int, int, float, float]]] | None = None
        self._t0 = 0.0

    def _build(self, splits: dict[str, list[list[Any]]]) -> None:
        tdds = expand(self.graph, self.job_id, splits)
        inputs: dict[str, InputChannel] = {}
        for tdd in tdds:
            for i in tdd.inputs:
                inputs[i.channel_id] = InputChannel(i.channel_id, self.queue_capacity, i.input_index)
        outputs = {cid: LocalOutputChannel(ch) for cid, ch in inputs.items()}
        for tdd in tdds:
            gate = InputGate([inputs[i.channel_id] for i in tdd.inputs]) if tdd.inputs else None
            state = HeapKeyedStateBackend(
                KeyGroupRange.for_subtask(tdd.subtask_index, tdd.parallelism, tdd.max_parallelism),
                tdd.max_parallelism)
            self._tasks.append((tdd, create_task(tdd, gate, outputs, self.clock, state, self.console)))

    async def run(self) -> JobResult:
        """Deploy every subtask, run them, and return how the job ended (never raises on job failure)."""
        t0 = time.perf_counter()
        self._t0 = t0
        try:
            splits = await asyncio.to_thread(assign_splits, self.graph)
            self._build(splits)
        except FatalError as exc:
            return JobResult(self.job_id, self.graph.name, "FAILED", time.perf_counter() - t0, 0.0, error=exc)
        t1 = time.perf_counter()
        state, error = "FINISHED", None
        try:
            async with asyncio.TaskGroup() as tg:
                runs = [tg.create_task(t.run(), name=t.name) for _, t in self._tasks]
                reporter = tg.create_task(self._report(runs)) if self.on_progress else None
                await asyncio.gather(*runs)
                if reporter is not None:
                    reporter.cancel()
        except* asyncio.CancelledError:
            state = "CANCELED"
        except* Exception as group:
            state = "FAILED"
            error = _root_cause(group)
        if state == "CANCELED":
            # a bare ``raise`` in ``except*`` would raise a BaseExceptionGroup; callers (and
            # asyncio.Runner's Ctrl-C handling) expect a plain CancelledError
            raise asyncio.CancelledError
        t2 = time.perf_counter()
        final = self.snapshot(final=True)
        if self.on_progress is not None:
            self.on_progress(final)
        return JobResult(self.job_id, self.graph.name, state, t1 - t0, t2 - t1, final, error, final.vertices)

    async def _report(self, runs: list[asyncio.Task[None]]) -> None:
        assert self.on_progress is not None
        while True:
            await self.clock.sleep(self.progress_interval)
            self.on_progress(self.snapshot())

    def snapshot(self, final: bool = False) -> Progress:
        """Per-vertex counters and rates since the previous snapshot."""
        now = time.perf_counter()
        prev_t, prev = self._last or (self._t0, {})
        dt = max(now - prev_t, 1e-9)
        by_vertex: dict[str, list[Task]] = {}
        for tdd, task in self._tasks:
            by_vertex.setdefault(tdd.vertex_id, []).append(task)
        out: list[VertexProgress] = []
        current: dict[str, tuple[int, int, float, float]] = {}
        for v in self.graph.vertices:
            tasks = by_vertex.get(v.id, [])
            rin = sum(t.metrics.records_in for t in tasks)
            rout = sum(t.metrics.records_out for t in tasks)
            idle = sum(t.metrics.idle for t in tasks)
            bp = sum(t.metrics.backpressured for t in tasks)
            fr = [t.metrics.progress for t in tasks if t.metrics.progress is not None]
            p_in, p_out, p_idle, p_bp = prev.get(v.id, (0, 0, 0.0, 0.0))
            n = max(len(tasks), 1)
            idle_r = min(1.0, (idle - p_idle) / dt / n)
            bp_r = min(1.0, (bp - p_bp) / dt / n)
            out.append(VertexProgress(
                v.id, v.name, v.parallelism, rin, rout, (rin - p_in) / dt, (rout - p_out) / dt,
                sum(fr) / len(fr) if fr and len(fr) == len(tasks) else None,
                max(0.0, 1.0 - idle_r - bp_r), idle_r, bp_r, sum(1 for t in tasks if t.metrics.ended)))
            current[v.id] = (rin, rout, idle, bp)
        self._last = (now, current)
        if final:
            total = now - self._t0
            for vp in out:
                vp.rate_in = vp.records_in / max(total, 1e-9)
                vp.rate_out = vp.records_out / max(total, 1e-9)
        return Progress(self.graph.name, now - self._t0, out, final)


def _root_cause(group: BaseExceptionGroup) -> BaseException:
    """The first real error of a task group (a failing task cancels the rest)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _root_cause(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group


def raise_for(result: JobResult) -> None:
    """Raise :class:`JobFailedError` for a failed result."""
    if result.state == "FAILED":
        raise JobFailedError(f"job {result.job_name!r} failed: {result.error}") from result.error
