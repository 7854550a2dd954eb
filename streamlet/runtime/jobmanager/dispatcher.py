"""Dispatcher: accepts submissions, runs one JobMaster per job, keeps finished jobs for the REST API.

Submission (``POST /jobs``):

1. a YAML pipeline is parsed and planned here, off the event loop (the loader checks files,
   the planner imports user modules; the JobMaster enumerates source splits).  Relative
   ``path:`` values resolve against the submission's ``base_dir`` (``streamlet submit`` sends its pipeline file's
   directory), else against the JobManager's working directory.  Files submitted with the job
   are stored in ``<web.upload.dir>/<job id>/`` and put first on ``sys.path`` while planning, so
   import paths into them resolve; they are shipped to the TaskManagers with the deployment.
   Submissions are planned one at a time (one worker thread), each job's modules apart from
   other jobs' modules of the same name;
2. a JobGraph (JSON, from ``streamlet run --taskmanagers``) was planned by the client; it is
   checked (vertices, parallelism, edges) and refused with PipelineDefinitionError before any
   job exists;
3. a JobMaster is created and run in the Dispatcher's TaskGroup.  :meth:`Dispatcher.submit_graph`
   starts one from a JobGraph planned in this process (``streamlet run``).

The Dispatcher also implements :class:`streamlet.rest.base.RestGateway`: the REST API reads
jobs and TaskManagers through it.  At most ``jobstore.max-capacity`` terminal jobs are kept.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from streamlet.version import __version__
from streamlet.api.limits import PipelineLimits
from streamlet.clock import Clock
from streamlet.config import SECRET_KEYS, Configuration
from streamlet.errors import PipelineDefinitionError, StreamletError
from streamlet.graph.job_graph import BROADCAST, FORWARD, HASH, REBALANCE, JobGraph
from streamlet.graph.operators import KeySpec, OpSpec, SinkSpec, SourceSpec
from streamlet.ids import new_id
from streamlet.rest.base import NotFoundError, UnavailableError
from streamlet.rest.schemas import (
    ClusterOverview, JobExceptions, JobInfo, JobSubmission, TaskManagerInfo, VertexBackpressure,
)
from streamlet.runtime.job_files import job_modules, write_job_files
from streamlet.logging import set_log_context
from streamlet.metrics.registry import MetricGroup
from streamlet.runtime.jobmanager.flame_graph import FlameGraphConfig, FlameGraphTracker
from streamlet.runtime.jobmanager.job_master import JobMaster, JobMasterConfig
from streamlet.runtime.jobmanager.job_metrics import register_job_metrics
from streamlet.runtime.jobmanager.checkpoint.coordinator import CheckpointAbortedError
from streamlet.runtime.jobmanager.checkpoint.metadata import CompletedCheckpoint, read_metadata
from streamlet.runtime.jobmanager.ha import JobStore
from streamlet.state.storage import storage_options
from streamlet.runtime.jobmanager.job_status import JobStatus
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.runtime.jobmanager import views

logger = logging.getLogger(__name__)



def plan_submission(submission: JobSubmission, config: Configuration, job_dir: Path | None) -> JobGraph:
    """The JobGraph of a submission (blocking: file checks and user-module imports; run it in a thread)."""
    if submission.job_graph is not None:
        try:
            graph = JobGraph.from_json(submission.job_graph)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PipelineDefinitionError(f"the submitted job graph is malformed: {type(exc).__name__}: {exc}",
                                          submission.filename) from None
        problem = _graph_problem(graph, PipelineLimits.from_config(config))
        if problem is not None:
            raise PipelineDefinitionError(f"the submitted job graph is invalid: {problem}; plan it with "
                                          "`streamlet validate` or the Python API", submission.filename)
        return graph
    from streamlet.api.planner import plan
    from streamlet.api.yaml.loader import loads

    limits = PipelineLimits.from_config(config)
    base_dir = submission.base_dir or str(Path.cwd())
    if not Path(base_dir).is_absolute():
        raise PipelineDefinitionError(f"base directory {base_dir!r} must be an absolute path", submission.filename)
    # another job may ship a module of the same name with other contents: import this job's apart
    with job_modules(job_dir if submission.files else None):
        # variables were resolved by the client; the JobManager's own environment is never read
        pdef = loads(submission.pipeline_yaml or "", source_file=submission.filename, base_dir=base_dir,
                     limits=limits, variables={})
        return plan(pdef, default_parallelism=config["parallelism.default"],
                    max_parallelism=config["pipeline.max-parallelism"], batch_size=config["pipeline.batch-size"],
                    parallelism_override=submission.parallelism, limits=limits)


_PARTITIONERS = frozenset({FORWARD, HASH, REBALANCE, BROADCAST})


def _graph_problem(graph: JobGraph, limits: PipelineLimits) -> str | None:
    """What makes a client-planned JobGraph unrunnable, or None (checked before the job exists)."""
    if not graph.vertices:
        return "it has no vertices"
    if not isinstance(graph.max_parallelism, int) or graph.max_parallelism < 1:
        return f"max_parallelism must be a positive integer, got {graph.max_parallelism!r}"
    if graph.max_parallelism > limits.max_parallelism_limit:
        return (f"max_parallelism {graph.max_parallelism} is above the limit of {limits.max_parallelism_limit} "
                "(pipeline.max-parallelism-limit)")
    if len(graph.vertices) > limits.max_nodes:
        return f"it has {len(graph.vertices)} vertices, more than the limit of {limits.max_nodes} (pipeline.max-nodes)"
    if not isinstance(graph.batch_size, int) or graph.batch_size < 1:
        return f"batch_size must be a positive integer, got {graph.batch_size!r}"
    seen: set[str] = set()
    for v in graph.vertices:
        if v.id in seen:
            return f"vertex id {v.id!r} appears twice"
        seen.add(v.id)
        if not isinstance(v.parallelism, int) or isinstance(v.parallelism, bool) or v.parallelism < 1:
            return f"vertex {v.name!r} has parallelism {v.parallelism!r}; it must be at least 1"
        if v.parallelism > graph.max_parallelism:
            return f"vertex {v.name!r} has parallelism {v.parallelism} above max_parallelism {graph.max_parallelism}"
        if not v.operators:
            return f"vertex {v.name!r} needs a non-empty list of operators"
        for op in v.operators:
            problem = _operator_problem(op, limits)
            if problem is not None:
                return f"vertex {v.name!r}: {problem}"
    if not any(v.is_source for v in graph.vertices):
        return "it has no source vertex"
    subtasks = sum(v.parallelism for v in graph.vertices)
    if subtasks > limits.max_subtasks:
        return f"it would run {subtasks} subtasks, more than the limit of {limits.max_subtasks} (pipeline.max-subtasks)"
    order = {v.id: i for i, v in enumerate(graph.vertices)}
    for e in graph.edges:
        for end in (e.source, e.target):
            if end not in order:
                return f"an edge names the unknown vertex {end!r}"
        if order[e.source] >= order[e.target]:
            return f"the edge {e.source!r} -> {e.target!r} goes backwards; vertices must be in topological order"
        if e.partitioner not in _PARTITIONERS:
            return f"the edge {e.source!r} -> {e.target!r} has the unknown partitioner {e.partitioner!r}"
    par = {v.id: v.parallelism for v in graph.vertices}
    try:
        specs = sum(len(orjson.dumps([op.to_json() for op in v.operators])) * v.parallelism
                    for v in graph.vertices)
    except TypeError as exc:
        return f"an operator spec is not JSON: {exc}"
    if specs > limits.max_deployment_bytes:
        return (f"its deployments would carry {specs} bytes of operator specs, more than the limit of "
                f"{limits.max_deployment_bytes} (rpc.max-message-size)")
    channels = sum(par[e.target] if e.partitioner == FORWARD else par[e.source] * par[e.target] for e in graph.edges)
    if channels > limits.max_channels:
        return (f"it would have {channels} channels between subtasks, more than the limit of {limits.max_channels} "
                "(pipeline.max-channels)")
    return None


def _operator_problem(op: OpSpec, limits: PipelineLimits) -> str | None:
    """What is wrong with one operator spec of a client-planned JobGraph: the same checks a YAML
    pipeline gets (connector keys, expression rules), so the JSON route is no way around them."""
    from streamlet.api import registry
    from streamlet.api.expressions import compile_expression

    try:
        if isinstance(op, (SourceSpec, SinkSpec)):
            if not isinstance(op.params, dict) or not isinstance(op.type, str):
                return f"operator {op.id!r} needs a 'type' and a map of 'params'"
            validate = registry.validate_source if isinstance(op, SourceSpec) else registry.validate_sink
            validate(op.type, op.params, f"operator {op.id}", "/")
        key = getattr(op, "key", None)
        for expr, scope in ((getattr(op, "expr", None), "reduce" if op.KIND == "reduce" else "record"),
                            (key.expr if isinstance(key, KeySpec) else None, "record")):
            if expr is not None and compile_expression(expr, f"operator {op.id}", scope, limits).expr != expr:
                return f"operator {op.id!r} has an expression not in the planner's normal form; plan it with streamlet"
    except PipelineDefinitionError as exc:
        return str(exc)
    return None


class Dispatcher:
    """See the module docstring."""

    def __init__(self, resource_manager: ResourceManager, config: Configuration, clock: Clock,
                 upload_dir: Path) -> None:
        self.resource_manager = resource_manager
        self.config = config
        self.clock = clock
        self.upload_dir = upload_dir
        self.job_config = JobMasterConfig(config["jobmanager.slot-request.timeout"],
                                          config["taskmanager.cancel.timeout"], config["state.backend.type"], config)
        #: trigger id -> (job id, the checkpoint/savepoint operation); the latest _OPERATIONS_KEPT
        self._operations: dict[str, tuple[str, asyncio.Task[Any]]] = {}
        ha_dir = config["high-availability.storageDir"]
        #: recovery metadata (``high-availability.storageDir``), or None
        self.job_store = JobStore(ha_dir) if ha_dir else None
        self._jobs: dict[str, JobMaster] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        # one submission is planned at a time: planning imports user modules through the shared
        # sys.modules / sys.path (see runtime.job_files.job_modules), which is not thread-safe
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamlet-planner")
        #: set once :meth:`run` can take submissions
        self.started = asyncio.Event()
        #: the JobManager's metrics (Flink's ``jobmanager`` scope, a ``job`` child per kept job)
        self.metrics = MetricGroup({"host": socket.gethostname()}, "jobmanager")
        rm = resource_manager
        self.metrics.gauge("numRegisteredTaskManagers", lambda: len(rm.task_manager_ids()))
        self.metrics.gauge("taskSlotsTotal", lambda: rm.slots_total)
        self.metrics.gauge("taskSlotsAvailable", lambda: rm.slots_free)
        self.metrics.gauge("numRunningJobs", lambda: sum(1 for jm in self._jobs.values() if not jm.is_terminal))
        #: what ``GET /metrics`` exports: these metrics, plus those of a TaskManager in this
        #: process (``streamlet run`` adds its executor's)
        self.metric_roots: list[MetricGroup] = [self.metrics]
        self._job_metrics: dict[str, MetricGroup] = {}
        #: flame graphs: sampling rounds run in the Dispatcher's TaskGroup
        self.flame_graphs = FlameGraphTracker(FlameGraphConfig.from_config(config), clock, self._spawn)
        resource_manager.on_task_manager_lost = self.on_task_manager_lost

    async def run(self) -> None:
        """Own the JobMasters until :meth:`stop`; unfinished jobs end SUSPENDED on stop."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await self._recover()
                self.started.set()
                await self._stopping.wait()
                for jm in self._jobs.values():
                    jm.suspend("the jobmanager shut down")
        finally:
            self._tg = None
            # no wait: a planning thread cannot be interrupted; its result is dropped
            self._planner.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> None:
        if self._tg is None:  # stopping: the round is not started (the caller answers "waiting")
            coro.close()
            return
        try:
            self._tg.create_task(coro)
        except RuntimeError:  # the TaskGroup is shutting down
            coro.close()

    def stop(self) -> None:
        """End every unfinished job SUSPENDED now, then let :meth:`run` return.

        Suspending first matters: the TaskManager connections close next, and a job that is
        already SUSPENDED is not failed by their loss.
        """
        for jm in self._jobs.values():
            jm.suspend("the jobmanager shut down")
        self._stopping.set()

    # -- submission -------------------------------------------------------------------------

    async def submit(self, submission: JobSubmission) -> str:
        """Plan the submission and start its JobMaster; raises PipelineDefinitionError for bad input."""
        job_id = new_id()
        graph, job_dir = await self._plan(submission, job_id)
        try:
            if self._tg is None or self._stopping.is_set():  # shut down while planning
                raise UnavailableError("the jobmanager shut down while the job was planned; submit it again")
            restore = await self._read_savepoint(submission.savepoint_path)
            await self._persist(job_id, graph, submission.files, submission.savepoint_path,
                                submission.allow_non_restored_state)
        except BaseException:
            if job_dir is not None:
                await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise
        return self._start_job(job_id, graph, submission.files, job_dir, restore,
                               submission.allow_non_restored_state)

    async def validate(self, submission: JobSubmission) -> dict[str, Any]:
        """Plan the submission as :meth:`submit` would and return its plan (Flink's ``plan`` JSON,
        ``jid`` None) without starting anything; raises PipelineDefinitionError for bad input."""
        graph, job_dir = await self._plan(submission, f"validate-{new_id()}")
        if job_dir is not None:
            await asyncio.to_thread(shutil.rmtree, job_dir, True)
        return views.graph_plan(graph, None)

    async def _plan(self, submission: JobSubmission, job_id: str) -> tuple[JobGraph, Path | None]:
        """The submission's JobGraph (planned in the planner thread) and the directory holding its files."""
        if self._tg is None or self._stopping.is_set():
            raise UnavailableError("the jobmanager is not accepting jobs (starting or shutting down); retry later")
        if submission.job_graph is not None and submission.parallelism is not None:
            raise PipelineDefinitionError("parallelism is fixed in a submitted job graph; plan it with "
                                          "the wanted parallelism instead", submission.filename)
        job_dir = self.upload_dir / job_id if submission.files else None
        try:
            if job_dir is not None:
                await asyncio.to_thread(_write_files, job_dir, submission.files)
            graph = await asyncio.get_running_loop().run_in_executor(
                self._planner, plan_submission, submission, self.config, job_dir)
        except BaseException:
            if job_dir is not None:
                await asyncio.to_thread(shutil.rmtree, job_dir, True)
            raise
        return graph, job_dir

    async def _read_savepoint(self, path: str | None) -> CompletedCheckpoint | None:
        """The savepoint (or retained checkpoint) at ``path``; raises CheckpointMetadataError."""
        if path is None:
            return None
        return await asyncio.to_thread(read_metadata, path, storage_options(path, self.config))

    async def submit_graph(self, graph: JobGraph, savepoint_path: str | None = None,
                           allow_non_restored_state: bool = False) -> str:
        """Start a job from a JobGraph this process planned (``streamlet run``, the Python API).

        The graph is trusted as planned (no JSON round trip, no re-validation): a MiniCluster
        submits what its own planner built.
        """
        if self._tg is None or self._stopping.is_set():
            raise UnavailableError("the jobmanager is not accepting jobs (starting or shutting down); retry later")
        restore = await self._read_savepoint(savepoint_path)
        job_id = new_id()
        await self._persist(job_id, graph, {}, savepoint_path, allow_non_restored_state)
        return self._start_job(job_id, graph, {}, None, restore, allow_non_restored_state)

    # -- recovery metadata (high-availability.storageDir) -----------------------------------

    async def _persist(self, job_id: str, graph: JobGraph, files: dict[str, bytes], savepoint_path: str | None,
                       allow: bool) -> None:
        if self.job_store is not None:
            await asyncio.to_thread(self.job_store.put_job, job_id, graph.to_json(), files, savepoint_path, allow)

    def _checkpoint_hook(self, job_id: str) -> Any:
        store = self.job_store
        if store is None:
            return None

        async def record(done: CompletedCheckpoint) -> None:
            await asyncio.to_thread(store.set_checkpoint, job_id, done.location)

        return record

    async def _recover(self) -> None:
        """Resume the jobs a previous JobManager left in the recovery metadata."""
        if self.job_store is None:
            return
        for job in await asyncio.to_thread(self.job_store.jobs):
            try:
                graph = JobGraph.from_json(job.graph)
                path = job.checkpoint or job.savepoint_path
                restore = await self._read_savepoint(path)
            except Exception as exc:  # noqa: BLE001 - one bad entry must not stop the others
                logger.error("job %s cannot be resumed: %s", job.job_id, exc)
                continue
            logger.info("resuming job %s (%s) from %s", job.job_id, graph.name, path or "its start")
            self._start_job(job.job_id, graph, job.files, None, restore, job.allow_non_restored_state,
                            restore_external=job.checkpoint is None)

    def _start_job(self, job_id: str, graph: JobGraph, files: dict[str, bytes], job_dir: Path | None,
                   restore: CompletedCheckpoint | None = None, allow_non_restored_state: bool = False,
                   restore_external: bool = True) -> str:
        assert self._tg is not None
        jm = JobMaster(job_id, graph, self.resource_manager, self.clock, self.job_config, files, restore,
                       allow_non_restored_state, restore_external, self._checkpoint_hook(job_id))
        self._jobs[job_id] = jm
        group = self._job_metrics[job_id] = self.metrics.child("job", job_id=job_id, job_name=graph.name)
        register_job_metrics(group, jm)
        self._tg.create_task(self._run_job(jm, job_dir), name=f"job-{job_id}")
        logger.info("job %s (%s) submitted: %d vertices, needs %d slot(s)", job_id, graph.name,
                    len(graph.vertices), graph.max_vertex_parallelism)
        self._trim_archive()
        return job_id

    async def _run_job(self, jm: JobMaster, job_dir: Path | None) -> None:
        set_log_context(jm.job_id)  # the job master's task (and the tasks it starts) log with the job id
        try:
            await jm.run()
            if self.job_store is not None and jm.status in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED):
                await asyncio.to_thread(self.job_store.remove_job, jm.job_id)
        finally:
            if job_dir is not None:
                await asyncio.to_thread(shutil.rmtree, job_dir, True)

    def _trim_archive(self) -> None:
        cap = self.config["jobstore.max-capacity"]
        done = [jid for jid, jm in self._jobs.items() if jm.is_terminal]
        for jid in done[:max(0, len(done) - cap)]:
            del self._jobs[jid]
            self.metrics.remove(self._job_metrics.pop(jid))
            self.flame_graphs.forget_job(jid)

    # -- reports from TaskManagers (via TaskManagerSession) ---------------------------------

    def on_task_states(self, task_manager_id: str, updates: list[dict[str, Any]]) -> None:
        by_job: dict[str, list[dict[str, Any]]] = {}
        for u in updates:
            by_job.setdefault(u.get("job_id", ""), []).append(u)
        for job_id, ups in by_job.items():
            jm = self._jobs.get(job_id)
            if jm is not None:
                jm.on_task_states(task_manager_id, ups)

    def on_metrics(self, task_manager_id: str, tasks: list[dict[str, Any]]) -> None:
        by_job: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_job.setdefault(t.get("job_id", ""), []).append(t)
        for job_id, ts in by_job.items():
            jm = self._jobs.get(job_id)
            if jm is not None:
                jm.on_metrics(task_manager_id, ts)

    def on_checkpoint_report(self, task_manager_id: str, msg: Any) -> None:
        jm = self._jobs.get(msg.job_id)
        if jm is not None:
            jm.on_checkpoint_report(msg)

    def on_task_manager_lost(self, task_manager_id: str, reason: str) -> None:
        for jm in list(self._jobs.values()):
            jm.on_task_manager_lost(task_manager_id, reason)

    # -- RestGateway --------------------------------------------------------------------------

    def _job(self, job_id: str) -> JobMaster:
        jm = self._jobs.get(job_id)
        if jm is None:
            raise NotFoundError(f"job {job_id!r} not found; `streamlet list` shows the known jobs")
        return jm

    def overview(self) -> ClusterOverview:
        counts = {"running": 0, "finished": 0, "cancelled": 0, "failed": 0}
        for jm in self._jobs.values():
            s = jm.status
            key = {JobStatus.FINISHED: "finished", JobStatus.CANCELED: "cancelled",
                   JobStatus.FAILED: "failed"}.get(s, "running")
            counts[key] += 1
        rm = self.resource_manager
        return ClusterOverview(len(rm.task_manager_ids()), rm.slots_total, rm.slots_free, counts, __version__)

    def task_managers(self) -> list[TaskManagerInfo]:
        return self.resource_manager.task_manager_infos()

    def task_manager(self, task_manager_id: str) -> TaskManagerInfo:
        for info in self.resource_manager.task_manager_infos():
            if info.id == task_manager_id:
                return info
        raise NotFoundError(f"taskmanager {task_manager_id!r} not found; GET /taskmanagers lists them")

    def jobs(self) -> list[JobInfo]:
        return [views.job_info(jm) for jm in self._jobs.values()]

    def job(self, job_id: str) -> JobInfo:
        return views.job_info(self._job(job_id))

    async def wait_terminal(self, job_id: str) -> JobInfo:
        """The job's info once it reached a terminal state (raises NotFoundError for an unknown id)."""
        jm = self._job(job_id)
        await jm.terminated.wait()
        return views.job_info(jm)

    def job_exceptions(self, job_id: str) -> JobExceptions:
        return views.exception_history(self._job(job_id))

    def vertex_backpressure(self, job_id: str, vertex_id: str) -> VertexBackpressure:
        bp = views.vertex_backpressure(self._job(job_id), vertex_id)
        if bp is None:
            raise NotFoundError(f"job {job_id!r} has no vertex {vertex_id!r}; GET /jobs/{job_id} lists its vertices")
        return bp

    async def query_state(self, job_id: str, node_id: str, key: Any) -> dict[str, Any]:
        return await self._job(job_id).query_state(node_id, key, self.config["rpc.ask-timeout"])

    def vertex_watermarks(self, job_id: str, vertex_id: str) -> list[dict[str, str]]:
        wms = views.vertex_watermarks(self._job(job_id), vertex_id)
        if wms is None:
            raise NotFoundError(f"job {job_id!r} has no vertex {vertex_id!r}; GET /jobs/{job_id} lists its vertices")
        return wms
    def vertex_flame_graph(self, job_id: str, vertex_id: str, kind: str = "FULL",
                           subtask: int | None = None) -> dict[str, Any]:
        jm = self._job(job_id)
        if vertex_id not in {v.id for v in jm.graph.vertices}:
            raise NotFoundError(f"job {job_id!r} has no vertex {vertex_id!r}; GET /jobs/{job_id} lists its vertices")
        return self.flame_graphs.flame_graph(jm, vertex_id, kind, subtask)

    def cancel(self, job_id: str) -> None:
        self._job(job_id).cancel()

    def metric_groups(self) -> list[MetricGroup]:
        return list(self.metric_roots)

    # -- checkpoints and savepoints (RestGateway) -------------------------------------------

    def checkpoint_stats(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).coordinator.stats()

    def checkpoint_config(self, job_id: str) -> dict[str, Any]:
        return self._job(job_id).coordinator.config()

    def _operation(self, job_id: str, aw: Any) -> str:
        if self._tg is None:
            aw.close()
            raise UnavailableError("the jobmanager is shutting down")
        trigger = new_id()
        self._operations[trigger] = (job_id, self._tg.create_task(_quiet(aw)))
        for old in list(self._operations)[:-_OPERATIONS_KEPT]:
            if self._operations[old][1].done():
                del self._operations[old]
        return trigger

    def trigger_checkpoint(self, job_id: str) -> str:
        jm = self._job(job_id)
        return self._operation(job_id, jm.trigger_checkpoint())

    def trigger_savepoint(self, job_id: str, target: str | None, stop: bool = False, drain: bool = False) -> str:
        jm = self._job(job_id)
        target = target or self.config["execution.checkpointing.savepoint-dir"]
        if not target:
            raise PipelineDefinitionError("no target directory for the savepoint: name one (streamlet savepoint JOB DIR, "
                                          "\"target-directory\" in the request) or set "
                                          "execution.checkpointing.savepoint-dir")
        if jm.is_terminal:
            raise PipelineDefinitionError(f"job {job_id} is {jm.status.value}; only a running job takes a savepoint")
        return self._operation(job_id, jm.savepoint(target, stop=stop, drain=drain))

    def operation_status(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        self._job(job_id)
        op = self._operations.get(trigger_id)
        if op is None or op[0] != job_id:
            raise NotFoundError(f"job {job_id} has no checkpoint or savepoint trigger {trigger_id}")
        task = op[1]
        if not task.done():
            return {"status": {"id": "IN_PROGRESS"}, "operation": None}
        done = task.result() if not task.cancelled() else CheckpointAbortedError("the jobmanager shut down")
        if isinstance(done, BaseException):
            return {"status": {"id": "COMPLETED"},
                    "operation": {"failure-cause": {"class": type(done).__name__, "stack-trace": str(done)}}}
        return {"status": {"id": "COMPLETED"}, "operation": {"location": done.location, "checkpointId": done.checkpoint_id}}

    def configuration(self) -> dict[str, Any]:
        return {k: ("******" if k in SECRET_KEYS and v is not None else v) for k, v in self.config.items()}


#: finished checkpoint / savepoint operations kept for their status queries
_OPERATIONS_KEPT = 1000


async def _quiet(aw: Any) -> Any:
    """Await ``aw``; a failure is returned (kept for the status query), never raised into the TaskGroup."""
    try:
        return await aw
    except (CheckpointAbortedError, StreamletError) as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - a bug in one operation must not stop the dispatcher
        logger.exception("checkpoint or savepoint operation failed")
        return exc


def _write_files(job_dir: Path, files: dict[str, bytes]) -> None:
    write_job_files(job_dir, files)
