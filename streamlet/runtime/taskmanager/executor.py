"""TaskExecutor: deploys and runs the subtasks the JobManager gives this TaskManager.

Deployment of one job's subtasks on this TaskManager (one ``DeployTasks`` message):

1. check the slots (:class:`~.slots.SlotTable`) and write the job's files to a per-job directory
   that goes first on ``sys.path`` while the job is here (its modules are imported apart from
   other jobs' modules of the same name, see :func:`~streamlet.runtime.job_files.job_modules`);
2. create every input channel; one whose producer runs on another TaskManager is registered with
   the :class:`NetworkEnvironment` before any task starts (credit covers a sender that is faster);
3. create every output channel: a :class:`LocalOutputChannel` into the consumer's input channel
   when the consumer runs here, else the environment's remote channel to the consumer's
   TaskManager;
4. build each Task, in a worker thread (it imports user modules); a failure in 1-4 undoes
   everything and fails the deployment with its reason;
5. start each Task as a task of the executor's TaskGroup.

A subtask whose code holds the event loop longer than ``task.watchdog.timeout`` is interrupted by
the :class:`~.watchdog.LoopWatchdog` and reported FAILED with the reason; a subtask whose user
code calls ``sys.exit()`` fails the same way instead of ending the process.

Each subtask's state changes (INITIALIZING, RUNNING, then FINISHED / FAILED / CANCELED with the
final counters) are queued in order and sent by the TaskManager's reporter
(:meth:`TaskExecutor.take_updates`); per-subtask metrics are sampled by :meth:`sample_metrics`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Protocol

from streamlet.clock import Clock
from streamlet.errors import StreamletError
from streamlet.ids import subtask_name
from streamlet.metrics.registry import MetricGroup, perf
from streamlet.graph.execution_graph import TaskDeploymentDescriptor
from streamlet.keys import KeyGroupRange, freeze, key_group_for
from streamlet.logging import set_log_context
from streamlet.rpc.messages import (
    AcknowledgeCheckpoint, DeclineCheckpoint, DeployTasks, Message, QueryState, SampleStacks, StateValue,
    TriggerCheckpoint,
)
from streamlet.runtime.job_files import forget_job, job_modules, write_job_files
from streamlet.runtime.taskmanager.network.channels import InputChannel, InputGate, LocalOutputChannel, OutputChannel
from streamlet.runtime.taskmanager.slots import SlotTable
from streamlet.runtime.taskmanager.stack_sampler import sample_stacks, sample_stacks_on_signals, signals_usable
from streamlet.runtime.taskmanager.deployment import build_task
from streamlet.runtime.taskmanager.task import Task, TaskConfig, TaskSnapshot
from streamlet.state.query import node_states, read_key
from streamlet.runtime.taskmanager.watchdog import LoopWatchdog, TaskInterrupted
from streamlet.state.factory import BACKEND_KINDS, backend_options, create_backend
from streamlet.state.storage import open_storage, storage_options

logger = logging.getLogger(__name__)


class Network(Protocol):
    """The part of :class:`~.network.environment.NetworkEnvironment` the executor uses."""

    def register_input_channel(self, job_id: str, channel: InputChannel) -> None: ...

    def output_channel(self, job_id: str, channel_id: str, peer_address: str) -> OutputChannel: ...

    def unregister_job(self, job_id: str) -> None: ...


class LocalOnlyNetwork:
    """The network of a TaskManager with no peers (``streamlet run`` in one process): every channel
    is local, so asking for a remote one is a scheduling bug."""

    address = "local"

    def register_input_channel(self, job_id: str, channel: InputChannel) -> None:
        raise RuntimeError(f"job {job_id}: channel {channel.channel_id} has a remote producer, but this "
                           "taskmanager runs alone in its process")

    def output_channel(self, job_id: str, channel_id: str, peer_address: str) -> OutputChannel:
        raise RuntimeError(f"job {job_id}: channel {channel_id} goes to {peer_address}, but this taskmanager "
                           "runs alone in its process")

    def unregister_job(self, job_id: str) -> None:
        return None


@dataclass
class _Subtask:
    tdd: TaskDeploymentDescriptor
    attempt_id: str
    slot: int
    task: Task
    runner: asyncio.Task[None] | None = None
    terminal_reported: bool = False
    #: uploads of this subtask's checkpoints in progress (FINISHED is reported after them)
    persists: set[asyncio.Task[None]] = field(default_factory=set)
    #: why the watchdog interrupted the subtask (set from the watchdog's thread)
    interrupted: str | None = None

    @property
    def name(self) -> str:
        return self.task.name


@dataclass
class _Job:
    job_id: str
    job_dir: Path | None
    #: the slots the deployment took
    slots: list[int] = field(default_factory=list)
    subtasks: list[_Subtask] = field(default_factory=list)
    #: the metric groups of its subtasks here (removed from the TaskManager's when it is dropped)
    metric_groups: list[MetricGroup] = field(default_factory=list)
    #: released by the JobManager (or the connection was lost): slots are freed as their tasks end
    dropped: bool = False
    #: checkpoint id -> its TriggerCheckpoint (where this job's subtasks persist it); the latest few
    targets: dict[int, TriggerCheckpoint] = field(default_factory=dict)
    #: storage URI -> the opened storage
    storages: dict[str, Any] = field(default_factory=dict)


def _cancel(job: _Job) -> None:
    for st in job.subtasks:
        if st.runner is not None and not st.runner.done():
            st.runner.cancel()


def _error_text(exc: BaseException) -> str:
    # streamlet's own errors are written for users; anything else needs its type to make sense
    text = str(exc)
    return text if isinstance(exc, StreamletError) and text else f"{type(exc).__name__}: {text}"


#: checkpoint targets kept per job (older ones are of checkpoints long aborted or complete)
_TARGETS_KEPT = 16


class _CheckpointReporter:
    """The :class:`~.task.CheckpointListener` of one deployed subtask: persists the asynchronous
    part of its snapshot off the task (a task of the executor) and queues the acknowledgement."""

    def __init__(self, executor: TaskExecutor, job: _Job, st: _Subtask) -> None:
        self.executor = executor
        self.job = job
        self.st = st

    def acknowledge(self, task: Task, snapshot: TaskSnapshot) -> None:
        tg = self.executor._tg
        if tg is None or self.job.dropped:
            if snapshot.keyed is not None:
                snapshot.keyed.discard()
            return
        t = tg.create_task(self.executor._persist(self.job, self.st, snapshot), name=f"persist-{task.name}")
        self.st.persists.add(t)
        t.add_done_callback(self.st.persists.discard)

    def decline(self, task: Task, checkpoint_id: int, reason: str) -> None:
        self.executor._queue_checkpoint_report(self.st, DeclineCheckpoint(
            self.executor.task_manager_id, self.job.job_id, self.st.tdd.vertex_id, self.st.tdd.subtask_index,
            self.st.attempt_id, checkpoint_id, f"{task.name}: {reason}"))


def state_options(config: Any) -> dict[str, dict[str, Any]]:
    """Each state backend kind's options from a configuration (``state.backend.<kind>.*``)."""
    return {kind: backend_options(kind, config) for kind in BACKEND_KINDS}


