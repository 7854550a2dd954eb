"""Views of a job for the REST API: what ``GET /jobs/:id`` and its sub-resources show.

Pure functions of a :class:`~.job_master.JobMaster`'s state (its graph, executions, timestamps
and the metrics its subtasks last reported); the Dispatcher calls them for each request.  They
read and never change the job, so they may run at any time on the loop.  Rates and ratios come
from the TaskManagers' metric reports (every ``taskmanager.metrics.interval``): a view never
samples anything itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamlet.rest.schemas import (
    EXECUTION_STATES, JobExceptions, JobInfo, SubtaskBackpressure, SubtaskInfo, TaskMetricsInfo, VertexBackpressure,
    VertexInfo,
)
from streamlet.runtime.jobmanager.job_status import ExecutionState, JobStatus
from streamlet.time.watermarks import MIN_WATERMARK

if TYPE_CHECKING:
    from streamlet.graph.job_graph import JobGraph
    from streamlet.runtime.jobmanager.job_master import JobMaster
    from streamlet.runtime.jobmanager.scheduler import Execution

E = ExecutionState
J = JobStatus


def job_info(jm: JobMaster) -> JobInfo:
    """The job as ``GET /jobs/:id`` shows it."""
    now = jm.clock.time_ms()
    by_vertex: dict[str, list[Execution]] = {}
    for ex in jm.executions:
        by_vertex.setdefault(ex.tdd.vertex_id, []).append(ex)
    vertices = [_vertex_info(jm, v.id, v.name, v.parallelism, v.operators, by_vertex.get(v.id, []))
                for v in jm.graph.vertices]
    end = next((jm.timestamps[s.value] for s in (J.FINISHED, J.FAILED, J.CANCELED, J.SUSPENDED)
                if s.value in jm.timestamps), -1)
    reason = jm.resources.pending_reason(jm.job_id) if jm.status is J.CREATED else None
    return JobInfo(jm.job_id, jm.graph.name, jm.status.value, jm.graph.mode,
                   jm.timestamps[J.INITIALIZING.value], end, max(jm.timestamps.values()),
                   jm.graph.max_parallelism, dict(jm.timestamps), vertices, job_plan(jm), reason, now,
                   jm.num_restarts)


def _vertex_info(jm: JobMaster, vid: str, name: str, parallelism: int, operators: Any,
                 executions: list[Execution]) -> VertexInfo:
    subtasks = []
    for ex in executions:
        start = ex.timestamps.get(E.DEPLOYING.value, -1)
        end = next((ex.timestamps[s.value] for s in (E.FINISHED, E.CANCELED, E.FAILED)
                    if s.value in ex.timestamps), -1)
        subtasks.append(SubtaskInfo(ex.tdd.subtask_index, ex.state.value, ex.attempt, ex.attempt_id,
                                    ex.slot.data_address if ex.slot else None,
                                    ex.slot.task_manager_id if ex.slot else None, start, end,
                                    task_metrics(ex.metrics, ex.state.is_terminal), ex.failure))
    counts = dict.fromkeys(EXECUTION_STATES, 0)
    for s in subtasks:
        counts[s.status] += 1
    total = TaskMetricsInfo(complete=bool(subtasks) and all(s.metrics.complete for s in subtasks))
    for s in subtasks:
        m = s.metrics
        total.records_in += m.records_in
        total.records_out += m.records_out
        total.records_in_per_second += m.records_in_per_second
        total.records_out_per_second += m.records_out_per_second
        total.busy_ms += m.busy_ms
        total.idle_ms += m.idle_ms
        total.backpressured_ms += m.backpressured_ms
    n = max(len(subtasks), 1)
    total.busy_ms_per_second = sum(s.metrics.busy_ms_per_second for s in subtasks) / n
    total.idle_ms_per_second = sum(s.metrics.idle_ms_per_second for s in subtasks) / n
    total.backpressured_ms_per_second = sum(s.metrics.backpressured_ms_per_second for s in subtasks) / n
    progress = [s.metrics.progress for s in subtasks]
    total.progress = (sum(progress) / len(progress)  # type: ignore[arg-type]
                      if progress and all(p is not None for p in progress) else None)
    starts = [s.start_time for s in subtasks if s.start_time > 0]
    ends = [s.end_time for s in subtasks]
    return VertexInfo(vid, name, parallelism, jm.graph.max_parallelism, _vertex_status(subtasks),
                      min(starts) if starts else -1,
                      max(ends) if ends and all(e > 0 for e in ends) else -1,
                      counts, total, subtasks, [op.to_json() for op in operators])


def job_plan(jm: JobMaster) -> dict[str, Any]:
    """Flink's ``plan`` JSON of the job (see :func:`graph_plan`)."""
    return graph_plan(jm.graph, jm.job_id)


