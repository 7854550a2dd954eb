"""The JobManager's metrics of one job (Flink's ``jobmanager_job`` scope).

Registered on the job's :class:`~streamlet.metrics.registry.MetricGroup` when the Dispatcher
starts its JobMaster; every value is a gauge read at scrape time from the small interface
below, so the JobMaster (and the checkpoint coordinator and restart strategy behind it) only
keeps its own counts:

* :meth:`JobMetricsSource.checkpoint_counts` gives :class:`CheckpointCounts`;
* ``num_restarts`` is how often the job was restarted by its restart strategy.

Exported names (``flink_jobmanager_job_<name>``, labels ``host, job_id, job_name``): ``uptime``
(ms in RUNNING since the last (re)start, 0 before, -1 once terminal), ``downtime`` (ms in
FAILING/RESTARTING since, else 0), ``numRestarts``, ``fullRestarts`` (the same), ``lastCheckpointDuration``
(ms, -1 before the first), ``lastCheckpointSize`` (bytes, -1 before the first),
``numberOfCompletedCheckpoints``, ``numberOfFailedCheckpoints``, ``numberOfInProgressCheckpoints``,
``totalNumberOfCheckpoints``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamlet.metrics.registry import MetricGroup


@dataclass(frozen=True)
class CheckpointCounts:
    """What the metrics show of a job's checkpoints (all zero / -1 while it has none)."""

    completed: int = 0
    failed: int = 0
    in_progress: int = 0
    #: duration (ms) and size (bytes, what was uploaded) of the last completed checkpoint, -1: none yet
    last_duration_ms: int = -1
    last_size_bytes: int = -1


class JobMetricsSource(Protocol):
    """What :func:`register_job_metrics` reads of a job (the JobMaster)."""

    num_restarts: int

    def checkpoint_counts(self) -> CheckpointCounts: ...

    def uptime_ms(self) -> int: ...

    def downtime_ms(self) -> int: ...


def register_job_metrics(group: MetricGroup, job: JobMetricsSource) -> None:
    """Register the job's gauges (see the module docstring) on ``group``."""
    group.gauge("uptime", job.uptime_ms)
    group.gauge("downtime", job.downtime_ms)
    group.gauge("numRestarts", lambda: job.num_restarts)
    group.gauge("fullRestarts", lambda: job.num_restarts)
    group.gauge("lastCheckpointDuration", lambda: job.checkpoint_counts().last_duration_ms)
    group.gauge("lastCheckpointSize", lambda: job.checkpoint_counts().last_size_bytes)
    group.gauge("numberOfCompletedCheckpoints", lambda: job.checkpoint_counts().completed)
    group.gauge("numberOfFailedCheckpoints", lambda: job.checkpoint_counts().failed)
    group.gauge("numberOfInProgressCheckpoints", lambda: job.checkpoint_counts().in_progress)

    def total() -> int:
        c = job.checkpoint_counts()
        return c.completed + c.failed + c.in_progress

    group.gauge("totalNumberOfCheckpoints", total)
