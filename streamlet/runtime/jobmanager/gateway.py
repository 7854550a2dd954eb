"""The JobManager's side of :class:`streamlet.rpc.gateways.JobManagerGateway`.

On the JobManager, one :class:`TaskManagerSession` per RPC connection receives a TaskManager's
calls, checks the fence (the registration id) and hands them to the ResourceManager and the
Dispatcher; :class:`LocalJobManagerGateway` does the same for a TaskManager in this process
(``streamlet run``), without a connection.  (The CLI reaches the JobManager through the REST API,
see :mod:`streamlet.rest`.)
"""

from __future__ import annotations

import logging
from typing import Protocol


from streamlet.rpc.endpoint import RpcConnection, RpcEndpoint, rpc
from streamlet.rpc.errors import RpcError
from streamlet.rpc.messages import (
    AcknowledgeCheckpoint, DeclineCheckpoint, Ack, Heartbeat, HeartbeatAck, Message, MetricsReport, RegisterTaskManager, RegistrationAck, RegistrationRefused,
    TaskStateUpdates,
)
from streamlet.rpc.gateways import RemoteTaskManagerGateway, TaskManagerGateway

logger = logging.getLogger(__name__)


class ResourceManagerLike(Protocol):
    """What a session needs of the ResourceManager."""

    def register(self, msg: RegisterTaskManager, gateway: TaskManagerGateway) -> RegistrationAck | RegistrationRefused:
        ...

    def heartbeat(self, task_manager_id: str, registration_id: str,
                  slots: list[dict] | None = None, stats: dict | None = None) -> bool: ...

    def is_registered(self, task_manager_id: str, registration_id: str) -> bool: ...

    def disconnected(self, task_manager_id: str, registration_id: str) -> None: ...

    def unregister(self, task_manager_id: str, registration_id: str) -> None: ...


class DispatcherLike(Protocol):
    """What a session needs of the Dispatcher."""

    def on_task_states(self, task_manager_id: str, updates: list[dict]) -> None: ...

    def on_metrics(self, task_manager_id: str, tasks: list[dict]) -> None: ...

    def on_checkpoint_report(self, task_manager_id: str, msg: AcknowledgeCheckpoint | DeclineCheckpoint) -> None: ...


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
        self.resource_manager.heartbeat(self.task_manager_id, self.registration_id, msg.slots, msg.stats)
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

    @rpc(AcknowledgeCheckpoint)
    async def on_acknowledge_checkpoint(self, msg: AcknowledgeCheckpoint) -> Message:
        assert self.task_manager_id is not None
        self.dispatcher.on_checkpoint_report(self.task_manager_id, msg)
        return Ack()

    @rpc(DeclineCheckpoint)
    async def on_decline_checkpoint(self, msg: DeclineCheckpoint) -> Message:
        assert self.task_manager_id is not None
        self.dispatcher.on_checkpoint_report(self.task_manager_id, msg)
        return Ack()

    def on_disconnect(self) -> None:
        if self.task_manager_id is not None and self.registration_id is not None:
            logger.info("taskmanager %s disconnected", self.task_manager_id)
            self.resource_manager.disconnected(self.task_manager_id, self.registration_id)


class RegistrationLostError(RpcError):
    """A call of a TaskManager whose registration the ResourceManager no longer knows (register again)."""

    retryable = True


class LocalJobManagerGateway:
    """:class:`~streamlet.rpc.gateways.JobManagerGateway` for a TaskManager in this process.

    ``task_manager`` is that TaskManager's own gateway, handed to the ResourceManager at
    registration (what a remote registration builds from its connection).
    """

    def __init__(self, resource_manager: ResourceManagerLike, dispatcher: DispatcherLike,
                 task_manager: TaskManagerGateway) -> None:
        self.resource_manager = resource_manager
        self.dispatcher = dispatcher
        self.task_manager = task_manager
        self.task_manager_id: str | None = None
        self.registration_id: str | None = None

    async def register(self, msg: RegisterTaskManager) -> RegistrationAck | RegistrationRefused:
        answer = self.resource_manager.register(msg, self.task_manager)
        if isinstance(answer, RegistrationAck):
            self.task_manager_id, self.registration_id = msg.task_manager_id, answer.registration_id
        return answer

    def _check(self) -> tuple[str, str]:
        tm, reg = self.task_manager_id, self.registration_id
        if tm is None or reg is None or not self.resource_manager.is_registered(tm, reg):
            raise RegistrationLostError(f"taskmanager {tm} is not registered (any more); register again")
        return tm, reg

    async def heartbeat(self, msg: Heartbeat) -> None:
        tm, reg = self._check()
        self.resource_manager.heartbeat(tm, reg, msg.slots, msg.stats)

    async def update_task_states(self, msg: TaskStateUpdates) -> None:
        tm, _ = self._check()
        self.dispatcher.on_task_states(tm, msg.updates)

    async def report_metrics(self, msg: MetricsReport) -> None:
        tm, _ = self._check()
        self.dispatcher.on_metrics(tm, msg.tasks)

    async def acknowledge_checkpoint(self, msg: AcknowledgeCheckpoint) -> None:
        tm, _ = self._check()
        self.dispatcher.on_checkpoint_report(tm, msg)

    async def decline_checkpoint(self, msg: DeclineCheckpoint) -> None:
        tm, _ = self._check()
        self.dispatcher.on_checkpoint_report(tm, msg)

    def disconnect(self) -> None:
        """The in-process TaskManager stops (its jobs, if any still run, fail)."""
        if self.task_manager_id is not None and self.registration_id is not None:
            self.resource_manager.unregister(self.task_manager_id, self.registration_id)