def watchdog_timeout(config: Any) -> float:
    """Seconds a subtask may hold the event loop (``task.watchdog.timeout``; unset: half of
    ``heartbeat.timeout``, so the loop is free again before the JobManager gives up; 0: off)."""
    value = config["task.watchdog.timeout"]
    return config["heartbeat.timeout"] / 2 if value is None else float(value)


def task_config(config: Any) -> TaskConfig:
    """The per-task settings of a configuration (``execution.buffer-timeout``,
    ``pipeline.auto-watermark-interval``)."""
    return TaskConfig(buffer_timeout=config["execution.buffer-timeout"],
                      watermark_interval=config["pipeline.auto-watermark-interval"],
                      latency_interval=config["metrics.latency.interval"])


class TaskExecutor:
    """See the module docstring.  Call :meth:`bind` with the TaskGroup that owns subtask tasks."""

    def __init__(self, task_manager_id: str, slots: SlotTable, network: Network, clock: Clock, job_root: Path,
                 queue_capacity: int, task_config: TaskConfig | None = None, console: Any = None,
                 state_options: Mapping[str, Mapping[str, Any]] | None = None,
                 storage_config: Mapping[str, Any] | None = None, watchdog_timeout: float = 0.0) -> None:
        self.task_manager_id = task_manager_id
        self.slots = slots
        self.network = network
        self.clock = clock
        self.job_root = job_root
        self.queue_capacity = queue_capacity
        self.task_config = task_config or TaskConfig()
        #: where a print sink writes in this process (``streamlet run``'s live display), or None
        self.console = console
        #: backend kind -> its options (``state.backend.rocksdb.*``; see state.factory.backend_options)
        self.state_options = dict(state_options or {})
        #: the configuration checkpoint storage options come from (``s3.*``)
        self.storage_config: Mapping[str, Any] = storage_config or {}
        #: how long a release waits for cancelled tasks to end before it answers
        self.drop_timeout = 5.0
        self._jobs: dict[str, _Job] = {}
        #: dropped jobs whose tasks did not end yet (they hold their slots until they do)
        self._draining: dict[str, _Job] = {}
        self._tg: asyncio.TaskGroup | None = None
        # at most a few entries per deployed subtask: bounded by the slots' subtasks
        self._updates: list[dict[str, Any]] = []
        self.updates_ready = asyncio.Event()
        #: every metric of this TaskManager (Flink's ``taskmanager`` scope; subtasks are its
        #: ``job_task`` children while their job is here): what ``GET /metrics`` exports
        self.metrics = MetricGroup({"host": socket.gethostname(), "tm_id": task_manager_id}, "taskmanager")
        self.metrics.gauge("numRunningTasks", lambda: sum(
            1 for j in self._jobs.values() for st in j.subtasks if st.runner is not None and not st.runner.done()))
        # acknowledgements and declines of checkpoints, in order (a few per subtask and checkpoint)
        self._checkpoint_reports: list[Message] = []
        self.checkpoint_reports_ready = asyncio.Event()
        #: interrupts subtasks that hold the event loop (None when ``watchdog_timeout`` is 0)
        self.watchdog = LoopWatchdog(watchdog_timeout, self._interruptible) if watchdog_timeout > 0 else None
        self._runners: dict[asyncio.Task[None], _Subtask] = {}

    def bind(self, tg: asyncio.TaskGroup) -> None:
        """Run subtasks in ``tg`` from now on, and start the watchdog (call on the loop; pair with
        :meth:`unbind`)."""
        self._tg = tg
        if self.watchdog is not None:
            self.watchdog.start()

    def unbind(self) -> None:
        """Stop the watchdog (after the TaskGroup ended)."""
        self._tg = None
        if self.watchdog is not None:
            self.watchdog.stop()

    def _interruptible(self, runner: asyncio.Task[Any]) -> Any:
        """The watchdog's question, from its thread: the subtask ``runner`` runs, as a callback
        recording why it is interrupted, or None (not a subtask)."""
        st = self._runners.get(runner)
        if st is None:
            return None

        def record(reason: str) -> None:
            st.interrupted = reason
        return record

    @property
    def jobs(self) -> list[str]:
        return list(self._jobs)

    def trigger_checkpoint(self, msg: TriggerCheckpoint) -> int:
        """Checkpoint ``msg.checkpoint_id`` starts: remember where the job's subtasks here persist it and
        inject its barrier at the job's running source tasks (through their mailboxes); returns how
        many sources took it."""
        job = self._jobs.get(msg.job_id)
        if job is None:
            return 0
        job.targets[msg.checkpoint_id] = msg
        for old in sorted(job.targets)[:-_TARGETS_KEPT]:
            del job.targets[old]
        sources = [st.task for st in job.subtasks
                   if st.task.chain.reader is not None and st.runner is not None and not st.runner.done()]
        for t in sources:
            t.trigger_checkpoint(msg.checkpoint_id, msg.timestamp, msg.savepoint, msg.drain)
        return len(sources)

    def notify_checkpoint_complete(self, job_id: str, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` of the job is complete: every task here commits what it covers."""
        for t in self.tasks(job_id):
            t.notify_checkpoint_complete(checkpoint_id)

    def _storage(self, job: _Job, uri: str) -> Any:
        storage = job.storages.get(uri)
        if storage is None:
            storage = job.storages[uri] = open_storage(uri, storage_options(uri, self.storage_config))
        return storage

    async def _persist(self, job: _Job, st: _Subtask, snap: TaskSnapshot) -> None:
        """The asynchronous part of one subtask's checkpoint, then its acknowledgement."""
        n = snap.checkpoint_id
        target = job.targets.get(n)
        tdd = st.tdd
        t0 = perf()
        try:
            if target is not None:
                uri, directory = target.storage, target.directory
            elif tdd.checkpoint_storage is not None:
                uri, directory = tdd.checkpoint_storage, f"chk-{n}"
            else:
                raise StreamletError(f"no checkpoint storage is known for checkpoint {n}")
            handle = None
            if snap.keyed is not None:
                storage = await asyncio.to_thread(self._storage, job, uri)
                handle = await snap.keyed.persist(storage, directory=directory)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the checkpoint is declined; the job goes on
            logger.warning("job %s: subtask %s could not persist checkpoint %d: %s", job.job_id, st.name, n,
                           _error_text(exc))
            self._queue_checkpoint_report(st, DeclineCheckpoint(
                self.task_manager_id, job.job_id, tdd.vertex_id, tdd.subtask_index, st.attempt_id, n,
                f"{st.name}: could not write its state: {_error_text(exc)}"))
            return
        size = int((handle or {}).get("bytes_total", (handle or {}).get("size", 0)) or 0)
        uploaded = int((handle or {}).get("bytes_uploaded", size) or 0)
        state = {"operators": snap.operators, "splits": snap.splits, "sink": snap.sink_state,
                 "committables": snap.committables, "keyed": handle}
        metrics = {"alignment_ms": round(snap.alignment_ms, 3), "sync_ms": round(snap.sync_ms, 3),
                   "async_ms": round((perf() - t0) * 1000, 3), "state_size": size, "checkpointed_size": uploaded}
        self._queue_checkpoint_report(st, AcknowledgeCheckpoint(
            self.task_manager_id, job.job_id, tdd.vertex_id, tdd.subtask_index, st.attempt_id, n, state, metrics))

    def _queue_checkpoint_report(self, st: _Subtask, msg: Message) -> None:
        self._checkpoint_reports.append(msg)
        self.checkpoint_reports_ready.set()

    def take_checkpoint_reports(self) -> list[Message]:
        """Checkpoint acknowledgements and declines since the last call, in order."""
        out, self._checkpoint_reports = self._checkpoint_reports, []
        self.checkpoint_reports_ready.clear()
        return out

    async def sample_stacks(self, msg: SampleStacks) -> list[dict[str, Any]]:
        """Stack samples of the vertex's running subtasks here (see :mod:`.stack_sampler`): on timer
        signals in the loop thread where that is possible, else from a sampler thread, for the
        length of the request only; nothing before or after it."""
        job = self._jobs.get(msg.job_id)
        wanted = set(msg.subtasks)
        tasks = {st.tdd.subtask_index: st.runner for st in (job.subtasks if job is not None else [])
                 if st.tdd.vertex_id == msg.vertex_id and (not wanted or st.tdd.subtask_index in wanted)
                 and st.runner is not None and not st.runner.done()}
        if not tasks:
            return []
        num, delay, depth = max(1, msg.num_samples), max(0.0, msg.delay), max(1, msg.max_depth)
        if signals_usable():
            return await sample_stacks_on_signals(tasks, num, delay, depth)
        stop = threading.Event()
        try:
            return await asyncio.to_thread(sample_stacks, asyncio.get_running_loop(), threading.get_ident(),
                                           tasks, num, delay, depth, stop)
        finally:
            stop.set()  # a cancelled request ends the sampler at its next sample

    def add_splits(self, job_id: str, vertex_id: str, subtask_index: int, splits: list[dict[str, Any]]) -> None:
        """Hand new splits (found by the JobMaster's source coordinator) to a running source subtask
        here; its reader takes them between batches (a mailbox action).  Raises when the subtask
        is not here (any more)."""
        job = self._jobs.get(job_id)
        for st in job.subtasks if job is not None else ():
            if st.tdd.vertex_id == vertex_id and st.tdd.subtask_index == subtask_index:
                if st.runner is not None and st.runner.done():
                    break
                st.task.add_splits(splits)
                return
        raise StreamletError(f"job {job_id}: source subtask {subtask_index} of vertex {vertex_id} does not run on "
                             f"taskmanager {self.task_manager_id}")

    def tasks(self, job_id: str) -> list[Task]:
        """The deployed tasks of a job here (diagnostics, tests, queryable state)."""
        job = self._jobs.get(job_id) or self._draining.get(job_id)
        return [st.task for st in job.subtasks] if job is not None else []

    def query_state(self, request: QueryState) -> StateValue:
        """The live state of ``request.node_id`` for ``request.key`` in the subtask that owns the key.

        Raises StreamletError (the JobManager answers 404 or 400 with it) when the subtask is not
        here, the node keeps no keyed state in it, or the key belongs to another subtask.
        """
        job = self._jobs.get(request.job_id)
        st = next((s for s in job.subtasks if s.tdd.vertex_id == request.vertex_id
                   and s.tdd.subtask_index == request.subtask_index), None) if job is not None else None
        if st is None or st.runner is None or st.runner.done():
            raise StreamletError(f"subtask {request.subtask_index} of vertex {request.vertex_id} of job "
                                 f"{request.job_id} does not run on this taskmanager (any more); query again")
        backend = st.task.state
        try:
            key = freeze(request.key)
            group = key_group_for(key, st.tdd.max_parallelism)
        except TypeError as exc:
            raise StreamletError(f"key {request.key!r} cannot be a key: {exc}") from None
        if backend is None or not node_states(backend, request.node_id):
            raise StreamletError(f"node {request.node_id!r} keeps no keyed state in {st.name}; query a keyed "
                                 "node (aggregate, reduce, window, process, join)")
        if group not in backend.key_groups:
            raise StreamletError(f"key {request.key!r} (key group {group}) is not owned by {st.name}")
        found = read_key(backend, request.node_id, key)
        return StateValue(found["states"], found["truncated"], st.name, group)

    # -- deployment -------------------------------------------------------------------------

    async def deploy(self, msg: DeployTasks) -> None:
        """Deploy and start one job's subtasks (steps 1-5 of the module docstring)."""
        if self._tg is None:
            raise RuntimeError("the task executor is not running")
        if msg.job_id in self._jobs:
            raise StreamletError(f"job {msg.job_id} is already deployed on this taskmanager")
        if msg.job_id in self._draining:
            raise StreamletError(f"job {msg.job_id} is still being released on this taskmanager; deploy it again "
                                 "once its subtasks ended")
        slots = sorted({t["slot"] for t in msg.tasks})
        self.slots.allocate(msg.job_id, slots)
        job = _Job(msg.job_id, self.job_root / msg.job_id if msg.files else None, slots)
        self._jobs[msg.job_id] = job
        try:
            if job.job_dir is not None:
                files = {p: base64.b64decode(d) for p, d in msg.files.items()}
                await asyncio.to_thread(write_job_files, job.job_dir, files)
            await self._build(msg, job)
        except BaseException:
            await self._drop(job)
            raise
        for st in job.subtasks:
            self._report(job.job_id, st, "INITIALIZING")
            st.runner = self._tg.create_task(self._run(job.job_id, st), name=st.name)
            self._runners[st.runner] = st
            # a task cancelled before it first ran never executes _run: report it from here
            st.runner.add_done_callback(lambda t, j=job, s=st: self._on_done(j, s, t))
        logger.info("job %s: deployed %d subtask(s)", msg.job_id, len(job.subtasks))

    async def _build(self, msg: DeployTasks, job: _Job) -> None:
        """Channels on the loop (they belong to the network), then the tasks in a thread: building
        a task imports the job's user modules, which is blocking and must not see another job's."""
        me = self.task_manager_id
        extra = (str(job.job_dir),) if job.job_dir is not None else ()
        tdds = [(t, replace(TaskDeploymentDescriptor.from_json(t["tdd"]), sys_path=extra + tuple(t["tdd"]["sys_path"])))
                for t in msg.tasks]
        inputs: dict[str, InputChannel] = {}
        for _, tdd in tdds:
            for i in tdd.inputs:
                ch = InputChannel(i.channel_id, self.queue_capacity, i.input_index)
                if msg.locations[i.producer_vertex][i.producer_subtask] != me:
                    self.network.register_input_channel(msg.job_id, ch)
                inputs[i.channel_id] = ch
        wired = []
        for t, tdd in tdds:
            group = self.metrics.child("job_task", job_id=msg.job_id, job_name=msg.job_name, task_id=tdd.vertex_id,
                                       task_name=tdd.vertex_name, subtask_index=str(tdd.subtask_index),
                                       task_attempt_id=t["attempt_id"])
            job.metric_groups.append(group)
            outputs: dict[str, OutputChannel] = {}
            for o in tdd.outputs:
                where = msg.locations[o.target_vertex]
                for cid, target in zip(o.channel_ids, o.target_subtasks):
                    tm = where[target]
                    outputs[cid] = (LocalOutputChannel(inputs[cid]) if tm == me
                                    else self.network.output_channel(msg.job_id, cid, msg.addresses[tm]))
            gate = InputGate([inputs[i.channel_id] for i in tdd.inputs]) if tdd.inputs else None
            wired.append((t, tdd, gate, outputs, group))

        def create_tasks() -> list[_Subtask]:
            out = []
            with job_modules(job.job_dir, keep_on_path=True):
                for t, tdd, gate, outputs, group in wired:
                    name = subtask_name(tdd.vertex_name, tdd.subtask_index, tdd.parallelism)
                    state = create_backend(
                        tdd.state_backend,
                        KeyGroupRange.for_subtask(tdd.subtask_index, tdd.parallelism, tdd.max_parallelism),
                        tdd.max_parallelism, clock=self.clock, name=name,
                        options=self.state_options.get(tdd.state_backend))
                    config = replace(self.task_config, checkpointing_mode=tdd.checkpointing_mode)
                    task = build_task(tdd, gate, outputs, self.clock, state, self.console, config, group)
                    out.append(_Subtask(tdd, t["attempt_id"], t["slot"], task))
            return out

        job.subtasks.extend(await asyncio.to_thread(create_tasks))
        for st in job.subtasks:
            st.task.checkpoints = _CheckpointReporter(self, job, st)
            restore = st.tdd.restore
            if restore is None:
                continue
            if st.task.state is not None and restore.get("keyed"):
                storage = await asyncio.to_thread(self._storage, job, restore["storage"])
                await st.task.state.restore(restore["keyed"], storage)
                if restore.get("external"):
                    # shared files of another job's checkpoint are never referenced by this job's
                    # checkpoints: the first incremental checkpoint uploads everything
                    if hasattr(st.task.state, "confirmed_ssts"):
                        st.task.state.confirmed_ssts = {}
            st.task.restored_operators = dict(restore.get("operators") or {})
            st.task.restored_sink = restore.get("sink")
            st.task.restored_committables = list(restore.get("committables") or [])

    async def _run(self, job_id: str, st: _Subtask) -> None:
        set_log_context(job_id, st.name)  # this task's own context: its log lines name the subtask
        self._report(job_id, st, "RUNNING")
        try:
            await st.task.run()
            if st.persists:
                # its last checkpoint's upload: once FINISHED is reported, nothing of it is in flight
                await asyncio.wait(set(st.persists))
        except asyncio.CancelledError:
            self._report(job_id, st, "CANCELED", final=True)
            raise
        except TaskInterrupted:
            error = f"subtask {st.name}: {st.interrupted or 'interrupted by the loop watchdog'}"
            logger.warning("job %s: %s", job_id, error)
            self._report(job_id, st, "FAILED", error=error, final=True)
        except SystemExit as exc:  # user code must not end the TaskManager
            error = (f"subtask {st.name}: user code called sys.exit({exc.code!r}) (SystemExit); a function "
                     "signals an error by raising an exception, never by exiting the process")
            logger.warning("job %s: %s", job_id, error)
            self._report(job_id, st, "FAILED", error=error, final=True)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the JobManager with its reason
            logger.warning("job %s: subtask %s failed: %s", job_id, st.name, _error_text(exc))
            self._report(job_id, st, "FAILED", error=_error_text(exc), final=True)
        else:
            self._report(job_id, st, "FINISHED", final=True)

    def _on_done(self, job: _Job, st: _Subtask, runner: asyncio.Task[None]) -> None:
        self._runners.pop(runner, None)
        if not st.terminal_reported:
            self._report(job.job_id, st, "CANCELED", final=True)
        if job.dropped:
            self._free_idle_slots(job)

    def _free_idle_slots(self, job: _Job) -> None:
        """Free the dropped job's slots in which no task runs any more (a slot is free only when it is)."""
        busy = {st.slot for st in job.subtasks if st.runner is not None and not st.runner.done()}
        idle = [i for i in job.slots if i not in busy]
        if idle:
            self.slots.release(job.job_id, idle)
            job.slots = [i for i in job.slots if i in busy]
        if not job.slots:
            self._draining.pop(job.job_id, None)

    # -- cancel and release -----------------------------------------------------------------

    def cancel_job(self, job_id: str) -> None:
        """Cancel the job's running subtasks (each reports CANCELED when its task ends)."""
        job = self._jobs.get(job_id) or self._draining.get(job_id)
        if job is not None:
            _cancel(job)

    async def release_job(self, job_id: str) -> None:
        """Stop whatever still runs of the job, free its slots, channels and files.

        Raises when subtasks of the job still run after the drop timeout: their slots stay held
        (and reported in heartbeats) until they end, and the JobManager does not offer them.
        """
        job = self._jobs.get(job_id) or self._draining.get(job_id)
        if job is None:
            self.slots.release(job_id)  # a stale slot entry: nothing of the job runs here
            return
        if not job.dropped:
            await self._drop(job)
        if job.slots:
            raise StreamletError(f"job {job_id}: {len(job.slots)} slot(s) still run subtasks that ignore "
                                 "cancellation; they are freed when the subtasks end")

    async def _drop(self, job: _Job) -> None:
        job.dropped = True
        self._jobs.pop(job.job_id, None)
        self._draining[job.job_id] = job
        _cancel(job)
        runners = [st.runner for st in job.subtasks if st.runner is not None and not st.runner.done()]
        if runners:
            # a cancelled task closes its files and sockets in its finally blocks; wait, but boundedly
            await asyncio.wait(runners, timeout=self.drop_timeout)
        self.network.unregister_job(job.job_id)
        for group in job.metric_groups:
            self.metrics.remove(group)
        # slots whose tasks still run are freed by the tasks' done callbacks, not here
        self._free_idle_slots(job)
        if job.job_dir is not None:
            await asyncio.to_thread(forget_job, job.job_dir)
            await asyncio.to_thread(shutil.rmtree, job.job_dir, True)
        logger.info("job %s: released", job.job_id)

    async def reset(self) -> None:
        """Drop every job (the JobManager connection was lost; it fails those jobs itself)."""
        for job in list(self._jobs.values()):
            await self._drop(job)
        self._updates.clear()
        self.updates_ready.clear()
        self._checkpoint_reports.clear()
        self.checkpoint_reports_ready.clear()

    # -- reports ----------------------------------------------------------------------------

    def _report(self, job_id: str, st: _Subtask, state: str, error: str | None = None, final: bool = False) -> None:
        if final:
            st.terminal_reported = True
        self._updates.append({"job_id": job_id, "vertex_id": st.tdd.vertex_id, "subtask_index": st.tdd.subtask_index,
                              "attempt_id": st.attempt_id, "state": state, "error": error,
                              "metrics": self._sample(job_id, st) if final else None})
        self.updates_ready.set()

    def take_updates(self) -> list[dict[str, Any]]:
        """The state changes since the last call, in order."""
        out, self._updates = self._updates, []
        self.updates_ready.clear()
        return out

    def sample_metrics(self) -> list[dict[str, Any]]:
        """Counters and per-second rates (since the previous sample) of every running subtask."""
        return [self._sample(job.job_id, st) for job in self._jobs.values() for st in job.subtasks
                if st.runner is not None and not st.runner.done()]

    def _sample(self, job_id: str, st: _Subtask) -> dict[str, Any]:
        m = st.task.metrics
        now = perf()
        m.sample(now)
        return {"job_id": job_id, "vertex_id": st.tdd.vertex_id, "subtask_index": st.tdd.subtask_index,
                "attempt_id": st.attempt_id, **m.report(now), "watermark": st.task.output_watermark,
                "input_watermark": st.task.input_watermark}
