"""One registered session of a TaskManager with its JobManager, over any JobManagerGateway.

Used by the TaskManager process (over its RPC connection) and by ``streamlet run``'s in-process
TaskManager (over a direct gateway), so both report the same way:

1. register (slots, data address, resources); a refusal ends the session with its reason;
2. then, until the session ends: a heartbeat every ``heartbeat.interval`` (a rejected heartbeat,
   or none acknowledged for ``heartbeat.timeout``, ends it: the TaskManager registers again),
   subtask state changes as they happen (in order), checkpoint acknowledgements, per-subtask metrics every
   ``taskmanager.metrics.interval``;
3. the session ends when ``until`` completes (the connection closed, the TaskManager stops) or a
   loop above gives up; ``on_end`` is awaited then (closing the connection).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from streamlet.clock import Clock
from streamlet.errors import RetryableError
from streamlet.rpc.gateways import JobManagerGateway
from streamlet.rpc.messages import (
    AcknowledgeCheckpoint, DeclineCheckpoint, Heartbeat, MetricsReport, RegisterTaskManager, RegistrationAck, RegistrationRefused, TaskStateUpdates,
)
from streamlet.runtime.taskmanager.executor import TaskExecutor
from streamlet.runtime.taskmanager.process_stats import ProcessStats

logger = logging.getLogger(__name__)


class JobManagerSession:
    """See the module docstring; :attr:`refusal` holds the JobManager's reason after a refusal."""

    def __init__(self, gateway: JobManagerGateway, executor: TaskExecutor, registration: RegisterTaskManager,
                 clock: Clock, metrics_interval: float, on_end: Callable[[], Awaitable[None]] | None = None,
                 name: str = "the jobmanager") -> None:
        self.gateway = gateway
        self.executor = executor
        self.registration = registration
        self.clock = clock
        self.metrics_interval = metrics_interval
        self.on_end = on_end
        self.name = name
        self.refusal: str | None = None
        self.ack: RegistrationAck | None = None
        self._ended = asyncio.Event()

    async def register(self) -> RegistrationAck | None:
        """Step 1; None when refused (see :attr:`refusal`) or when the call failed."""
        try:
            answer = await self.gateway.register(self.registration)
        except RetryableError as exc:
            logger.warning("registration at %s failed: %s", self.name, exc)
            return None
        if isinstance(answer, RegistrationRefused):
            self.refusal = f"{self.name} refused this taskmanager: {answer.reason}"
            return None
        self.ack = answer
        return answer

    async def run(self, until: Awaitable[Any]) -> None:
        """Steps 2-3 (call after a successful :meth:`register`)."""
        assert self.ack is not None
        async with asyncio.TaskGroup() as tg:
            loops = [tg.create_task(self._heartbeats(self.ack.heartbeat_interval, self.ack.heartbeat_timeout)),
                     tg.create_task(self._report_states()),
                     tg.create_task(self._report_checkpoints()),
                     tg.create_task(self._report_metrics())]
            stopper = tg.create_task(_wait(until))
            ended = tg.create_task(self._ended.wait())
            await asyncio.wait({stopper, ended}, return_when=asyncio.FIRST_COMPLETED)
            for t in (*loops, stopper, ended):
                t.cancel()
        if self.on_end is not None:
            await self.on_end()

    def _end(self) -> None:
        self._ended.set()

    async def _heartbeats(self, interval: float, timeout: float) -> None:
        last_ack = self.clock.monotonic()
        stats = ProcessStats()
        while True:
            try:
                await self.gateway.heartbeat(Heartbeat(self.registration.task_manager_id,
                                                       self.executor.slots.report(), await stats.sample()))
                last_ack = self.clock.monotonic()
            except RetryableError as exc:
                if getattr(exc, "retryable", False) or self.clock.monotonic() - last_ack > timeout:
                    # a rejected heartbeat means the JobManager forgot us (declared lost): re-register
                    logger.warning("heartbeat to %s failed: %s", self.name, exc)
                    self._end()
                    return
            await self.clock.sleep(interval)

    async def _report_states(self) -> None:
        executor = self.executor
        while True:
            await executor.updates_ready.wait()
            updates = executor.take_updates()
            if not updates:
                continue
            try:
                await self.gateway.update_task_states(TaskStateUpdates(self.registration.task_manager_id, updates))
            except RetryableError as exc:
                logger.warning("could not report %d subtask state change(s): %s", len(updates), exc)
                self._end()
                return

    async def _report_checkpoints(self) -> None:
        executor = self.executor
        while True:
            await executor.checkpoint_reports_ready.wait()
            for msg in executor.take_checkpoint_reports():
                try:
                    if isinstance(msg, AcknowledgeCheckpoint):
                        await self.gateway.acknowledge_checkpoint(msg)
                    else:
                        assert isinstance(msg, DeclineCheckpoint)
                        await self.gateway.decline_checkpoint(msg)
                except RetryableError as exc:
                    # the checkpoint times out at the JobManager; the job goes on
                    logger.warning("could not report checkpoint %d of job %s: %s", msg.checkpoint_id, msg.job_id, exc)

    async def _report_metrics(self) -> None:
        while True:
            await self.clock.sleep(self.metrics_interval)
            tasks = self.executor.sample_metrics()
            if not tasks:
                continue
            try:
                await self.gateway.report_metrics(MetricsReport(self.registration.task_manager_id, tasks))
            except RetryableError as exc:
                logger.debug("metrics report failed: %s", exc)


async def _wait(aw: Awaitable[Any]) -> None:
    await aw
