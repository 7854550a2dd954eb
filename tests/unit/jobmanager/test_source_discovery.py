"""The source coordinator's discovery of new splits while a job runs (a file source with ``watch``):
the JobMaster hands each new file once, round-robin, to a running subtask through its
TaskManager's gateway; after a restore, the restored split states are what it knows."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from streamlet.clock import ManualClock
from streamlet.connectors.files import FileSource
from streamlet.graph.job_graph import FORWARD, JobEdge, JobGraph, JobVertex
from streamlet.graph.operators import SinkSpec, SourceSpec
from streamlet.rpc.errors import RpcError
from streamlet.runtime.jobmanager.job_master import JobMaster, JobMasterConfig
from streamlet.runtime.jobmanager.job_status import JobStatus
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.runtime.jobmanager.source_coordinator import SourceCoordinator
from tests.unit.jobmanager.helpers import register, report, until

SRC = "a" * 32


def _graph(inbox: Path, parallelism: int = 2) -> JobGraph:
    params = FileSource.validate({"path": str(inbox), "watch": "1s", "format": "jsonl"}, "t: sources.src",
                                 str(inbox))
    src = JobVertex(SRC, "src", parallelism, (SourceSpec("src", "file", params),))
    snk = JobVertex("b" * 32, "out", parallelism, (SinkSpec("out", "blackhole", {}),))
    return JobGraph("watch-job", (src, snk), (JobEdge(src.id, snk.id, FORWARD, None),))


def _drop(inbox: Path, name: str, n: int = 3) -> str:
    tmp = inbox / f".{name}"
    tmp.write_bytes(b"".join(orjson.dumps({"i": i}) + b"\n" for i in range(n)))
    return str(tmp.rename(inbox / name))


def _sleeping_until(clock: ManualClock, t: float) -> bool:
    """A sleeper of the clock is due at ``t`` (the discovery loop's next wake-up)."""
    return any(abs(deadline - t) < 1e-9 for deadline, _ in clock._sleepers)


def _run(inbox: Path, body: Any) -> None:
    async def main() -> None:
        clock = ManualClock()
        rm = ResourceManager(clock, 1.0, 5.0)
        jm = JobMaster("f" * 32, _graph(inbox), rm, clock, JobMasterConfig(slot_request_timeout=30.0))
        rm.on_task_manager_lost = jm.on_task_manager_lost
        runner = asyncio.create_task(jm.run())
        try:
            await body(jm, rm, clock)
        finally:
            jm.cancel()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(main())


def test_new_files_go_once_round_robin_to_running_subtasks(tmp_path: Path) -> None:
    first = _drop(tmp_path, "a.jsonl", n=1)  # one line: one split (it cannot be cut for two subtasks)

    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1, t2 = register(rm, 1, "t1"), register(rm, 1, "t2")
        await until(lambda: jm.status is JobStatus.RUNNING and t1.deployments and t2.deployments)
        for state in ("INITIALIZING", "RUNNING"):
            report(jm, "t1", state)
        # the file present at the start went with the deployment
        assert [s["path"] for s in jm.source_coordinators[SRC].splits_for(0)] == [first]
        await until(lambda: _sleeping_until(clock, 1.0))
        await clock.advance(1.0)  # a discovery: nothing new
        await until(lambda: _sleeping_until(clock, 2.0))
        assert t1.added_splits == t2.added_splits == []
        b, c = _drop(tmp_path, "b.jsonl"), _drop(tmp_path, "c.jsonl")
        await clock.advance(1.0)
        await until(lambda: t1.added_splits and t2.added_splits)
        # a.jsonl went to subtask 0 at the start: b to subtask 1 (on t2), c to subtask 0 (on t1)
        assert [(v, i, [s["path"] for s in ss]) for _, v, i, ss in t2.added_splits] == [(SRC, 1, [b])]
        assert [(v, i, [s["path"] for s in ss]) for _, v, i, ss in t1.added_splits] == [(SRC, 0, [c])]
        for _ in range(3):  # later discoveries find nothing again
            now = clock.monotonic()
            await until(lambda: _sleeping_until(clock, now + 1.0))
            await clock.advance(1.0)
        await until(lambda: _sleeping_until(clock, clock.monotonic() + 1.0))
        assert len(t1.added_splits) == len(t2.added_splits) == 1
        assert jm.status is JobStatus.RUNNING

    _run(tmp_path, body)


def test_a_taskmanager_that_does_not_take_its_splits_fails_the_job(tmp_path: Path) -> None:
    _drop(tmp_path, "a.jsonl")

    async def refuse(call: Any) -> None:
        raise RpcError("connection closed")

    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1, t2 = register(rm, 1, "t1"), register(rm, 1, "t2")
        t1.add_splits_hook = t2.add_splits_hook = refuse
        await until(lambda: jm.status is JobStatus.RUNNING and t1.deployments and t2.deployments)
        await until(lambda: _sleeping_until(clock, 1.0))
        _drop(tmp_path, "b.jsonl")
        await clock.advance(1.0)
        await until(lambda: jm.status is JobStatus.FAILING)
        assert "could not hand 1 new split(s) of source 'src'" in jm.exceptions[-1].exception

    _run(tmp_path, body)


def test_after_a_restore_the_restored_split_states_are_what_the_coordinator_knows(tmp_path: Path) -> None:
    a, b = _drop(tmp_path, "a.jsonl"), _drop(tmp_path, "b.jsonl")
    graph = _graph(tmp_path, parallelism=3)
    coordinator = SourceCoordinator(graph.vertices[0])
    # split states as two readers snapshot them: a read to the end, b in the middle
    size_a, size_b = Path(a).stat().st_size, Path(b).stat().st_size
    states = [{"id": f"{a}:0-{size_a}", "path": a, "start": 0, "end": size_a, "header": None, "offset": size_a,
               "done": True},
              {"id": f"{b}:0-{size_b}", "path": b, "start": 0, "end": size_b, "header": None, "offset": 7,
               "done": False}]
    coordinator.restore(states)
    assert asyncio.run(coordinator.discover()) == {}
    c = _drop(tmp_path, "c.jsonl")
    fresh = asyncio.run(coordinator.discover())
    assert {i: [s["path"] for s in ss] for i, ss in fresh.items()} == {2: [c]}  # next after the 2 restored
    assert asyncio.run(coordinator.discover()) == {}
