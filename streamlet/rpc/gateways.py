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

from typing import Any, Protocol

from streamlet.rpc.endpoint import RpcConnection

from streamlet.rpc.messages import (
    AcknowledgeCheckpoint, AddSplits, CancelJob, DeclineCheckpoint, DeployTasks, Heartbeat, MetricsReport,
    NotifyCheckpointComplete, QueryState, RegisterTaskManager, RegistrationAck, RegistrationRefused, ReleaseJob,
    SampleStacks, StackSamples, StateValue, TaskStateUpdates, TriggerCheckpoint,
)


class TaskManagerGateway(Protocol):
    """The surface of a TaskManager.  Every call raises an RpcError subclass when it fails."""

    async def deploy(self, deployment: DeployTasks) -> None:
        """Start every subtask in ``deployment`` (returns once they are created, not finished)."""

    async def cancel_job(self, job_id: str) -> None:
        """Cancel the job's subtasks; each reports CANCELED (or the state it reached first)."""

    async def trigger_checkpoint(self, msg: TriggerCheckpoint) -> None:
        """Start a checkpoint of the job's subtasks here (sources inject its barrier)."""

    async def notify_checkpoint_complete(self, msg: NotifyCheckpointComplete) -> None:
        """A checkpoint of the job is complete: its subtasks here commit."""

    async def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None:
        """Hand new splits to a running source subtask (it takes them between batches)."""

    async def release_job(self, job_id: str) -> None:
        """Free the job's slots, channels and files (after the job reached a terminal state)."""

    async def query_state(self, request: QueryState) -> StateValue:
        """The live keyed state of one operator for one key, from the subtask that owns the key."""

    async def sample_stacks(self, request: SampleStacks, timeout: float) -> list[dict[str, Any]]:
        """Stack samples of the vertex's subtasks there (see :class:`SampleStacks`), within ``timeout``."""


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

    async def acknowledge_checkpoint(self, msg: AcknowledgeCheckpoint) -> None:
        """A subtask's part of a checkpoint is persisted."""

    async def decline_checkpoint(self, msg: DeclineCheckpoint) -> None:
        """A subtask could not take its part of a checkpoint."""


class RemoteTaskManagerGateway:
    """:class:`TaskManagerGateway` over the TaskManager's RPC connection."""

    def __init__(self, connection: RpcConnection, deploy_timeout: float) -> None:
        self.connection = connection
        self.deploy_timeout = deploy_timeout

    async def deploy(self, deployment: DeployTasks) -> None:
        await self.connection.request(deployment, timeout=self.deploy_timeout)

    async def cancel_job(self, job_id: str) -> None:
        await self.connection.request(CancelJob(job_id))

    async def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None:
        await self.connection.request(AddSplits(job_id, vertex_id, subtask_index, splits))

    async def release_job(self, job_id: str) -> None:
        await self.connection.request(ReleaseJob(job_id))

    async def trigger_checkpoint(self, msg: TriggerCheckpoint) -> None:
        await self.connection.request(msg)

    async def notify_checkpoint_complete(self, msg: NotifyCheckpointComplete) -> None:
        await self.connection.request(msg)
    async def sample_stacks(self, request: SampleStacks, timeout: float) -> list[dict[str, Any]]:
        response = await self.connection.request(request, timeout=timeout)
        if not isinstance(response, StackSamples):
            raise TypeError(f"unexpected answer to SampleStacks: {response.TYPE}")
        return response.samples

    async def query_state(self, request: QueryState) -> StateValue:
        response = await self.connection.request(request)
        if not isinstance(response, StateValue):
            raise TypeError(f"unexpected answer to a state query: {response.TYPE}")
        return response


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

    async def acknowledge_checkpoint(self, msg: AcknowledgeCheckpoint) -> None:
        await self.connection.request(msg)

    async def decline_checkpoint(self, msg: DeclineCheckpoint) -> None:
        await self.connection.request(msg)
