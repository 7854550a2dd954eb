"""The gateways through which the JobManager and the TaskManagers call each other.

Both sides depend on these Protocols only (never on each other's packages): the JobMaster and
ResourceManager on :class:`TaskManagerGateway`, a TaskManager's session on
:class:`JobManagerGateway`.  Two kinds of implementation exist for each:

* ``Remote*Gateway`` (here): the calls as RPC messages over one websocket connection
  (``streamlet jobmanager`` / ``streamlet taskmanager`` processes);
* in-process ones, wired directly to the other side's services (``streamlet run``, one process):
  :class:`streamlet.runtime.jobmanager.gateway.LocalJobManagerGateway` and
  :class:`streamlet.runtime.taskmanager.gateway.LocalTaskManagerGateway`.

Tests substitute the fakes of :mod:`streamlet.testing.fakes`.
"""

from __future__ import annotations

from typing import Protocol

from streamlet.rpc.endpoint import RpcConnection
from streamlet.rpc.messages import (
    CancelJob, DeployTasks, Heartbeat, MetricsReport, RegisterTaskManager, RegistrationAck, RegistrationRefused,
    ReleaseJob, TaskStateUpdates,
)


class TaskManagerGateway(Protocol):
    """The surface of a TaskManager.  Every call raises an RpcError subclass when it fails."""

    async def deploy(self, deployment: DeployTasks) -> None:
        """Start every subtask in ``deployment`` (returns once they are created, not finished)."""

    async def cancel_job(self, job_id: str) -> None:
        """Cancel the job's subtasks; each reports CANCELED (or the state it reached first)."""

    async def release_job(self, job_id: str) -> None:
        """Free the job's slots, channels and files (after the job reached a terminal state)."""


class JobManagerGateway(Protocol):
    """The surface of the JobManager for TaskManagers."""

    async def register(self, msg: RegisterTaskManager) -> RegistrationAck | RegistrationRefused:
        """Offer this TaskManager's slots; the answer fences the session."""

    async def heartbeat(self, msg: Heartbeat) -> None:
        """Tell the JobManager this TaskManager is alive; raises when the registration is unknown."""

    async def update_task_states(self, msg: TaskStateUpdates) -> None:
        """Report subtask state changes, in order."""

    async def report_metrics(self, msg: MetricsReport) -> None:
        """Report per-subtask metrics."""


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


class RemoteJobManagerGateway:
    """:class:`JobManagerGateway` over the RPC connection to the JobManager."""

    def __init__(self, connection: RpcConnection) -> None:
        self.connection = connection

    async def register(self, msg: RegisterTaskManager) -> RegistrationAck | RegistrationRefused:
        response = await self.connection.request(msg)
        if not isinstance(response, (RegistrationAck, RegistrationRefused)):
            raise TypeError(f"unexpected answer to registration: {response.TYPE}")
        return response

    async def heartbeat(self, msg: Heartbeat) -> None:
        await self.connection.request(msg)

    async def update_task_states(self, msg: TaskStateUpdates) -> None:
        await self.connection.request(msg)

    async def report_metrics(self, msg: MetricsReport) -> None:
        await self.connection.request(msg)
