"""TaskManagerGateway: what the JobManager calls on a TaskManager.

The JobMaster depends on this Protocol only.  :class:`RemoteTaskManagerGateway` carries the calls
over a TaskManager's RPC connection; tests use
:class:`streamlet.testing.fakes.TestingTaskManagerGateway`.  On the TaskManager,
:class:`TaskManagerEndpoint` receives them and hands them to the TaskManager's executor.
"""

from __future__ import annotations

from typing import Protocol

from streamlet.rpc.endpoint import RpcConnection, RpcEndpoint, rpc
from streamlet.rpc.messages import Ack, CancelJob, DeployTasks, Message, ReleaseJob


class TaskManagerGateway(Protocol):
    """RPC surface of a TaskManager.  Every call raises an RpcError subclass when it fails."""

    async def deploy(self, deployment: DeployTasks) -> None:
        """Start every subtask in ``deployment`` (returns once they are created, not finished)."""

    async def cancel_job(self, job_id: str) -> None:
        """Cancel the job's subtasks; each reports CANCELED (or the state it reached first)."""

    async def release_job(self, job_id: str) -> None:
        """Free the job's slots, channels and files (after the job reached a terminal state)."""


class RemoteTaskManagerGateway:
    """:class:`TaskManagerGateway` over the TaskManager's RPC connection."""

    def __init__(self, connection: RpcConnection, deploy_timeout: float) -> None:
        self.connection = connection
        self.deploy_timeout = deploy_timeout

    async def deploy(self, deployment: DeployTasks) -> None:
        await self.connection.request(deployment, timeout=self.deploy_timeout)

    async def cancel_job(self, job_id: str) -> None:
        await self.connection.request(CancelJob(job_id))

    async def release_job(self, job_id: str) -> None:
        await self.connection.request(ReleaseJob(job_id))


class TaskExecutorLike(Protocol):
    """The TaskManager side the endpoint forwards to (the TaskManager process's executor)."""

    async def deploy(self, deployment: DeployTasks) -> None: ...

    def cancel_job(self, job_id: str) -> None: ...

    async def release_job(self, job_id: str) -> None: ...


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

    @rpc(ReleaseJob)
    async def on_release(self, msg: ReleaseJob) -> Message:
        await self.executor.release_job(msg.job_id)
        return Ack()
