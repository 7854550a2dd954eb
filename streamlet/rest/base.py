"""What the REST API needs from the JobManager: :class:`RestGateway`.

``rest`` never imports ``runtime``; the JobManager passes an object with these methods (its
Dispatcher) to :func:`streamlet.rest.app.create_app`, and tests pass a fake.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamlet.errors import StreamletError
from streamlet.metrics.registry import MetricGroup
from streamlet.rest.schemas import (
    ClusterOverview, JobExceptions, JobInfo, JobSubmission, TaskManagerInfo, VertexBackpressure,
)


class NotFoundError(StreamletError):
    """An id in the path names nothing the JobManager knows (answered with 404)."""


class ConflictError(StreamletError):
    """The request cannot be served in the current state of its target (a job not running; answered with 409)."""


class UnavailableError(StreamletError):
    """The JobManager cannot serve the request now (starting or shutting down; answered with 503)."""


class RestGateway(Protocol):
    """The JobManager as the REST API sees it.  Methods raise :class:`NotFoundError` for unknown ids."""

    def overview(self) -> ClusterOverview:
        """Cluster totals."""

    def task_managers(self) -> list[TaskManagerInfo]:
        """Every registered TaskManager."""

    def task_manager(self, task_manager_id: str) -> TaskManagerInfo:
        """One TaskManager."""

    def jobs(self) -> list[JobInfo]:
        """Every job the JobManager keeps (running and archived), oldest first."""

    def job(self, job_id: str) -> JobInfo:
        """One job."""

    def job_exceptions(self, job_id: str) -> JobExceptions:
        """Failures of one job, root cause first."""

    def vertex_backpressure(self, job_id: str, vertex_id: str) -> VertexBackpressure:
        """Back pressure of one vertex's subtasks."""

    def vertex_watermarks(self, job_id: str, vertex_id: str) -> list[dict[str, str]]:
        """Input and output watermarks of one vertex's subtasks (Flink's metric list)."""

    async def query_state(self, job_id: str, node_id: str, key: Any) -> dict[str, Any]:
        """The live keyed state of one node for one key (``GET /jobs/:id/state/:node?key=``)."""

    async def submit(self, submission: JobSubmission) -> str:
        """Accept a job and return its id; raises PipelineDefinitionError for an invalid pipeline."""

    async def validate(self, submission: JobSubmission) -> dict[str, Any]:
        """Plan a submission without running it: Flink's ``plan`` JSON; raises PipelineDefinitionError."""

    def vertex_flame_graph(self, job_id: str, vertex_id: str, kind: str = "FULL",
                           subtask: int | None = None) -> dict[str, Any]:
        """Flink's flame graph answer for a vertex (``endTimestamp`` -3 while the first samples are taken)."""

    def cancel(self, job_id: str) -> None:
        """Start cancelling a job (a terminal job is left as it is)."""

    def configuration(self) -> dict[str, Any]:
        """The effective configuration, secrets removed."""

    def metric_groups(self) -> list[MetricGroup]:
        """The roots of every metric ``GET /metrics`` exports (the JobManager's, and those of a
        TaskManager running in the same process)."""

    def checkpoint_stats(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints`` (Flink's shape)."""

    def checkpoint_config(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/:id/checkpoints/config``."""

    def trigger_checkpoint(self, job_id: str) -> str:
        """Start a checkpoint; returns the trigger id for :meth:`operation_status`."""

    def trigger_savepoint(self, job_id: str, target: str | None, stop: bool = False, drain: bool = False) -> str:
        """Start a savepoint (and with ``stop`` end the job after it); returns the trigger id.
        Raises PipelineDefinitionError when no target directory is known."""

    def operation_status(self, job_id: str, trigger_id: str) -> dict[str, Any]:
        """Status of a checkpoint or savepoint trigger (Flink's asynchronous operation shape)."""
