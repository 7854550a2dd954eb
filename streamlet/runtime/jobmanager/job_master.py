"""JobMaster: drives one job from submission to a terminal state.

:meth:`JobMaster.run` goes through these phases:

1. INITIALIZING: a :class:`~.source_coordinator.SourceCoordinator` per source vertex enumerates
   its splits (off the loop) and assigns them to subtasks; then the JobGraph is expanded into one
   Execution per subtask carrying its splits;
2. CREATED: ask the ResourceManager for the slots the job needs; while they are missing the job
   waits, with the reason in ``pending-reason``; after ``jobmanager.slot-request.timeout`` (on the
   injected clock) it FAILS;
3. RUNNING: place subtasks in slots, send one ``DeployTasks`` per TaskManager; from then on the
   TaskManagers report subtask states (:meth:`on_task_states`) and metrics (:meth:`on_metrics`);
4. the job ends FINISHED when every subtask finished; a failed subtask or a lost TaskManager
   moves it to FAILING, and :meth:`cancel` to CANCELLING: the other subtasks are cancelled, and
   when all are terminal the job is FAILED or CANCELED.  Subtasks that do not confirm their
   cancellation within ``taskmanager.cancel.timeout`` are counted as CANCELED;
5. finally every TaskManager involved is told to release the job, and its slots are freed.

Every state change goes through the transition tables of :mod:`.job_status`, inside synchronous
methods (so each runs alone on the loop); I/O (deploy, cancel, release calls) runs in tasks owned
by the job's TaskGroup.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Collection, Protocol

from dataclasses import replace

from streamlet.clock import Clock
from streamlet.errors import PipelineDefinitionError, StreamletError
from streamlet.graph.operators import SinkSpec, SourceSpec
from streamlet.keys import freeze, subtask_for_key
from streamlet.rest.base import ConflictError, NotFoundError, UnavailableError
from streamlet.rpc.errors import ConnectionClosedError, RpcError
from streamlet.graph.job_graph import JobGraph
from streamlet.graph.settings import checkpoint_settings, restart_settings
from streamlet.rest.schemas import ExceptionEntry, RestartEntry
from streamlet.rpc.messages import (
    AcknowledgeCheckpoint, DeclineCheckpoint, DeployTasks, NotifyCheckpointComplete, QueryState, TriggerCheckpoint,
)
from streamlet.runtime.jobmanager.checkpoint.coordinator import CheckpointCoordinator, JobView
from streamlet.runtime.jobmanager.checkpoint.metadata import CompletedCheckpoint
from streamlet.runtime.jobmanager.checkpoint.restore import match_vertices, split_states, subtask_restore
from streamlet.runtime.jobmanager.restart import RestartStrategy
from streamlet.state.storage import storage_options
from streamlet.runtime.jobmanager.job_metrics import CheckpointCounts
from streamlet.runtime.jobmanager.job_status import ExecutionState, IllegalTransitionError, JobStatus, transition
from streamlet.runtime.jobmanager.resource_manager import SlotAssignment
from streamlet.runtime.jobmanager.source_coordinator import SourceCoordinator
from streamlet.runtime.jobmanager.scheduler import (
    Execution, assign_slots, build_deployments, create_executions, slots_needed,
)
from streamlet.rpc.gateways import TaskManagerGateway

logger = logging.getLogger(__name__)
E = ExecutionState
J = JobStatus
#: below this many subtasks a job is expanded on the loop (it takes well under a millisecond)
_INLINE_SUBTASKS = 64


class SlotProvider(Protocol):
    """What a JobMaster needs of the ResourceManager."""

    def request_slots(self, job_id: str, slots: int) -> asyncio.Future[list[SlotAssignment]]: ...

    def cancel_request(self, job_id: str) -> None: ...

    def release_slots(self, job_id: str, unconfirmed: Collection[str] = ()) -> int: ...

    def pending_reason(self, job_id: str) -> str | None: ...

    def gateway(self, task_manager_id: str) -> TaskManagerGateway | None: ...


@dataclass(frozen=True)
class JobMasterConfig:
    """Timeouts of one job (from ``jobmanager.slot-request.timeout``, ``taskmanager.cancel.timeout``)."""

    slot_request_timeout: float = 300.0
    cancel_timeout: float = 10.0
    #: the keyed-state backend of jobs that name none (``state.backend.type``)
    state_backend: str = "heap"
    #: the JobManager's configuration: defaults of checkpointing, restarts, storage options
    config: Any = None


class JobMaster:
    """One job (see the module docstring)."""

    def __init__(self, job_id: str, graph: JobGraph, resources: SlotProvider, clock: Clock,
                 config: JobMasterConfig | None = None, files: dict[str, bytes] | None = None,
                 restore: CompletedCheckpoint | None = None, allow_non_restored_state: bool = False,
                 restore_external: bool = True,
                 on_checkpoint: Callable[[CompletedCheckpoint], Awaitable[None]] | None = None) -> None:
        self.job_id = job_id
        self.graph = graph
        #: vertex id -> the coordinator of that source vertex (its splits and their assignment)
        self.source_coordinators = {v.id: SourceCoordinator(v) for v in graph.vertices if v.is_source}
        self.resources = resources
        self.clock = clock
        self.config = config or JobMasterConfig()
        self.files = dict(files or {})
        self.status = J.INITIALIZING
        self.timestamps: dict[str, int] = {J.INITIALIZING.value: clock.time_ms()}
        self.executions: list[Execution] = []
        self.exceptions: list[ExceptionEntry] = []
        #: every restart, in order (``GET /jobs/:id/exceptions``, ``restarts``)
        self.restarts: list[RestartEntry] = []
        #: the restart decided and not yet carried out: (number, failure time, delay ms, cause)
        self._next_restart: tuple[int, int, int, str] | None = None
        #: times the job went RESTARTING (Flink's ``numRestarts``)
        self.num_restarts = 0
        self._by_key: dict[tuple[str, int], Execution] = {}
        self._terminal = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._deployed_to: set[str] = set()
        conf = self.config.config or {}
        self.checkpoint_settings = checkpoint_settings(graph.checkpointing, conf)
        self.restart_settings = restart_settings(graph.restart, conf, self.checkpoint_settings.enabled)
        self.restart_strategy = RestartStrategy(self.restart_settings)
        #: the savepoint (or external checkpoint) the job was submitted to start from
        self.initial_restore = restore
        self.allow_non_restored_state = allow_non_restored_state
        #: False: ``restore`` is a checkpoint of this job itself (a recovered JobManager)
        self.restore_external = restore_external
        self.coordinator = CheckpointCoordinator(
            self.checkpoint_settings, JobView(
                job_id, graph.name, graph.max_parallelism, self._running_subtasks, self._vertex_table,
                self._can_checkpoint, self._send_trigger, self._send_complete, on_checkpoint),
            clock, lambda uri: storage_options(uri, conf))
        self._fresh_assignment: dict[str, list[list[dict[str, Any]]]] = {}
        self._restarting: asyncio.Task[None] | None = None
        self._trigger_loop: asyncio.Task[None] | None = None
        #: stop-with-savepoint: the job ends FINISHED once its subtasks are cancelled
        self._stopping_with_savepoint = False
        self._deploys: list[asyncio.Task[None]] = []
        #: one per source whose coordinator discovers new splits while the job runs
        self._discoveries: list[asyncio.Task[None]] = []

    # -- queryable state --------------------------------------------------------------------

    async def query_state(self, node_id: str, key: Any, timeout: float) -> dict[str, Any]:
        """The live keyed state of ``node_id`` for ``key``, read over the RPC from the subtask that
        owns the key's key group (see :mod:`streamlet.state.query`).

        Raises NotFoundError for an unknown node, StreamletError for a node without keyed state,
        ConflictError when the job or that subtask is not running, UnavailableError when its
        TaskManager does not answer.
        """
        found = next(((v, op) for v in self.graph.vertices for op in v.operators if op.id == node_id), None)
        if found is None:
            raise NotFoundError(f"job {self.job_id!r} has no node {node_id!r}; GET /jobs/{self.job_id}/plan "
                                "lists its operators")
        vertex, op = found
        if op.FUSABLE or isinstance(op, (SourceSpec, SinkSpec)):
            raise StreamletError(f"node {node_id!r} ({op.KIND}) keeps no keyed state; query a keyed node "
                                 "(aggregate, reduce, window, process, join)")
        try:
            frozen = freeze(key)
            index = subtask_for_key(frozen, vertex.parallelism, self.graph.max_parallelism)
        except TypeError as exc:
            raise StreamletError(f"key {key!r} cannot be a key: {exc}") from None
        ex = self._by_key.get((vertex.id, index))
        if self.status is not J.RUNNING or ex is None or ex.state is not E.RUNNING or ex.slot is None:
            raise ConflictError(f"job {self.job_id} is {self.status.value} and subtask {index} of {vertex.name!r} "
                                f"is {ex.state.value if ex else 'not created'}; state is readable while it runs")
        gateway = self.resources.gateway(ex.slot.task_manager_id)
        if gateway is None:
            raise UnavailableError(f"taskmanager {ex.slot.task_manager_id} of subtask {ex.name} is gone; retry")
        request = QueryState(self.job_id, vertex.id, index, node_id, key)
        try:
            async with asyncio.timeout(timeout):
                answer = await gateway.query_state(request)
        except TimeoutError:
            raise UnavailableError(f"taskmanager {ex.slot.task_manager_id} did not answer the state query within "
                                   f"{timeout:g}s (rpc.ask-timeout); retry") from None
        except RpcError as exc:
            raise UnavailableError(f"the state query to taskmanager {ex.slot.task_manager_id} failed: {exc}") from None
        return {"jid": self.job_id, "node": node_id, "key": key, "vertex": vertex.id, "subtask": answer.subtask,
                "key-group": answer.key_group, "live": True, "states": answer.states,
                "truncated": answer.truncated}

    # -- metrics (see job_metrics.py) -------------------------------------------------------

    def checkpoint_counts(self) -> CheckpointCounts:
        """Counts of this job's checkpoints, from its checkpoint coordinator."""
        c = self.coordinator
        last = c.history_latest_completed()
        return CheckpointCounts(c.counts["completed"], c.counts["failed"], c.counts["in_progress"],
                                int(last["end_to_end_duration"]) if last else -1,
                                int(last["checkpointed_size"]) if last else -1)

    def uptime_ms(self) -> int:
        """Milliseconds in RUNNING since the job last started running; 0 before, -1 once terminal."""
        if self.is_terminal:
            return -1
        since = self.timestamps.get(J.RUNNING.value)
        if self.status is not J.RUNNING or since is None:
            return 0
        return max(0, self.clock.time_ms() - since)

    def downtime_ms(self) -> int:
        """Milliseconds since the job began failing or restarting, while it does; else 0."""
        if self.status not in (J.FAILING, J.RESTARTING):
            return 0
        since = self.timestamps.get(self.status.value)
        return max(0, self.clock.time_ms() - since) if since is not None else 0

    # -- life cycle -------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def terminated(self) -> asyncio.Event:
        """Set once the job reached a terminal state (its resources may still be being released)."""
        return self._terminal

    async def run(self) -> None:
        """Run the job to a terminal state and release its resources; never raises for a job failure."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._start()
                await self._terminal.wait()
                for t in (self._watchdog, self._restarting, self._trigger_loop, *self._discoveries):
                    if t is not None:
                        t.cancel()
                await self.coordinator.close()
        except Exception as exc:  # noqa: BLE001 - a bug here must fail this job, not the JobManager
            logger.exception("job %s: job master crashed", self.job_id)
            self._record(f"internal error in the job master: {type(exc).__name__}: {exc}")
            self._force_terminal(J.FAILED)
        finally:
            self._tg = None
            await self._release()

    async def _start(self) -> None:
        try:
            for coordinator in self.source_coordinators.values():
                await coordinator.start()
            self._fresh_assignment = {vid: c.snapshot() for vid, c in self.source_coordinators.items()}
            if self.checkpoint_settings.enabled:
                await asyncio.to_thread(self._check_checkpoint_storage)
        except PipelineDefinitionError as exc:
            self.fail(str(exc))
            return
        if self.is_terminal:  # cancelled while enumerating
            return
        await self._schedule(self.initial_restore, external=self.restore_external)

    def _check_checkpoint_storage(self) -> None:
        try:
            self.coordinator.check_storage()
        except Exception as exc:  # noqa: BLE001 - any storage failure: the job cannot checkpoint
            raise PipelineDefinitionError(
                f"the checkpoint location {self.coordinator.storage_uri} cannot be written ({type(exc).__name__}: "
                f"{exc}); set checkpointing.dir (or execution.checkpointing.dir) to a writable directory or "
                "bucket") from None

    async def _schedule(self, restore: CompletedCheckpoint | None, external: bool) -> None:
        """Expand, allocate and deploy the job, restoring ``restore`` (None: a fresh start)."""
        olds: dict[str, list[tuple[dict[str, Any], frozenset[str]]]] = {}
        if restore is not None:
            try:
                olds = match_vertices(restore, self.graph, self.allow_non_restored_state)
            except PipelineDefinitionError as exc:
                self.fail(str(exc))
                return
            for vid, c in self.source_coordinators.items():
                c.restore(split_states(olds.get(vid, [])))
            self.coordinator.restored_from(restore, external)
        else:
            for vid, c in self.source_coordinators.items():
                c.assignment = [list(a) for a in self._fresh_assignment.get(vid, c.assignment)]
        splits = {vid: c.assignment for vid, c in self.source_coordinators.items()}
        # expanding and serialising a big graph takes up to a second: off the loop, so REST and
        # heartbeats stay responsive (the graph is immutable; the thread touches nothing else)
        try:
            executions = await self._off_loop(create_executions, self.graph, self.job_id, splits,
                                              self.config.state_backend)
        except Exception as exc:  # noqa: BLE001 - a graph that cannot be expanded fails the job
            self.fail(f"could not create the execution graph: {type(exc).__name__}: {exc}")
            return
        if self.is_terminal:  # cancelled while expanding
            return
        storage = self.coordinator.storage_uri
        mode = self.checkpoint_settings.mode
        for ex in executions:
            r = (subtask_restore(restore, olds.get(ex.tdd.vertex_id, []), ex.tdd.subtask_index, ex.tdd.parallelism,
                                 external) if restore is not None else None)
            ex.tdd = replace(ex.tdd, checkpoint_storage=storage, checkpointing_mode=mode, restore=r)
        self.executions = executions
        self._by_key = {ex.key: ex for ex in executions}
        self._set_status(J.CREATED)
        slots = await self._allocate()
        if slots is None:
            return
        assign_slots(self.executions, slots)
        deployments = await self._off_loop(build_deployments, self.job_id, self.graph.name, self.executions,
                                           self.files)
        if self.status is not J.CREATED:  # cancelled or failed while the deployments were built
            self.resources.release_slots(self.job_id)
            return
        for ex in self.executions:
            self._set_execution(ex, E.SCHEDULED)
        self._set_status(J.RUNNING)
        assert self._tg is not None
        self._deploys = []
        self._stop_discoveries()
        for tm, deployment in deployments.items():
            for ex in self.executions:
                if ex.slot is not None and ex.slot.task_manager_id == tm:
                    self._set_execution(ex, E.DEPLOYING)
            self._deployed_to.add(tm)
            self._deploys.append(self._tg.create_task(self._deploy(tm, deployment)))
        for coordinator in self.source_coordinators.values():
            interval = coordinator.discovery_interval
            if interval:
                self._discoveries.append(self._tg.create_task(self._discover(coordinator, interval)))
        if self._trigger_loop is None and self.checkpoint_settings.enabled:
            self._trigger_loop = self._tg.create_task(self.coordinator.run())

    # -- checkpoints ------------------------------------------------------------------------

    def _running_subtasks(self) -> dict[tuple[str, int], str]:
        return {ex.key: ex.attempt_id for ex in self.executions if ex.state is not E.FINISHED}

    def _vertex_table(self) -> dict[str, tuple[str, int, list[str]]]:
        return {v.id: (v.name, v.parallelism, [op.id for op in v.operators]) for v in self.graph.vertices}

    def _can_checkpoint(self) -> bool:
        return (self.status is J.RUNNING and bool(self.executions)
                and all(ex.state in (E.RUNNING, E.FINISHED) for ex in self.executions)
                and any(ex.state is E.RUNNING for ex in self.executions))

    def _job_task_managers(self) -> list[str]:
        return sorted({ex.slot.task_manager_id for ex in self.executions
                       if ex.slot is not None and not ex.state.is_terminal})

    async def _send_trigger(self, n: int, timestamp: int, storage: str, directory: str, savepoint: bool,
                            drain: bool) -> None:
        msg = TriggerCheckpoint(self.job_id, n, timestamp, storage, directory, savepoint, drain)
        tms = self._job_task_managers()
        # every TaskManager learns the target first; sources inject the barrier on arrival (sources
        # are usually fewer, so TaskManagers without sources are told first)
        has_source = {ex.slot.task_manager_id for ex in self.executions
                      if ex.slot is not None and ex.tdd.operators and ex.tdd.vertex_id in self.source_coordinators}
        for tm in sorted(tms, key=lambda t: t in has_source):
            gateway = self.resources.gateway(tm)
            try:
                if gateway is None:
                    raise ConnectionError("it is gone")
                await gateway.trigger_checkpoint(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the checkpoint cannot complete: abort it
                if self.coordinator.pending is not None and self.coordinator.pending.checkpoint_id == n:
                    self.coordinator.abort(f"checkpoint {n}: could not reach taskmanager {tm}: {exc}")
                return

    async def _send_complete(self, n: int) -> None:
        msg = NotifyCheckpointComplete(self.job_id, n)

        async def one(tm: str) -> None:
            gateway = self.resources.gateway(tm)
            try:
                if gateway is not None:
                    await gateway.notify_checkpoint_complete(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the sinks commit again after a restore
                logger.warning("job %s: taskmanager %s did not take the completion of checkpoint %d: %s",
                               self.job_id, tm, n, exc)

        await asyncio.gather(*(one(tm) for tm in self._job_task_managers()))

    def on_checkpoint_report(self, msg: AcknowledgeCheckpoint | DeclineCheckpoint) -> None:
        ex = self._by_key.get((msg.vertex_id, msg.subtask_index))
        if ex is None or ex.attempt_id != msg.attempt_id:
            return
        self.coordinator.on_report(msg)

    async def trigger_checkpoint(self) -> CompletedCheckpoint:
        """A checkpoint now (``POST /jobs/:id/checkpoints``); raises CheckpointAbortedError."""
        return await self.coordinator.trigger()

    async def savepoint(self, target: str, stop: bool = False, drain: bool = False) -> CompletedCheckpoint:
        """A savepoint into ``target``; with ``stop`` the job then ends FINISHED (stop-with-savepoint:
        records after the savepoint are not committed by exactly-once sinks); with ``drain`` the
        sources end their input after the savepoint instead, so windows fire and the job finishes."""
        done = await self.coordinator.trigger(savepoint=True, target=target, drain=stop and drain)
        if stop and not drain and not self.is_terminal and self.status is J.RUNNING:
            self._stopping_with_savepoint = True
            self._set_status(J.CANCELLING)
            self._cancel_executions()
        return done

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` in a thread for a big job, inline for a small one (microseconds, and no
        dependence on thread scheduling)."""
        if sum(v.parallelism for v in self.graph.vertices) < _INLINE_SUBTASKS:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def _allocate(self) -> list[SlotAssignment] | None:
        n = slots_needed(self.graph)
        fut = self.resources.request_slots(self.job_id, n)
        async with asyncio.TaskGroup() as tg:  # owns the two waiters; they are cancelled right after
            timeout = tg.create_task(self.clock.sleep(self.config.slot_request_timeout))
            ended = tg.create_task(self._terminal.wait())
            await asyncio.wait({fut, timeout, ended}, return_when=asyncio.FIRST_COMPLETED)
            timeout.cancel()
            ended.cancel()
        if fut.done() and not fut.cancelled():
            slots = fut.result()
            if self.status is not J.CREATED:  # cancelled or failed while the slots arrived
                self.resources.release_slots(self.job_id)
                return None
            return slots
        reason = self.resources.pending_reason(self.job_id)
        self.resources.cancel_request(self.job_id)
        fut.cancel()
        if not self.is_terminal:
            self.fail(f"could not get {n} slot(s) within {self.config.slot_request_timeout:g}s "
                      f"(jobmanager.slot-request.timeout): {reason or 'not enough free slots'}")
        return None

    async def _deploy(self, task_manager_id: str, deployment: DeployTasks) -> None:
        gateway = self.resources.gateway(task_manager_id)
        try:
            if gateway is None:
                raise ConnectionError(f"taskmanager {task_manager_id} is gone")
            await gateway.deploy(deployment)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any deploy failure fails the job with its reason
            if isinstance(exc, (ConnectionClosedError, ConnectionError)):
                # its connection closed during the deployment: the process is gone (killed, crashed)
                reason = f"taskmanager {task_manager_id} lost while deploying to it: {exc}"
            else:
                reason = f"could not deploy to taskmanager {task_manager_id}: {exc}"
            # a refused deployment was undone on the TaskManager: those subtasks will never report
            # (a deployment that timed out may still start: the release at the end stops it)
            for ex in self.executions:
                if ex.state is E.DEPLOYING and ex.slot is not None and ex.slot.task_manager_id == task_manager_id:
                    ex.failure = reason
                    self._set_execution(ex, E.FAILED)
            self.fail(reason, task_manager_id=task_manager_id)
            self._check_done()

    def _stop_discoveries(self) -> None:
        """End the discovery loops of the attempt that ran (a restart starts new ones)."""
        for task in self._discoveries:
            task.cancel()
        self._discoveries = []

    async def _discover(self, coordinator: SourceCoordinator, interval: float) -> None:
        """While the job runs, every ``interval`` s: new splits of the source go to its subtasks.

        Starts once every deployment was answered (each subtask exists on its TaskManager); a
        source that cannot be listed is tried again at the next interval; a TaskManager that does
        not take its splits fails the job (they would be lost).
        """
        if self._deploys:
            await asyncio.wait(list(self._deploys))
        vertex = coordinator.vertex
        while self.status is J.RUNNING:
            await self.clock.sleep(interval)
            if self.status is not J.RUNNING:
                return
            try:
                fresh = await coordinator.discover()
            except OSError as exc:
                logger.warning("job %s: source %r: looking for new splits failed (tried again in %gs): %s",
                               self.job_id, coordinator.spec.id, interval, exc)
                continue
            for index, splits in sorted(fresh.items()):
                ex = self._by_key[(vertex.id, index)]
                tm = ex.slot.task_manager_id if ex.slot is not None else None
                gateway = self.resources.gateway(tm) if tm is not None else None
                try:
                    if gateway is None:
                        raise ConnectionError(f"taskmanager {tm} is gone")
                    await gateway.add_splits(self.job_id, vertex.id, index, splits)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - splits that reach no reader fail the job
                    if self.status is J.RUNNING:
                        self.fail(f"could not hand {len(splits)} new split(s) of source {coordinator.spec.id!r} to "
                                  f"subtask {ex.name}: {exc}", ex.name, task_manager_id=tm)
                    return

    async def _release(self) -> None:
        unconfirmed: set[str] = set()

        async def release(tm: str) -> None:
            gateway = self.resources.gateway(tm)
            if gateway is None:
                return
            try:
                await gateway.release_job(self.job_id)
            except Exception as exc:  # noqa: BLE001 - the ResourceManager retries from the heartbeats
                logger.warning("job %s: taskmanager %s did not confirm the release: %s", self.job_id, tm, exc)
                unconfirmed.add(tm)

        # the release goes out before the slots are free, so a later deployment into the same slots
        # reaches the TaskManager after it (one ordered connection per TaskManager)
        await asyncio.gather(*(release(tm) for tm in sorted(self._deployed_to)))
        # slots of an unconfirmed release stay held until that TaskManager reports them free
        self.resources.release_slots(self.job_id, unconfirmed)

    # -- commands and reports (synchronous: each runs alone on the loop) -------------------

    def cancel(self) -> None:
        """Cancel the job: CANCELED at once when nothing runs yet, else CANCELLING until every subtask ended."""
        if self.is_terminal or self.status is J.CANCELLING:
            return
        if self._end_before_running(J.CANCELED):
            return
        self._set_status(J.CANCELLING)
        self._cancel_executions()

    def suspend(self, reason: str) -> None:
        """The JobManager shuts down: end the job SUSPENDED without waiting for any TaskManager.

        TaskManagers cancel their subtasks themselves when they lose the JobManager.
        """
        if self.is_terminal:
            return
        self._record(reason)
        for ex in self.executions:
            if not ex.state.is_terminal:
                ex.state = E.CANCELED  # no confirmation can come any more; the table is bypassed on purpose
                ex.timestamps[E.CANCELED.value] = self.clock.time_ms()
        self._force_terminal(J.SUSPENDED)
        self.resources.cancel_request(self.job_id)

    def fail(self, reason: str, task: str | None = None, location: str | None = None,
             task_manager_id: str | None = None) -> None:
        """Record a failure; the first one fails the job (the rest is cancelled)."""
        self._record(reason, task, location, task_manager_id)
        if self.is_terminal or self.status in (J.FAILING, J.CANCELLING, J.RESTARTING):
            return
        self.coordinator.abort(f"the job failed: {reason}")
        if self.status is J.RUNNING:
            delay = self.restart_strategy.next_delay(self.clock.monotonic())
            if delay is not None:
                logger.info("job %s: restarting in %.3gs (%s, restart %d)", self.job_id, delay,
                            self.restart_settings.strategy, self.num_restarts + 1)
                self._restart_delay = delay
                self._set_status(J.RESTARTING)
                # the failure just recorded caused this restart
                self.exceptions[-1] = dataclasses.replace(self.exceptions[-1], restart=self.num_restarts)
                self._next_restart = (self.num_restarts, self.exceptions[-1].timestamp, int(delay * 1000), reason)
                self._cancel_executions()
                return
        if self._end_before_running(J.FAILED):
            return
        self._set_status(J.FAILING)
        self._cancel_executions()

    def _end_before_running(self, target: JobStatus) -> bool:
        """End a job that has no deployed subtask yet at once (True), else leave it (False)."""
        if self.status not in (J.INITIALIZING, J.CREATED):
            return False
        self.resources.cancel_request(self.job_id)
        for ex in self.executions:
            self._set_execution(ex, E.CANCELED)
        self._set_status(target)
        return True

    def on_task_states(self, task_manager_id: str, updates: list[dict[str, Any]]) -> None:
        """Apply subtask state reports of this job, in order; stale or impossible reports are ignored."""
        for u in updates:
            ex = self._by_key.get((u.get("vertex_id", ""), u.get("subtask_index", -1)))
            if ex is None or ex.attempt_id != u.get("attempt_id") or ex.state.is_terminal:
                continue
            try:
                target = ExecutionState(u["state"])
            except (KeyError, ValueError):
                logger.warning("job %s: ignoring a report with state %r", self.job_id, u.get("state"))
                continue
            if u.get("metrics"):
                ex.metrics = {**(ex.metrics or {}), **u["metrics"]}
            requested = ex.state is E.CANCELING
            try:
                self._set_execution(ex, target)
            except IllegalTransitionError as exc:
                logger.warning("job %s: ignoring report from taskmanager %s: %s", self.job_id, task_manager_id, exc)
                continue
            if target is E.FINISHED:
                self.coordinator.on_subtask_finished(*ex.key)
                continue
            if requested and self.status in (J.RESTARTING, J.CANCELLING):
                continue  # the end of a subtask we cancelled
            if target is E.FAILED:
                ex.failure = u.get("error") or "subtask failed"
            elif target is E.CANCELED and not requested:
                # nobody asked for it (e.g. the TaskManager dropped the job): the job cannot finish
                ex.failure = f"subtask {ex.name} canceled unexpectedly on taskmanager {task_manager_id}"
            else:
                continue
            self.fail(ex.failure, ex.name, ex.slot.data_address if ex.slot else None, task_manager_id)
        self._check_done()

    def on_metrics(self, task_manager_id: str, tasks: list[dict[str, Any]]) -> None:
        """Store the latest metrics of this job's subtasks."""
        for t in tasks:
            ex = self._by_key.get((t.get("vertex_id", ""), t.get("subtask_index", -1)))
            if ex is not None and ex.attempt_id == t.get("attempt_id") and not ex.state.is_terminal:
                ex.metrics = t

    def on_task_manager_lost(self, task_manager_id: str, reason: str) -> None:
        """Fail the subtasks that ran on a lost TaskManager, and with them the job."""
        if self.is_terminal:
            return
        lost = [ex for ex in self.executions
                if ex.slot is not None and ex.slot.task_manager_id == task_manager_id and not ex.state.is_terminal]
        self._deployed_to.discard(task_manager_id)
        if not lost:
            return
        for ex in lost:
            ex.failure = reason
            self._set_execution(ex, E.FAILED)
        self.fail(reason, lost[0].name, lost[0].slot.data_address if lost[0].slot else None, task_manager_id)
        self._check_done()

    # -- internals --------------------------------------------------------------------------

    def _record(self, reason: str, task: str | None = None, location: str | None = None,
                task_manager_id: str | None = None) -> None:
        logger.warning("job %s (%s): %s", self.job_id, self.graph.name, reason)
        self.exceptions.append(ExceptionEntry(reason, self.clock.time_ms(), task, location, task_manager_id))

    def _set_status(self, target: JobStatus) -> None:
        self.status = transition(self.status, target, f"job {self.job_id}")
        self.timestamps[target.value] = self.clock.time_ms()
        if target is J.RESTARTING:
            self.num_restarts += 1
        logger.info("job %s (%s) is %s", self.job_id, self.graph.name, target.value)
        if target.is_terminal:
            self._terminal.set()

    def _force_terminal(self, target: JobStatus) -> None:
        if not self.is_terminal:
            self.status = target
            self.timestamps[target.value] = self.clock.time_ms()
        self._terminal.set()

    def _set_execution(self, ex: Execution, target: ExecutionState) -> None:
        if ex.state is target:
            return
        ex.state = transition(ex.state, target, f"subtask {ex.name} of job {self.job_id}")
        ex.timestamps[target.value] = self.clock.time_ms()

    def _cancel_executions(self) -> None:
        targets: set[str] = set()
        for ex in self.executions:
            if ex.state.is_terminal:
                continue
            if ex.state in (E.CREATED, E.SCHEDULED):
                self._set_execution(ex, E.CANCELED)
            else:
                if ex.state is not E.CANCELING:
                    self._set_execution(ex, E.CANCELING)
                assert ex.slot is not None
                targets.add(ex.slot.task_manager_id)
        if self._tg is not None:
            for tm in sorted(targets):
                self._tg.create_task(self._send_cancel(tm))
            if targets and self._watchdog is None:
                self._watchdog = self._tg.create_task(self._cancel_watchdog())
        self._check_done()

    async def _send_cancel(self, task_manager_id: str) -> None:
        gateway = self.resources.gateway(task_manager_id)
        try:
            if gateway is None:
                raise ConnectionError("it is gone")
            await gateway.cancel_job(self.job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreachable TaskManager runs nothing of ours any more
            logger.warning("job %s: cancel on taskmanager %s failed (%s); counting its subtasks as canceled",
                           self.job_id, task_manager_id, exc)
            self._force_canceled(lambda ex: ex.slot is not None and ex.slot.task_manager_id == task_manager_id,
                                 f"taskmanager {task_manager_id} unreachable during cancellation: {exc}")

    async def _cancel_watchdog(self) -> None:
        await self.clock.sleep(self.config.cancel_timeout)
        self._force_canceled(lambda ex: True, f"did not confirm cancellation within {self.config.cancel_timeout:g}s "
                                              "(taskmanager.cancel.timeout)")

    def _force_canceled(self, which: Any, why: str) -> None:
        for ex in self.executions:
            if not ex.state.is_terminal and which(ex):
                logger.warning("job %s: subtask %s %s", self.job_id, ex.name, why)
                if ex.state is not E.CANCELING:
                    self._set_execution(ex, E.CANCELING)
                self._set_execution(ex, E.CANCELED)
        self._check_done()

    def _check_done(self) -> None:
        if self.is_terminal or not self.executions:
            return
        if self.status is J.RESTARTING and self._restarting is not None:
            return
        if not all(ex.state.is_terminal for ex in self.executions):
            return
        if self.status is J.RUNNING:
            if all(ex.state is E.FINISHED for ex in self.executions):
                self._set_status(J.FINISHED)
                return
            # every subtask ended, not all of them well, and no failure was recorded on the way
            self._record("every subtask ended but not all of them finished")
            self._set_status(J.FAILING)
            self._set_status(J.FAILED)
        elif self.status is J.FAILING:
            self._set_status(J.FAILED)
        elif self.status is J.CANCELLING:
            self._set_status(J.FINISHED if self._stopping_with_savepoint else J.CANCELED)
        elif self.status is J.RESTARTING and self._restarting is None and self._tg is not None:
            self._restarting = self._tg.create_task(self._restart())

    async def _restart(self) -> None:
        """Every subtask of the failed attempt ended: release them, wait, start again from the
        latest completed checkpoint (or the initial savepoint, or from scratch)."""
        try:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            self._stop_discoveries()
            await self._release()
            self._deployed_to.clear()
            await self.clock.sleep(getattr(self, "_restart_delay", 0.0))
            if self.status is not J.RESTARTING:
                return
            latest = self.coordinator.latest
            restore, external = ((latest, False) if latest is not None
                                 else (self.initial_restore, self.restore_external))
            if self._next_restart is not None:
                number, failed_at, delay_ms, cause = self._next_restart
                self._next_restart = None
                self.restarts.append(RestartEntry(number, failed_at, delay_ms, self.clock.time_ms(),
                                                  restore.checkpoint_id if restore is not None and not external
                                                  else None, cause))
                logger.info("job %s: restart %d from %s", self.job_id, number,
                            f"checkpoint {self.restarts[-1].checkpoint_id}"
                            if self.restarts[-1].checkpoint_id is not None else "the start")
            await self._schedule(restore, external)
        finally:
            self._restarting = None
