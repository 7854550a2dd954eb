"""The TaskManager's side of :class:`streamlet.rpc.gateways.TaskManagerGateway`.

:class:`TaskManagerEndpoint` receives the JobManager's requests on a TaskManager's RPC
connection; :class:`LocalTaskManagerGateway` is the same surface called directly in one process
(``streamlet run``).  Both hand the calls to the TaskManager's executor.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from streamlet.rpc.endpoint import RpcEndpoint, rpc
from streamlet.rpc.messages import (
    Ack, AddSplits, CancelJob, DeployTasks, Message, NotifyCheckpointComplete, QueryState, ReleaseJob, SampleStacks,
    StackSamples, StateValue,
    TriggerCheckpoint,
)


class TaskExecutorLike(Protocol):
    """The TaskManager side the endpoint forwards to (the TaskManager process's executor)."""

    async def deploy(self, deployment: DeployTasks) -> None: ...

    def cancel_job(self, job_id: str) -> None: ...

    def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None: ...

    async def release_job(self, job_id: str) -> None: ...

    def trigger_checkpoint(self, msg: TriggerCheckpoint) -> int: ...

    def notify_checkpoint_complete(self, job_id: str, checkpoint_id: int) -> None: ...

    async def sample_stacks(self, request: SampleStacks) -> list[dict[str, Any]]: ...

    def query_state(self, request: QueryState) -> StateValue: ...


class TaskManagerEndpoint(RpcEndpoint):
    """Handles the JobManager's requests on a TaskManager's RPC connection."""

    def __init__(self, executor: TaskExecutorLike) -> None:
        self.executor = executor

    @rpc(DeployTasks)
    async def on_deploy(self, msg: DeployTasks) -> Message:
        await self.executor.deploy(msg)
        return Ack()

    @rpc(CancelJob)
    async def on_cancel(self, msg: CancelJob) -> Message:
        self.executor.cancel_job(msg.job_id)
        return Ack()

    @rpc(AddSplits)
    async def on_add_splits(self, msg: AddSplits) -> Message:
        self.executor.add_splits(msg.job_id, msg.vertex_id, msg.subtask_index, msg.splits)
        return Ack()

    @rpc(ReleaseJob)
    async def on_release(self, msg: ReleaseJob) -> Message:
        await self.executor.release_job(msg.job_id)
        return Ack()

    @rpc(TriggerCheckpoint)
    async def on_trigger_checkpoint(self, msg: TriggerCheckpoint) -> Message:
        self.executor.trigger_checkpoint(msg)
        return Ack()

    @rpc(NotifyCheckpointComplete)
    async def on_checkpoint_complete(self, msg: NotifyCheckpointComplete) -> Message:
        self.executor.notify_checkpoint_complete(msg.job_id, msg.checkpoint_id)
        return Ack()

    @rpc(SampleStacks)
    async def on_sample_stacks(self, msg: SampleStacks) -> Message:
        return StackSamples(await self.executor.sample_stacks(msg))

    @rpc(QueryState)
    async def on_query_state(self, msg: QueryState) -> Message:
        return self.executor.query_state(msg)


class LocalTaskManagerGateway:
    """:class:`~streamlet.rpc.gateways.TaskManagerGateway` of a TaskManager in this process."""

    def __init__(self, executor: TaskExecutorLike) -> None:
        self.executor = executor

    async def deploy(self, deployment: DeployTasks) -> None:
        await self.executor.deploy(deployment)

    async def cancel_job(self, job_id: str) -> None:
        self.executor.cancel_job(job_id)

    async def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None:
        self.executor.add_splits(job_id, vertex_id, subtask_index, splits)

    async def release_job(self, job_id: str) -> None:
        await self.executor.release_job(job_id)

    async def trigger_checkpoint(self, msg: TriggerCheckpoint) -> None:
        self.executor.trigger_checkpoint(msg)

    async def notify_checkpoint_complete(self, msg: NotifyCheckpointComplete) -> None:
        self.executor.notify_checkpoint_complete(msg.job_id, msg.checkpoint_id)

    async def query_state(self, request: QueryState) -> StateValue:
        return self.executor.query_state(request)

    async def sample_stacks(self, request: SampleStacks, timeout: float) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            return await self.executor.sample_stacks(request)
