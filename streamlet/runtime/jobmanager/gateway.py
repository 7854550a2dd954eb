"""JobManagerGateway: what a TaskManager calls on the JobManager.

The TaskManager depends on this Protocol only.  :class:`RemoteJobManagerGateway` carries the calls
over the RPC connection; on the JobManager, one :class:`TaskManagerSession` per connection
receives them, checks the fence (the registration id) and hands them to the ResourceManager and
the Dispatcher.  (The CLI reaches the JobManager through the REST API, see :mod:`streamlet.rest`.)
"""

from __future__ import annotations

import logging
from typing import Protocol

from streamlet.rpc.endpoint import RpcConnection, RpcEndpoint, rpc
from streamlet.rpc.messages import (
    Ack, Heartbeat, HeartbeatAck, Message, MetricsReport, RegisterTaskManager, RegistrationAck, RegistrationRefused,
    TaskStateUpdates,
)
from streamlet.runtime.taskmanager.gateway import RemoteTaskManagerGateway, TaskManagerGateway

logger = logging.getLogger(__name__)


class JobManagerGateway(Protocol):
    """RPC surface of the JobManager for TaskManagers."""

    async def register(self, msg: RegisterTaskManager) -> RegistrationAck | RegistrationRefused:
        """Offer this TaskManager's slots; the answer fences the session."""

    async def heartbeat(self, msg: Heartbeat) -> None:
        """Tell the JobManager this TaskManager is alive; raises when the registration is unknown."""

    async def update_task_states(self, msg: TaskStateUpdates) -> None:
        """Report subtask state changes, in order."""

    async def report_metrics(self, msg: MetricsReport) -> None:
        """Report per-subtask metrics."""


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


class ResourceManagerLike(Protocol):
    """What a session needs of the ResourceManager."""

    def register(self, msg: RegisterTaskManager, gateway: TaskManagerGateway) -> RegistrationAck | RegistrationRefused:
        ...

    def heartbeat(self, task_manager_id: str, registration_id: str,
                  slots: list[dict] | None = None) -> bool: ...

    def is_registered(self, task_manager_id: str, registration_id: str) -> bool: ...

    def disconnected(self, task_manager_id: str, registration_id: str) -> None: ...


class DispatcherLike(Protocol):
    """What a session needs of the Dispatcher."""

    def on_task_states(self, task_manager_id: str, updates: list[dict]) -> None: ...

    def on_metrics(self, task_manager_id: str, tasks: list[dict]) -> None: ...


class TaskManagerSession(RpcEndpoint):
    """The JobManager's side of one TaskManager connection.

    Before registration only ``RegisterTaskManager`` is accepted; afterwards every frame must
    carry this session's registration id as its fence, and the ResourceManager must still know
    it (a TaskManager declared lost is told to register again).
    """

    def __init__(self, connection: RpcConnection, resource_manager: ResourceManagerLike,
                 dispatcher: DispatcherLike, deploy_timeout: float) -> None:
        self.connection = connection
        self.resource_manager = resource_manager
        self.dispatcher = dispatcher
        self.deploy_timeout = deploy_timeout
        self.task_manager_id: str | None = None
        self.registration_id: str | None = None

    def check_fence(self, fence: str | None, message: Message) -> str | None:
        if isinstance(message, RegisterTaskManager):
            return None
        if self.registration_id is None or fence != self.registration_id:
            return "this connection is not registered; send RegisterTaskManager first"
        assert self.task_manager_id is not None
        if not self.resource_manager.is_registered(self.task_manager_id, self.registration_id):
            return (f"registration {self.registration_id} of taskmanager {self.task_manager_id} is no longer "
                    "valid (declared lost); register again")
        return None

    @rpc(RegisterTaskManager)
    async def on_register(self, msg: RegisterTaskManager) -> Message:
        gateway = RemoteTaskManagerGateway(self.connection, self.deploy_timeout)
        answer = self.resource_manager.register(msg, gateway)
        if isinstance(answer, RegistrationAck):
            self.task_manager_id = msg.task_manager_id
            self.registration_id = answer.registration_id
            self.connection.name = f"taskmanager {msg.task_manager_id} ({msg.data_address})"
        return answer

    @rpc(Heartbeat)
    async def on_heartbeat(self, msg: Heartbeat) -> Message:
        assert self.task_manager_id is not None and self.registration_id is not None
        self.resource_manager.heartbeat(self.task_manager_id, self.registration_id, msg.slots)
        return HeartbeatAck()

    @rpc(TaskStateUpdates)
    async def on_task_states(self, msg: TaskStateUpdates) -> Message:
        assert self.task_manager_id is not None
        self.dispatcher.on_task_states(self.task_manager_id, msg.updates)
        return Ack()

    @rpc(MetricsReport)
    async def on_metrics(self, msg: MetricsReport) -> Message:
        assert self.task_manager_id is not None
        self.dispatcher.on_metrics(self.task_manager_id, msg.tasks)
        return Ack()

    def on_disconnect(self) -> None:
        if self.task_manager_id is not None and self.registration_id is not None:
            logger.info("taskmanager %s disconnected", self.task_manager_id)
            self.resource_manager.disconnected(self.task_manager_id, self.registration_id)
