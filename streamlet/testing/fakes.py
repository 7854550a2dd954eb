"""Fake gateways with settable hooks (Flink's ``Testing*GatewayBuilder`` idea).

Every call is recorded; its hook (an async function taking the call's argument) decides the
outcome and defaults to "ack".  A hook that raises makes the call fail as an RPC would.

Example::

    tm = TestingTaskManagerGateway()
    async def refuse(deployment): raise RpcError("boom")
    tm.deploy_hook = refuse
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from streamlet.ids import new_id
from streamlet.rpc.messages import (
    DeployTasks, Heartbeat, MetricsReport, RegisterTaskManager, RegistrationAck, RegistrationRefused, TaskStateUpdates,
)

Hook = Callable[[Any], Awaitable[Any]] | None


class TestingTaskManagerGateway:
    """A TaskManagerGateway that records deploy / cancel / release calls."""

    __test__ = False  # not a pytest test class

    def __init__(self, task_manager_id: str | None = None) -> None:
        self.task_manager_id = task_manager_id or new_id()
        self.deployments: list[DeployTasks] = []
        self.cancelled: list[str] = []
        self.released: list[str] = []
        self.checkpoint_calls: list[Any] = []
        self.deploy_hook: Hook = None
        self.cancel_hook: Hook = None
        self.release_hook: Hook = None
        self.sampled: list[Any] = []
        self.sample_hook: Hook = None
        #: (job_id, vertex_id, subtask_index, splits) of every add_splits call
        self.added_splits: list[tuple[str, str, int, list[dict[str, Any]]]] = []
        self.add_splits_hook: Hook = None

    async def deploy(self, deployment: DeployTasks) -> None:
        self.deployments.append(deployment)
        if self.deploy_hook is not None:
            await self.deploy_hook(deployment)

    async def cancel_job(self, job_id: str) -> None:
        self.cancelled.append(job_id)
        if self.cancel_hook is not None:
            await self.cancel_hook(job_id)

    async def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None:
        call = (job_id, vertex_id, subtask_index, splits)
        self.added_splits.append(call)
        if self.add_splits_hook is not None:
            await self.add_splits_hook(call)

    async def release_job(self, job_id: str) -> None:
        self.released.append(job_id)
        if self.release_hook is not None:
            await self.release_hook(job_id)

    async def trigger_checkpoint(self, msg: Any) -> None:
        self.checkpoint_calls.append(msg)

    async def notify_checkpoint_complete(self, msg: Any) -> None:
        self.checkpoint_calls.append(msg)
    async def sample_stacks(self, request: Any, timeout: float) -> list[dict[str, Any]]:
        """No subtask runs here: no samples (set ``sample_hook`` to answer some)."""
        self.sampled.append(request)
        if self.sample_hook is not None:
            return await self.sample_hook(request)  # type: ignore[no-any-return]
        return []


class TestingJobManagerGateway:
    """A JobManagerGateway that records what a TaskManager sends; registration is acknowledged."""

    __test__ = False

    def __init__(self, heartbeat_interval: float = 1.0, heartbeat_timeout: float = 5.0) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.registrations: list[RegisterTaskManager] = []
        self.heartbeats: list[Heartbeat] = []
        self.state_updates: list[dict[str, Any]] = []
        self.metrics: list[MetricsReport] = []
        self.checkpoint_reports: list[Any] = []
        self.register_hook: Hook = None
        self.heartbeat_hook: Hook = None
        self.update_hook: Hook = None

    async def register(self, msg: RegisterTaskManager) -> RegistrationAck | RegistrationRefused:
        self.registrations.append(msg)
        if self.register_hook is not None:
            answer = await self.register_hook(msg)
            if answer is not None:
                return answer
        return RegistrationAck(new_id(), new_id(), self.heartbeat_interval, self.heartbeat_timeout)

    async def heartbeat(self, msg: Heartbeat) -> None:
        self.heartbeats.append(msg)
        if self.heartbeat_hook is not None:
            await self.heartbeat_hook(msg)

    async def update_task_states(self, msg: TaskStateUpdates) -> None:
        self.state_updates.extend(msg.updates)
        if self.update_hook is not None:
            await self.update_hook(msg)

    async def report_metrics(self, msg: MetricsReport) -> None:
        self.metrics.append(msg)

    async def acknowledge_checkpoint(self, msg: Any) -> None:
        self.checkpoint_reports.append(msg)

    async def decline_checkpoint(self, msg: Any) -> None:
        self.checkpoint_reports.append(msg)
