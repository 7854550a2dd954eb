"""TaskExecutor: deployment wiring (local vs remote channels), state reports, cancel, release.

Two executors share one event loop and a loopback "network" that stands in for the
NetworkEnvironment, so the remote side of each channel is exercised without sockets.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from streamlet.clock import SystemClock
from streamlet.rpc.messages import DeployTasks
from streamlet.runtime.jobmanager.resource_manager import SlotAssignment
from streamlet.runtime.jobmanager.scheduler import assign_slots, build_deployments, create_executions
from streamlet.runtime.jobmanager.source_coordinator import assign_splits
from streamlet.runtime.taskmanager.executor import TaskExecutor
from streamlet.runtime.taskmanager.network.channels import InputChannel
from streamlet.runtime.taskmanager.slots import SlotError, SlotTable
from tests.support.pipelines import canonical, plan_file, read_output, write_jsonl, write_pipeline


def _plan_with_module(tmp_path: Path, module: str, source: bytes, pipeline: str) -> Any:
    """Plan ``pipeline`` with ``module`` importable from ``tmp_path/code`` (as the JobManager
    plans with the job's files on sys.path), then forget the module again."""
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{module}.py").write_bytes(source)
    sys.path.insert(0, str(code))
    try:
        return plan_file(write_pipeline(tmp_path, pipeline))
    finally:
        sys.path.remove(str(code))
        sys.modules.pop(module, None)


class LoopbackOutput:
    """A remote output channel whose receiver is registered in the same process."""

    def __init__(self, net: LoopbackNetwork, key: tuple[str, str]) -> None:
        self.net = net
        self.key = key

    def has_space(self) -> bool:
        ch = self.net.inputs.get(self.key)
        return ch is not None and ch.has_space()

    async def put(self, element: Any) -> None:
        while self.key not in self.net.inputs:  # the receiver registers at its own deployment
            await asyncio.sleep(0)
        await self.net.inputs[self.key].put(element)


class LoopbackNetwork:
    """Records what an executor registers and opens; shared by every executor of a test."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[str, str], InputChannel] = {}
        self.opened: list[tuple[str, str, str]] = []
        self.unregistered: list[str] = []

    def register_input_channel(self, job_id: str, channel: InputChannel) -> None:
        self.inputs[(job_id, channel.channel_id)] = channel

    def output_channel(self, job_id: str, channel_id: str, peer_address: str) -> LoopbackOutput:
        self.opened.append((job_id, channel_id, peer_address))
        return LoopbackOutput(self, (job_id, channel_id))

    def unregister_job(self, job_id: str) -> None:
        self.unregistered.append(job_id)
        for key in [k for k in self.inputs if k[0] == job_id]:
            del self.inputs[key]


def deployments(graph: Any, placement: list[str], files: dict[str, bytes] | None = None) -> dict[str, DeployTasks]:
    exs = create_executions(graph, "j" * 32, assign_splits(graph))
    assign_slots(exs, [SlotAssignment(tm, placement[:i].count(tm), f"{tm}:1") for i, tm in enumerate(placement)])
    return build_deployments("j" * 32, graph.name, exs, files or {})


async def finished(executors: list[TaskExecutor], n: int) -> list[dict[str, Any]]:
    """Collect updates until ``n`` subtasks reached a terminal state."""
    seen: list[dict[str, Any]] = []
    while sum(1 for u in seen if u["state"] in ("FINISHED", "FAILED", "CANCELED")) < n:
        await asyncio.wait([asyncio.ensure_future(e.updates_ready.wait()) for e in executors],
                           return_when=asyncio.FIRST_COMPLETED, timeout=10)
        for e in executors:
            seen.extend(e.take_updates())
    return seen


PIPELINE = """
name: keyed
parallelism: 2
mode: batch
sources: {src: {type: file, path: in.jsonl}}
transforms:
  f: {input: src, map: "dict(r, v=r['v'] + 1)"}
  per_key: {input: f, key_by: k, aggregate: {n: count, total: {sum: v}}}
sinks: {out: {input: per_key, type: file, path: out}}
"""


def test_two_executors_exchange_data_and_finish(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"k": i % 7, "v": i} for i in range(500)])
    graph = plan_file(write_pipeline(tmp_path, PIPELINE))

    async def main() -> None:
        net = LoopbackNetwork()
        a = TaskExecutor("A", SlotTable(1), net, SystemClock(), tmp_path / "a", 2)
        b = TaskExecutor("B", SlotTable(1), net, SystemClock(), tmp_path / "b", 2)
        async with asyncio.TaskGroup() as tg:
            a.bind(tg)
            b.bind(tg)
            deps = deployments(graph, ["A", "B"])
            await b.deploy(deps["B"])
            await a.deploy(deps["A"])
            updates = await finished([a, b], 4)
        assert [u["state"] for u in updates if u["subtask_index"] == 0 and u["vertex_id"] == graph.vertices[0].id] \
            == ["INITIALIZING", "RUNNING", "FINISHED"]
        final = [u for u in updates if u["state"] == "FINISHED"]
        assert len(final) == 4 and all(u["metrics"]["records_in"] >= 0 for u in final)
        assert sum(u["metrics"]["records_in"] for u in final if u["vertex_id"] == graph.vertices[0].id) == 500
        # the hash edge crosses executors: each opened a remote channel to the other's subtask
        assert {(cid.split(".")[1], addr) for _, cid, addr in net.opened} == {("0", "B:1"), ("1", "A:1")}
        await a.release_job("j" * 32)
        await b.release_job("j" * 32)
        assert a.slots.free == 1 and net.unregistered == ["j" * 32, "j" * 32]

    asyncio.run(main())
    expected = {}
    for i in range(500):
        n, t = expected.get(i % 7, (0, 0))
        expected[i % 7] = (n + 1, t + i + 1)
    assert canonical(read_output(tmp_path / "out")) == canonical(
        [{"k": k, "n": n, "total": t} for k, (n, t) in expected.items()])


def test_user_function_failure_is_reported_with_node_and_record(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"v": 1}, {"v": 0}])
    files = {"boom_udfs.py": b"def inv(r):\n    return {'x': 1 / r['v']}\n"}
    graph = _plan_with_module(tmp_path, "boom_udfs", files["boom_udfs.py"], """
        name: boom
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {inv: {input: src, map: "boom_udfs:inv"}}
        sinks: {out: {input: inv, type: blackhole}}
    """)

    async def main() -> None:
        net = LoopbackNetwork()
        ex = TaskExecutor("A", SlotTable(1), net, SystemClock(), tmp_path / "jobs", 2)
        async with asyncio.TaskGroup() as tg:
            ex.bind(tg)
            await ex.deploy(deployments(graph, ["A"], files)["A"])
            job_dir = tmp_path / "jobs" / ("j" * 32)
            assert (job_dir / "boom_udfs.py").exists()
            updates = await finished([ex], 1)
            failed = [u for u in updates if u["state"] == "FAILED"]
            assert len(failed) == 1
            assert "node 'inv'" in failed[0]["error"] and "ZeroDivisionError" in failed[0]["error"]
            assert "{'v': 0}" in failed[0]["error"]
            await ex.release_job("j" * 32)
            assert not job_dir.exists() and "boom_udfs" not in sys.modules

    asyncio.run(main())


def test_cancel_reports_canceled_and_a_held_slot_refuses_a_deployment(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, """
        name: endless
        sources: {gen: {type: datagen, rate: 100, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: gen, type: blackhole}}
    """))

    async def main() -> None:
        ex = TaskExecutor("A", SlotTable(1), LoopbackNetwork(), SystemClock(), tmp_path / "jobs", 2)
        async with asyncio.TaskGroup() as tg:
            ex.bind(tg)
            dep = deployments(graph, ["A"])["A"]
            await ex.deploy(dep)
            other = DeployTasks("k" * 32, "other", dep.tasks, dep.locations, dep.addresses)
            with pytest.raises(SlotError, match="held by job"):
                await ex.deploy(other)
            ex.cancel_job("j" * 32)
            updates = await finished([ex], 1)
            assert updates[-1]["state"] == "CANCELED" and updates[-1]["metrics"] is not None
            await ex.release_job("j" * 32)
            assert ex.slots.free == 1 and ex.jobs == []
            await ex.deploy(other)  # the slot is free again
            metrics = ex.sample_metrics()
            assert len(metrics) == 1 and metrics[0]["job_id"] == "k" * 32
            await ex.reset()
            assert ex.jobs == [] and ex.slots.free == 1

    asyncio.run(main())


class _Stubborn:
    """A task body that ignores cancellation until ``done`` is set."""

    name = "stubborn (1/1)"

    def __init__(self) -> None:
        from streamlet.metrics.registry import MetricGroup, TaskIOMetrics

        self.metrics = TaskIOMetrics(MetricGroup())
        self.output_watermark = 0
        self.input_watermark = 0
        self.done = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self.done.wait()
                return
            except asyncio.CancelledError:
                continue


def test_a_slot_is_freed_only_when_its_task_really_ended(tmp_path: Path) -> None:
    graph = plan_file(write_pipeline(tmp_path, """
        name: endless
        sources: {gen: {type: datagen, rate: 100, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: gen, type: blackhole}}
    """))

    async def main() -> None:
        from streamlet.errors import StreamletError

        ex = TaskExecutor("A", SlotTable(1), LoopbackNetwork(), SystemClock(), tmp_path / "jobs", 2)
        ex.drop_timeout = 0.01
        async with asyncio.TaskGroup() as tg:
            ex.bind(tg)
            dep = deployments(graph, ["A"])["A"]
            await ex.deploy(dep)
            stubborn = _Stubborn()
            ex._jobs["j" * 32].subtasks[0].task = stubborn  # type: ignore[assignment]  # before it starts
            await asyncio.sleep(0)
            try:
                with pytest.raises(StreamletError, match="still run subtasks"):
                    await ex.release_job("j" * 32)
                assert ex.slots.free == 0 and ex.slots.report()[0]["job_id"] == "j" * 32  # heartbeats: busy
                other = DeployTasks("k" * 32, "other", dep.tasks, dep.locations, dep.addresses)
                with pytest.raises(SlotError, match="held by job"):
                    await ex.deploy(other)
                with pytest.raises(StreamletError, match="still run subtasks"):
                    await ex.release_job("j" * 32)  # a repeated release does not free it either
                assert ex.slots.free == 0
            finally:
                stubborn.done.set()
            for _ in range(20):
                await asyncio.sleep(0)
            assert ex.slots.free == 1  # freed by the task's done callback
            await ex.release_job("j" * 32)  # now a no-op
            await ex.deploy(other)
            await ex.reset()

    asyncio.run(main())


def test_jobs_shipping_a_module_of_the_same_name_each_run_their_own(tmp_path: Path) -> None:

    write_jsonl(tmp_path / "in.jsonl", [{"v": 1}])
    ok = b"def f(r):\n    return r\n"
    graph = _plan_with_module(tmp_path, "dup_udfs", ok, """
        name: dup
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {m: {input: src, map: "dup_udfs:f"}}
        sinks: {out: {input: m, type: blackhole}}
    """)
    versions = {"a" * 32: ok, "b" * 32: b"def f(r):\n    raise ValueError('the module of job b')\n"}

    async def main() -> None:
        ex = TaskExecutor("A", SlotTable(2), LoopbackNetwork(), SystemClock(), tmp_path / "jobs", 2)
        async with asyncio.TaskGroup() as tg:
            ex.bind(tg)
            for slot, (job_id, source) in enumerate(versions.items()):
                exs = create_executions(graph, job_id, assign_splits(graph))
                assign_slots(exs, [SlotAssignment("A", slot, "A:1")])
                await ex.deploy(build_deployments(job_id, graph.name, exs, {"dup_udfs.py": source})["A"])
            updates = await finished([ex], 2)
            ends = {u["job_id"]: (u["state"], u["error"]) for u in updates if u["state"] in ("FINISHED", "FAILED")}
            assert ends["a" * 32] == ("FINISHED", None)
            assert ends["b" * 32][0] == "FAILED" and "the module of job b" in ends["b" * 32][1]
            for job_id in versions:
                await ex.release_job(job_id)
            assert not any(p.startswith(str(tmp_path / "jobs")) for p in sys.path)
            assert "dup_udfs" not in sys.modules

    asyncio.run(main())
