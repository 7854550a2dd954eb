"""Dispatcher: submissions (YAML with files and base dir, JobGraph JSON), errors, routing, archive."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.errors import PipelineDefinitionError
from streamlet.rest.base import NotFoundError
from streamlet.rest.schemas import JobSubmission
from streamlet.runtime.jobmanager.dispatcher import Dispatcher
from streamlet.runtime.jobmanager.job_status import JobStatus
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from tests.unit.jobmanager.helpers import graph, register, until

YAML = """
name: udf-job
sources: {src: {type: file, path: data/in.jsonl}}
transforms: {m: {input: src, map: "dispatch_udfs_a:f"}}
sinks: {out: {input: m, type: blackhole}}
"""


def run(tmp_path: Path, body: Callable[[Dispatcher, ResourceManager], Awaitable[None]], **overrides: str) -> None:
    async def main() -> None:
        clock = ManualClock()
        rm = ResourceManager(clock, 1.0, 5.0)
        d = Dispatcher(rm, cfg.load(overrides={"jobstore.max-capacity": "2", **overrides}, env={}), clock,
                       tmp_path / "uploads")
        runner = asyncio.create_task(d.run())
        await asyncio.sleep(0)
        try:
            await body(d, rm)
        finally:
            d.stop()
            await asyncio.wait_for(runner, 5)

    asyncio.run(main())


def test_yaml_with_files_resolves_imports_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text('{"x": 1}\n')

    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        files = {"dispatch_udfs_a.py": b"def f(r):\n    return r\n"}
        job_id = await d.submit(JobSubmission(pipeline_yaml=YAML, files=files, base_dir=str(tmp_path),
                                              parallelism=2, filename="p.yaml"))
        assert len(job_id) == 32
        info = d.job(job_id)
        assert info.name == "udf-job" and [v.parallelism for v in info.vertices] == [2]
        assert "dispatch_udfs_a" not in sys.modules  # forgotten after planning
        jm = d._jobs[job_id]
        assert jm.files == files and jm.graph.vertices[0].operators[0].params["path"] == [
            str(tmp_path / "data" / "in.jsonl")]
        await until(lambda: jm.status is not JobStatus.INITIALIZING)
        assert jm.status is JobStatus.CREATED, jm.exceptions
        d.cancel(job_id)
        assert d.job(job_id).state == "CANCELED"
        for _ in range(500):  # the job directory is removed in a thread: real time passes
            if not (tmp_path / "uploads" / job_id).exists():
                break
            await asyncio.sleep(0.01)
        assert not (tmp_path / "uploads" / job_id).exists()

    run(tmp_path, body)


def test_invalid_submissions_raise_pipeline_errors(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"x": 1}\n')

    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        with pytest.raises(PipelineDefinitionError, match="cannot import 'dispatch_udfs_a:f'"):
            await d.submit(JobSubmission(pipeline_yaml=YAML.replace("data/in.jsonl", "in.jsonl"),
                                         base_dir=str(tmp_path)))
        with pytest.raises(PipelineDefinitionError, match="does not exist"):
            await d.submit(JobSubmission(pipeline_yaml=YAML, base_dir=str(tmp_path)))
        with pytest.raises(PipelineDefinitionError, match="malformed YAML"):
            await d.submit(JobSubmission(pipeline_yaml="a: [b"))
        with pytest.raises(PipelineDefinitionError, match="must be an absolute path"):
            await d.submit(JobSubmission(pipeline_yaml=YAML, base_dir="relative/dir"))
        with pytest.raises(PipelineDefinitionError, match="relative path without"):
            await d.submit(JobSubmission(pipeline_yaml=YAML, files={"../evil.py": b""}, base_dir=str(tmp_path)))
        with pytest.raises(PipelineDefinitionError, match="malformed"):
            await d.submit(JobSubmission(job_graph={"name": "x"}))
        assert d.jobs() == [] and not list((tmp_path / "uploads").glob("*"))
        with pytest.raises(NotFoundError):
            d.job("0" * 32)

    run(tmp_path, body)


def test_job_graph_submission_routing_and_archive_cap(tmp_path: Path) -> None:
    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        g = graph(1, 1, keyed=False).to_json()
        ids = [await d.submit(JobSubmission(job_graph=g)) for _ in range(3)]
        tm = register(rm, 1, "t1")
        await until(lambda: len(tm.deployments) == 1)
        jm = d._jobs[ids[0]]
        ex = jm.executions[0]
        for state in ("RUNNING", "FINISHED"):
            d.on_task_states("t1", [{"job_id": ids[0], "vertex_id": e.tdd.vertex_id, "subtask_index": 0,
                                     "attempt_id": e.attempt_id, "state": state} for e in jm.executions])
        assert jm.status is JobStatus.FINISHED and ex.state.value == "FINISHED"
        await until(lambda: len(tm.deployments) == 2)
        d.on_task_manager_lost("t1", "taskmanager t1 lost: test")
        assert d.job(ids[1]).state == "FAILED"
        d.cancel(ids[2])
        assert d.overview().jobs == {"running": 0, "finished": 1, "cancelled": 1, "failed": 1}
        await d.submit(JobSubmission(job_graph=g))  # the archive keeps 2 terminal jobs
        assert ids[0] not in {j.jid for j in d.jobs()} and len(d.jobs()) == 3
        assert d.configuration()["security.auth.token"] is None
        pending = await d.submit(JobSubmission(job_graph=g))
        d.stop()  # the jobmanager shuts down: unfinished jobs end SUSPENDED without waiting
        await until(lambda: d.job(pending).state == "SUSPENDED")

    run(tmp_path, body)


def test_disconnect_fails_the_jobs_but_not_after_shutdown_began(tmp_path: Path) -> None:
    from streamlet.rpc.messages import RegisterTaskManager, RegistrationAck
    from streamlet.testing.fakes import TestingTaskManagerGateway

    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        g = graph(1, 1, keyed=False).to_json()
        acks = {}
        for tm in ("t1", "t2"):
            gw = TestingTaskManagerGateway(tm)
            ack = rm.register(RegisterTaskManager(tm, 1, f"127.0.0.1:{len(acks) + 1}"), gw)
            assert isinstance(ack, RegistrationAck)
            acks[tm] = (ack.registration_id, gw)
        first, second = [await d.submit(JobSubmission(job_graph=g)) for _ in range(2)]
        await until(lambda: all(gw.deployments for _, gw in acks.values()))
        on_t1 = first if d._jobs[first].executions[0].slot.task_manager_id == "t1" else second
        other = second if on_t1 == first else first
        rm.disconnected("t1", acks["t1"][0])
        assert d.job(on_t1).state == "FAILED" and "t1" in d.job_exceptions(on_t1).entries[0].exception
        d.stop()  # the jobmanager shuts down: jobs are suspended before the connections close
        rm.disconnected("t2", acks["t2"][0])
        assert d.job(other).state == "SUSPENDED"

    run(tmp_path, body)


def test_planning_imports_the_jobs_own_module_over_a_loaded_one(tmp_path: Path) -> None:
    import types

    (tmp_path / "in.jsonl").write_text('{"x": 1}\n')
    yaml = YAML.replace("data/in.jsonl", "in.jsonl").replace("dispatch_udfs_a:f", "dispatch_udfs_dup:g")
    loaded = types.ModuleType("dispatch_udfs_dup")  # e.g. another job's module of the same name, without g
    sys.modules["dispatch_udfs_dup"] = loaded

    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        try:
            subs = [JobSubmission(pipeline_yaml=yaml, files={"dispatch_udfs_dup.py": f"def g(r):\n    return {i}\n".encode()},
                                  base_dir=str(tmp_path)) for i in range(3)]
            ids = await asyncio.gather(*(d.submit(s) for s in subs))  # planned one at a time
            assert len(set(ids)) == 3
            assert sys.modules["dispatch_udfs_dup"] is loaded  # put back after planning
            assert not any(str(tmp_path / "uploads") in p for p in sys.path)
        finally:
            sys.modules.pop("dispatch_udfs_dup", None)

    run(tmp_path, body)


def test_an_invalid_job_graph_is_refused_before_the_job_exists(tmp_path: Path) -> None:
    good = graph(1, 1, keyed=False).to_json()
    bad = [dict(good, vertices=[]),
           dict(good, vertices=[dict(good["vertices"][0], parallelism=0), good["vertices"][1]]),
           dict(good, edges=[dict(good["edges"][0], target="c" * 32)]),
           dict(good, vertices=[dict(v, operators=[]) for v in good["vertices"]])]

    async def body(d: Dispatcher, rm: ResourceManager) -> None:
        for g in bad:
            with pytest.raises(PipelineDefinitionError, match="job graph is invalid"):
                await d.submit(JobSubmission(job_graph=g))
        assert d.jobs() == []  # no FAILED ghost job
        d.stop()
        from streamlet.rest.base import UnavailableError

        with pytest.raises(UnavailableError, match="not accepting jobs"):
            await d.submit(JobSubmission(job_graph=good))

    run(tmp_path, body)
