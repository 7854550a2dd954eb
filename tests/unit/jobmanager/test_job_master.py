"""JobMaster against a real ResourceManager, fake TaskManager gateways and a ManualClock."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from streamlet.clock import ManualClock
from streamlet.rpc.errors import ConnectionClosedError, RpcError
from streamlet.runtime.jobmanager.job_master import JobMaster, JobMasterConfig
from streamlet.runtime.jobmanager.job_status import ExecutionState, JobStatus
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.runtime.jobmanager import views
from tests.unit.jobmanager.helpers import graph, register, report, settle, until

E = ExecutionState


def run_job(body: Callable[[JobMaster, ResourceManager, ManualClock], Awaitable[None]],
            config: JobMasterConfig = JobMasterConfig(slot_request_timeout=30.0, cancel_timeout=5.0),
            **graph_args: Any) -> None:
    async def main() -> None:
        clock = ManualClock()
        rm = ResourceManager(clock, 1.0, 5.0)
        jm = JobMaster("f" * 32, graph(**graph_args), rm, clock, config)
        rm.on_task_manager_lost = jm.on_task_manager_lost
        runner = asyncio.create_task(jm.run())
        try:
            await body(jm, rm, clock)
            await asyncio.wait_for(runner, 5)
        finally:
            runner.cancel()

    asyncio.run(main())


def test_deploys_every_subtask_and_finishes() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1, t2 = register(rm, 1, "t1"), register(rm, 1, "t2")
        await until(lambda: jm.status is JobStatus.RUNNING)
        await until(lambda: t1.deployments and t2.deployments)
        d = t1.deployments[0]
        assert len(d.tasks) == 2  # slot sharing: subtask 0 of both vertices in one slot
        assert {t["tdd"]["subtask_index"] for t in d.tasks} == {0}
        assert d.locations == {"a" * 32: ["t1", "t2"], "b" * 32: ["t1", "t2"]}
        assert set(d.addresses) == {"t1", "t2"}
        assert all(ex.state is E.DEPLOYING for ex in jm.executions)
        for state in ("INITIALIZING", "RUNNING"):
            report(jm, "t1", state)
        assert views.job_info(jm).vertices[0].status == "RUNNING"
        report(jm, "t1", "FINISHED", lambda ex: ex.tdd.vertex_id == "a" * 32)
        assert jm.status is JobStatus.RUNNING
        report(jm, "t1", "FINISHED")
        assert jm.status is JobStatus.FINISHED
        await until(lambda: t1.released and t2.released)
        await settle()
        assert rm.slots_free == 2

    run_job(body)


def test_waits_in_created_with_a_reason_then_runs_when_a_taskmanager_joins() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        register(rm, 1, "t1")
        await until(lambda: jm.status is JobStatus.CREATED)
        await settle()
        info = views.job_info(jm)
        assert info.state == "CREATED"
        assert info.pending_reason is not None and "waiting for 2 free slot(s)" in info.pending_reason
        await clock.advance(10)
        t2 = register(rm, 1, "t2")
        await until(lambda: t2.deployments)
        assert jm.status is JobStatus.RUNNING and views.job_info(jm).pending_reason is None
        jm.cancel()
        report(jm, "t1", "CANCELED")

    run_job(body)


def test_fails_after_the_slot_request_timeout() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        await until(lambda: jm.status is JobStatus.CREATED)
        await settle()
        await clock.advance(31)
        await until(lambda: jm.status is JobStatus.FAILED)
        root = views.exception_history(jm).to_json()["root-exception"]
        assert "could not get 2 slot(s) within 30s" in root and "start more taskmanagers" in root
        register(rm, 2)
        assert rm.slots_free == 2  # the withdrawn request took nothing

    run_job(body)


def test_a_failed_subtask_fails_the_job_and_cancels_the_rest() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1, t2 = register(rm, 1, "t1"), register(rm, 1, "t2")
        await until(lambda: t1.deployments and t2.deployments)
        report(jm, "t1", "RUNNING")
        why = "node 'm': user function raised ZeroDivisionError: division by zero on record {'x': 0}"
        report(jm, "t2", "FAILED", lambda ex: ex.slot.task_manager_id == "t2" and ex.tdd.vertex_id == "b" * 32, why)
        assert jm.status is JobStatus.FAILING
        await until(lambda: t1.cancelled and t2.cancelled)
        assert all(ex.state in (E.CANCELING, E.FAILED) for ex in jm.executions)
        report(jm, "t1", "CANCELED", lambda ex: not ex.state.is_terminal)
        assert jm.status is JobStatus.FAILED
        exc = views.exception_history(jm).to_json()
        assert exc["root-exception"] == why
        assert exc["all-exceptions"][0]["task"] == "out (2/2)"
        assert exc["all-exceptions"][0]["taskManagerId"] == "t2"

    run_job(body)


def test_cancel_stops_every_subtask_and_frees_the_slots() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")
        await until(lambda: t1.deployments)
        report(jm, "t1", "RUNNING")
        jm.cancel()
        assert jm.status is JobStatus.CANCELLING
        await until(lambda: t1.cancelled == [jm.job_id])
        report(jm, "t1", "CANCELED")
        assert jm.status is JobStatus.CANCELED
        await until(lambda: t1.released)
        await settle()
        assert rm.slots_free == 2

    run_job(body)


def test_unconfirmed_cancellation_is_forced_after_the_cancel_timeout() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")
        await until(lambda: t1.deployments)
        jm.cancel()
        await settle()
        await clock.advance(4)
        assert jm.status is JobStatus.CANCELLING
        await clock.advance(2)
        await until(lambda: jm.status is JobStatus.CANCELED)

    run_job(body)


def test_cancel_while_waiting_for_slots_is_immediate() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        await until(lambda: jm.status is JobStatus.CREATED)
        jm.cancel()
        assert jm.status is JobStatus.CANCELED
        assert all(ex.state is E.CANCELED for ex in jm.executions)

    run_job(body)


def test_lost_taskmanager_fails_its_subtasks_and_the_job() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        monitor = asyncio.create_task(rm.run())
        try:
            t1, t2 = register(rm, 1, "t1"), register(rm, 1, "t2")
            reg1 = next(r for r in rm._task_managers.values() if r.id == "t1").registration_id
            await until(lambda: t1.deployments and t2.deployments)
            report(jm, "t1", "RUNNING")
            for _ in range(7):  # t1 keeps heartbeating, t2 went silent
                await clock.advance(1.0)
                rm.heartbeat("t1", reg1)
            await until(lambda: jm.status is JobStatus.FAILING)
            lost = [ex for ex in jm.executions if ex.slot.task_manager_id == "t2"]
            assert all(ex.state is E.FAILED and "no heartbeat" in (ex.failure or "") for ex in lost)
            await until(lambda: t1.cancelled)
            report(jm, "t1", "CANCELED", lambda ex: ex.slot.task_manager_id == "t1")
            assert jm.status is JobStatus.FAILED
            assert "t2" in views.exception_history(jm).to_json()["root-exception"]
            await until(lambda: t1.released)
            await settle()
            assert rm.slots_total == 1 and rm.slots_free == 1
        finally:
            monitor.cancel()

    run_job(body)


def test_a_failed_deployment_fails_the_job() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")

        async def refuse(_: Any) -> None:
            raise RpcError("slot 1 is held by job x")

        t1.deploy_hook = refuse
        # a refused deployment was undone on the TaskManager: its subtasks fail at once, without
        # waiting for a cancellation nobody will confirm (no time passes)
        await until(lambda: jm.status is JobStatus.FAILED)
        assert all(ex.state is E.FAILED for ex in jm.executions)
        assert "could not deploy to taskmanager t1: slot 1 is held" in jm.exceptions[0].exception

    run_job(body)


def test_a_deployment_whose_connection_closes_names_the_lost_taskmanager() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")

        async def killed(_: Any) -> None:  # what the RPC endpoint raises when the process died
            raise ConnectionClosedError("rpc connection to taskmanager t1 (127.0.0.1:1) closed")

        t1.deploy_hook = killed
        await until(lambda: jm.status is JobStatus.FAILED)
        assert all(ex.state is E.FAILED for ex in jm.executions)
        assert jm.exceptions[0].exception.startswith("taskmanager t1 lost while deploying to it: rpc connection")

    run_job(body)


def test_stale_and_impossible_reports_are_ignored() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")
        await until(lambda: t1.deployments)
        ex = jm.executions[0]
        jm.on_task_states("t1", [{"job_id": jm.job_id, "vertex_id": ex.tdd.vertex_id, "subtask_index": 0,
                                  "attempt_id": "an-old-attempt", "state": "FAILED", "error": "old"}])
        assert jm.status is JobStatus.RUNNING
        jm.on_task_states("t1", [{"job_id": jm.job_id, "vertex_id": ex.tdd.vertex_id, "subtask_index": 0,
                                  "attempt_id": ex.attempt_id, "state": "NOT-A-STATE"}])
        assert ex.state is E.DEPLOYING
        report(jm, "t1", "RUNNING")
        report(jm, "t1", "SCHEDULED")  # backwards: ignored, logged
        assert ex.state is E.RUNNING
        jm.cancel()
        report(jm, "t1", "CANCELED")

    run_job(body)


def test_metrics_and_backpressure_views() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")
        await until(lambda: t1.deployments)
        report(jm, "t1", "RUNNING")
        jm.on_metrics("t1", [{"job_id": jm.job_id, "vertex_id": ex.tdd.vertex_id, "subtask_index": ex.tdd.subtask_index,
                              "attempt_id": ex.attempt_id, "records_in": 100, "records_out": 50,
                              "records_in_per_second": 10.0, "records_out_per_second": 5.0,
                              "busy_ms_per_second": 100.0, "idle_ms_per_second": 100.0,
                              "backpressured_ms_per_second": 800.0 if ex.tdd.subtask_index else 50.0}
                             for ex in jm.executions])
        v = views.job_info(jm).to_details_json()["vertices"][0]
        assert v["metrics"]["read-records"] == 200 and v["metrics"]["write-records"] == 100
        assert v["metrics"]["read-records-per-second"] == 20.0
        bp = views.vertex_backpressure(jm, "a" * 32).to_json()  # type: ignore[union-attr]
        assert bp["backpressure-level"] == "high"
        assert [s["backpressure-level"] for s in bp["subtasks"]] == ["ok", "high"]
        assert views.vertex_backpressure(jm, "nope") is None
        plan = views.job_plan(jm)
        assert [n["id"] for n in plan["nodes"]] == ["a" * 32, "b" * 32]
        assert plan["nodes"][1]["inputs"][0]["ship_strategy"] == "HASH"
        jm.cancel()
        report(jm, "t1", "CANCELED")

    run_job(body)


def test_an_unrequested_cancellation_fails_the_job_and_frees_its_slots() -> None:
    async def body(jm: JobMaster, rm: ResourceManager, clock: ManualClock) -> None:
        t1 = register(rm, 2, "t1")
        await until(lambda: t1.deployments)
        report(jm, "t1", "RUNNING")
        report(jm, "t1", "FINISHED", lambda ex: ex.tdd.vertex_name == "src")
        report(jm, "t1", "CANCELED", lambda ex: ex.tdd.vertex_name == "out")  # nobody asked for it
        await until(lambda: jm.is_terminal and rm.slots_free == 2)
        assert jm.status is JobStatus.FAILED
        assert "out (1/2) canceled unexpectedly on taskmanager t1" in jm.exceptions[0].exception

    run_job(body)
