"""What a client sees of a running or finished job: progress per vertex and the job's result.

Built from the JSON of ``GET /jobs/:id`` (:func:`progress_from_details`), whether the job runs in
this process (``streamlet run``, the Python API) or on a remote JobManager, so the live display,
the final summary and the benchmark read the same numbers the REST API shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VertexProgress:
    """Progress of one vertex (summed over its subtasks; time ratios averaged, 0..1)."""

    id: str
    name: str
    parallelism: int
    records_in: int
    records_out: int
    rate_in: float
    rate_out: float
    fraction: float | None
    busy: float
    idle: float
    backpressured: float
    finished: int


@dataclass
class Progress:
    """A snapshot of a running job."""

    job_name: str
    elapsed: float
    vertices: list[VertexProgress]
    final: bool = False


@dataclass
class JobResult:
    """How a job ended.  ``run_seconds`` counts from RUNNING to the end; rates in ``vertices`` are
    over that time."""

    job_id: str
    job_name: str
    state: str
    startup_seconds: float
    run_seconds: float
    progress: Progress | None = None
    error: BaseException | None = None
    vertices: list[VertexProgress] = field(default_factory=list)


def progress_from_details(details: dict[str, Any], elapsed: float, final: bool = False) -> Progress:
    """A :class:`Progress` from ``GET /jobs/:id`` (the metrics the TaskManagers reported)."""
    vertices = []
    for v in details.get("vertices", []):
        m = v.get("metrics", {})
        vertices.append(VertexProgress(
            v["id"], v["name"], v["parallelism"], int(m.get("read-records", 0)), int(m.get("write-records", 0)),
            float(m.get("read-records-per-second", 0.0)), float(m.get("write-records-per-second", 0.0)),
            m.get("input-progress"), float(m.get("busy-time-ms-per-second", 0.0)) / 1000,
            float(m.get("idle-time-ms-per-second", 0.0)) / 1000,
            float(m.get("backpressured-time-ms-per-second", 0.0)) / 1000, int(v.get("tasks", {}).get("FINISHED", 0))))
    return Progress(details.get("name", ""), elapsed, vertices, final)


def result_from_details(details: dict[str, Any], error: BaseException | None = None) -> JobResult:
    """The :class:`JobResult` of a terminal job's ``GET /jobs/:id``; final rates are over its run time."""
    ts = details.get("timestamps", {})
    start = details.get("start-time", 0)
    running = ts.get("RUNNING", details.get("end-time", start))
    end = details.get("end-time", -1)
    if end <= 0:
        end = details.get("now", running)
    run_seconds = max(0.0, (end - running) / 1000)
    final = progress_from_details(details, (end - start) / 1000, final=True)
    for vp in final.vertices:
        vp.rate_in = vp.records_in / max(run_seconds, 1e-3)
        vp.rate_out = vp.records_out / max(run_seconds, 1e-3)
    return JobResult(details["jid"], details.get("name", ""), details["state"], max(0.0, (running - start) / 1000),
                     run_seconds, final, error, final.vertices)