def graph_plan(graph: JobGraph, job_id: str | None) -> dict[str, Any]:
    """Flink's ``plan`` JSON: one node per vertex with its inputs and ship strategies.

    Each node also lists its chained ``operators`` (``[{id, kind}]``, a streamlet extension the
    dashboard draws).  ``POST /jobs/validate`` answers the same shape for a pipeline not yet
    submitted (``jid`` None).
    """
    nodes = []
    for v in graph.vertices:
        inputs = [{"num": i, "id": e.source, "ship_strategy": e.partitioner.upper(),
                   "exchange": "pipelined_bounded"} for i, e in enumerate(graph.inputs_of(v.id))]
        node: dict[str, Any] = {"id": v.id, "parallelism": v.parallelism, "operator": "",
                                "operator_strategy": "", "description": v.name, "optimizer_properties": {},
                                "operators": [{"id": op.id, "kind": op.KIND} for op in v.operators]}
        if inputs:
            node["inputs"] = inputs
        nodes.append(node)
    return {"jid": job_id, "name": graph.name, "type": "BATCH" if graph.mode == "batch" else "STREAMING",
            "nodes": nodes}


def exception_history(jm: JobMaster) -> JobExceptions:
    """``GET /jobs/:id/exceptions``: every failure recorded, oldest (the root cause) first."""
    return JobExceptions(list(jm.exceptions), list(jm.restarts))


def _subtasks_of(jm: JobMaster, vertex_id: str) -> list[Execution] | None:
    if vertex_id not in {v.id for v in jm.graph.vertices}:
        return None
    return [ex for ex in jm.executions if ex.tdd.vertex_id == vertex_id]


def vertex_backpressure(jm: JobMaster, vertex_id: str) -> VertexBackpressure | None:
    """``GET .../vertices/:vid/backpressure``; None when the job has no such vertex."""
    executions = _subtasks_of(jm, vertex_id)
    if executions is None:
        return None
    subtasks = []
    for ex in executions:
        m = task_metrics(ex.metrics, ex.state.is_terminal)
        subtasks.append(SubtaskBackpressure(ex.tdd.subtask_index, min(1.0, m.backpressured_ms_per_second / 1000),
                                            min(1.0, m.idle_ms_per_second / 1000),
                                            min(1.0, m.busy_ms_per_second / 1000)))
    return VertexBackpressure(jm.clock.time_ms(), subtasks)


def vertex_watermarks(jm: JobMaster, vertex_id: str) -> list[dict[str, str]] | None:
    """``GET .../vertices/:vid/watermarks``: Flink's metric list, ``<subtask>.currentInputWatermark``
    (and ``.currentOutputWatermark``) with the value as a string, from the last metrics report;
    None when the job has no such vertex."""
    executions = _subtasks_of(jm, vertex_id)
    if executions is None:
        return None
    out = []
    for ex in sorted(executions, key=lambda e: e.tdd.subtask_index):
        m = ex.metrics or {}
        out.append({"id": f"{ex.tdd.subtask_index}.currentInputWatermark",
                    "value": str(m.get("input_watermark", MIN_WATERMARK))})
        out.append({"id": f"{ex.tdd.subtask_index}.currentOutputWatermark",
                    "value": str(m.get("watermark", MIN_WATERMARK))})
    return out


def task_metrics(m: dict[str, Any] | None, complete: bool) -> TaskMetricsInfo:
    """A subtask's last metrics report (see :class:`~streamlet.rpc.messages.MetricsReport`) as a view."""
    if not m:
        return TaskMetricsInfo(complete=complete)
    return TaskMetricsInfo(
        m.get("records_in", 0), m.get("records_out", 0), m.get("records_in_per_second", 0.0),
        m.get("records_out_per_second", 0.0), m.get("busy_ms_per_second", 0.0), m.get("idle_ms_per_second", 0.0),
        m.get("backpressured_ms_per_second", 0.0), m.get("busy_ms", 0.0), m.get("idle_ms", 0.0),
        m.get("backpressured_ms", 0.0), m.get("progress"), complete)


_VERTEX_PRIORITY = (E.FAILED, E.CANCELING, E.RUNNING, E.INITIALIZING, E.DEPLOYING, E.SCHEDULED, E.CREATED,
                    E.CANCELED, E.FINISHED)


def _vertex_status(subtasks: list[SubtaskInfo]) -> str:
    """A vertex's state from its subtasks' (Flink's aggregation, simplified)."""
    states = {s.status for s in subtasks}
    if not states:
        return E.CREATED.value
    if len(states) == 1:
        return next(iter(states))
    return next(s.value for s in _VERTEX_PRIORITY if s.value in states)
