"""Shared helpers of the JobManager unit tests: tiny graphs and loop settling (no sleeps)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from streamlet.graph.job_graph import FORWARD, HASH, JobEdge, JobGraph, JobVertex
from streamlet.graph.operators import KeySpec, SinkSpec, SourceSpec
from streamlet.rpc.messages import RegisterTaskManager
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.testing.fakes import TestingTaskManagerGateway


def graph(source_p: int = 2, sink_p: int = 2, keyed: bool = True) -> JobGraph:
    """source(p) -> sink(p) with a hash or forward edge."""
    src = JobVertex("a" * 32, "src", source_p, (SourceSpec("src", "datagen", {"fields": {"k": {"kind": "sequence"}}}),))
    snk = JobVertex("b" * 32, "out", sink_p, (SinkSpec("out", "blackhole", {}),))
    edge = JobEdge(src.id, snk.id, HASH if keyed else FORWARD, KeySpec(("k",)) if keyed else None)
    return JobGraph("test-job", (src, snk), (edge,))


def register(rm: ResourceManager, slots: int, tm_id: str | None = None) -> TestingTaskManagerGateway:
    """Register a fake TaskManager with ``slots`` slots; returns its gateway."""
    gw = TestingTaskManagerGateway(tm_id)
    rm.register(RegisterTaskManager(gw.task_manager_id, slots, f"127.0.0.1:{5000 + len(rm.task_manager_ids())}"), gw)
    return gw


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(cond: Callable[[], Any], rounds: int = 200, threads: float = 5.0) -> None:
    """Yield to the loop until ``cond()`` is true; fails after ``rounds`` yields.

    The JobMaster does blocking work in worker threads (split enumeration, graph expansion), which
    no clock can tell: once the loop has nothing to run, it waits for those threads (at most
    ``threads`` seconds in all), never for time to pass on its own.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + threads
    for _ in range(rounds):
        if cond():
            return
        await asyncio.sleep(0)
    while loop.time() < deadline:
        if cond():
            return
        await asyncio.sleep(0.001)  # a worker thread's result arrives via call_soon_threadsafe
    raise AssertionError("condition not reached")


def report(jm: Any, tm: str, state: str, which: Callable[[Any], bool] = lambda ex: True,
           error: str | None = None) -> None:
    """Report ``state`` for the executions ``which`` selects, as the TaskManager ``tm`` would."""
    jm.on_task_states(tm, [{"job_id": jm.job_id, "vertex_id": ex.tdd.vertex_id, "subtask_index": ex.tdd.subtask_index,
                            "attempt_id": ex.attempt_id, "state": state, "error": error, "metrics": None}
                           for ex in jm.executions if which(ex)])
