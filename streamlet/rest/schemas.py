"""Request and response shapes of the REST API, in one place (Flink's ``*Info`` / ``*Headers`` idea).

The JobManager fills these dataclasses; ``to_json`` renders Flink's field names, so tools written
for Flink's REST API read them unchanged.  Fields Flink does not have are streamlet extensions and
are listed in docs/rest.md (``pending-reason``, the ``*-per-second`` vertex metrics,
``input-progress``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Flink's back pressure thresholds: ratio < 0.10 ok, <= 0.5 low, above high
BACKPRESSURE_LOW = 0.10
BACKPRESSURE_HIGH = 0.5

EXECUTION_STATES = ("CREATED", "SCHEDULED", "DEPLOYING", "INITIALIZING", "RUNNING", "FINISHED", "CANCELING",
                    "CANCELED", "FAILED", "RECONCILING")


def backpressure_level(ratio: float) -> str:
    """Flink's level of a back-pressured-time ratio (0..1): ``ok``, ``low`` or ``high``."""
    if ratio < BACKPRESSURE_LOW:
        return "ok"
    if ratio <= BACKPRESSURE_HIGH:
        return "low"
    return "high"


@dataclass(frozen=True)
class JobSubmission:
    """A ``POST /jobs`` request, parsed.

    Exactly one of ``pipeline_yaml`` (YAML text) and ``job_graph`` (a JobGraph as JSON, what
    ``streamlet run --taskmanagers`` sends) is set.  ``files`` maps relative paths to contents;
    ``base_dir`` resolves relative ``path:`` values of the pipeline (None: the JobManager's
    working directory).
    """

    pipeline_yaml: str | None = None
    job_graph: dict[str, Any] | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    base_dir: str | None = None
    parallelism: int | None = None
    filename: str = "<rest>"
    #: start from this savepoint or retained checkpoint (Flink's ``savepointPath``)
    savepoint_path: str | None = None
    #: drop savepoint state of operators the job does not have (``allowNonRestoredState``)
    allow_non_restored_state: bool = False


@dataclass
class TaskMetricsInfo:
    """Counters and per-second rates of a subtask, or summed over a vertex's subtasks."""

    records_in: int = 0
    records_out: int = 0
    records_in_per_second: float = 0.0
    records_out_per_second: float = 0.0
    busy_ms_per_second: float = 0.0
    idle_ms_per_second: float = 0.0
    backpressured_ms_per_second: float = 0.0
    busy_ms: float = 0.0
    idle_ms: float = 0.0
    backpressured_ms: float = 0.0
    progress: float | None = None
    complete: bool = False

    def to_json(self) -> dict[str, Any]:
        """Flink's vertex metric names plus streamlet's per-second extensions."""
        return {
            "read-bytes": 0, "read-bytes-complete": self.complete,
            "write-bytes": 0, "write-bytes-complete": self.complete,
            "read-records": self.records_in, "read-records-complete": self.complete,
            "write-records": self.records_out, "write-records-complete": self.complete,
            "accumulated-backpressured-time": int(self.backpressured_ms),
            "accumulated-idle-time": int(self.idle_ms),
            "accumulated-busy-time": float(self.busy_ms),
            "read-records-per-second": round(self.records_in_per_second, 3),
            "write-records-per-second": round(self.records_out_per_second, 3),
            "busy-time-ms-per-second": round(self.busy_ms_per_second, 3),
            "idle-time-ms-per-second": round(self.idle_ms_per_second, 3),
            "backpressured-time-ms-per-second": round(self.backpressured_ms_per_second, 3),
            "input-progress": self.progress,
        }


@dataclass
class SubtaskInfo:
    """One subtask attempt of a vertex."""

    subtask: int
    status: str
    attempt: int
    attempt_id: str
    host: str | None
    task_manager_id: str | None
    start_time: int
    end_time: int
    metrics: TaskMetricsInfo
    failure: str | None = None

    def to_json(self, now: int) -> dict[str, Any]:
        end = self.end_time
        return {"subtask": self.subtask, "status": self.status, "attempt": self.attempt,
                "attempt-id": self.attempt_id, "endpoint": self.host, "host": self.host,
                "taskmanager-id": self.task_manager_id, "start-time": self.start_time,
                "end-time": end, "duration": (end if end > 0 else now) - self.start_time if self.start_time > 0 else -1,
                "metrics": self.metrics.to_json(), "failure-cause": self.failure}


@dataclass
class VertexInfo:
    """One JobVertex (operator chain) with its subtasks."""

    id: str
    name: str
    parallelism: int
    max_parallelism: int
    status: str
    start_time: int
    end_time: int
    tasks: dict[str, int]
    metrics: TaskMetricsInfo
    subtasks: list[SubtaskInfo]
    operators: list[dict[str, Any]]

    def to_json(self, now: int) -> dict[str, Any]:
        end = self.end_time
        return {"id": self.id, "name": self.name, "maxParallelism": self.max_parallelism,
                "parallelism": self.parallelism, "status": self.status, "start-time": self.start_time,
                "end-time": end, "duration": (end if end > 0 else now) - self.start_time if self.start_time > 0 else -1,
                "tasks": self.tasks, "metrics": self.metrics.to_json()}


@dataclass
class JobInfo:
    """A job as the JobManager sees it (``GET /jobs/:id`` and one row of ``/jobs/overview``)."""

    jid: str
    name: str
    state: str
    mode: str
    start_time: int
    end_time: int
    last_modification: int
    max_parallelism: int
    timestamps: dict[str, int]
    vertices: list[VertexInfo]
    plan: dict[str, Any]
    pending_reason: str | None = None
    now: int = 0
    #: times the job restarted (Flink's ``numRestarts`` metric; shown as ``numRestarts``)
    restarts: int = 0

    def _duration(self) -> int:
        return (self.end_time if self.end_time > 0 else self.now) - self.start_time

    def task_counts(self) -> dict[str, int]:
        """Subtask counts per state, Flink's ``status-counts`` / lower-cased ``tasks`` keys."""
        counts = dict.fromkeys(EXECUTION_STATES, 0)
        for v in self.vertices:
            for s in v.subtasks:
                counts[s.status] = counts.get(s.status, 0) + 1
        return counts

    def to_overview_json(self) -> dict[str, Any]:
        counts = self.task_counts()
        tasks = {k.lower(): v for k, v in counts.items()}
        tasks["total"] = sum(counts.values())
        pending = sum(1 for v in self.vertices if v.status in ("CREATED", "SCHEDULED", "DEPLOYING"))
        return {"jid": self.jid, "name": self.name, "state": self.state, "start-time": self.start_time,
                "end-time": self.end_time, "duration": self._duration(),
                "last-modification": self.last_modification, "pending-operators": pending, "tasks": tasks,
                "numRestarts": self.restarts}

    def to_details_json(self) -> dict[str, Any]:
        return {"jid": self.jid, "name": self.name, "isStoppable": False, "state": self.state,
                "job-type": "BATCH" if self.mode == "batch" else "STREAMING",
                "start-time": self.start_time, "end-time": self.end_time, "duration": self._duration(),
                "maxParallelism": self.max_parallelism, "now": self.now, "timestamps": self.timestamps,
                "vertices": [v.to_json(self.now) for v in self.vertices], "status-counts": self.task_counts(),
                "plan": self.plan, "pending-reason": self.pending_reason, "numRestarts": self.restarts}


@dataclass(frozen=True)
class ExceptionEntry:
    """One failure of a job: the message, the subtask and where it ran."""

    exception: str
    timestamp: int
    task: str | None = None
    location: str | None = None
    task_manager_id: str | None = None
    #: the number of the restart this failure caused (None: it failed the job, or came during one)
    restart: int | None = None


@dataclass(frozen=True)
class RestartEntry:
    """One restart of a job by its restart strategy: when it was decided (the failure), when the
    job was deployed again, and from which checkpoint (None: from the start or a savepoint)."""

    number: int
    failure_timestamp: int
    delay_ms: int
    timestamp: int
    checkpoint_id: int | None
    cause: str

    def to_json(self) -> dict[str, Any]:
        return {"restart": self.number, "failure-timestamp": self.failure_timestamp, "delay": self.delay_ms,
                "timestamp": self.timestamp, "checkpoint-id": self.checkpoint_id, "cause": self.cause}


@dataclass
class JobExceptions:
    """``GET /jobs/:id/exceptions``: the root cause first, then every failure seen, and every restart."""

    entries: list[ExceptionEntry]
    restarts: list[RestartEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        root = self.entries[0] if self.entries else None
        history = [{"exceptionName": e.exception.split(":", 1)[0], "stacktrace": e.exception,
                    "timestamp": e.timestamp, "taskName": e.task, "endpoint": e.location,
                    "taskManagerId": e.task_manager_id, "failureLabels": {}, "concurrentExceptions": [],
                    "restart": e.restart}
                   for e in self.entries]
        return {"root-exception": root.exception if root else None, "timestamp": root.timestamp if root else None,
                "all-exceptions": [{"exception": e.exception, "task": e.task, "location": e.location,
                                    "timestamp": e.timestamp, "taskManagerId": e.task_manager_id}
                                   for e in self.entries],
                "truncated": False, "exceptionHistory": {"entries": history, "truncated": False},
                "restarts": [r.to_json() for r in self.restarts]}


@dataclass
class TaskManagerInfo:
    """A registered TaskManager (``GET /taskmanagers``)."""

    id: str
    data_address: str
    slots: int
    free_slots: int
    time_since_last_heartbeat: int
    resources: dict[str, Any]
    allocated: list[dict[str, Any]]
    #: ``{rss_bytes, cpu_load}`` from the last heartbeat (empty before the first)
    stats: dict[str, Any] = field(default_factory=dict)

    def to_json(self, details: bool = False) -> dict[str, Any]:
        host, _, port = self.data_address.rpartition(":")
        out: dict[str, Any] = {
            "id": self.id, "path": f"streamlet://{self.data_address}/{self.id}", "address": self.data_address,
            "dataPort": int(port) if port.isdigit() else -1, "jmxPort": -1,
            "timeSinceLastHeartbeat": self.time_since_last_heartbeat, "slotsNumber": self.slots,
            "freeSlots": self.free_slots,
            "totalResource": {"cpuCores": float(self.slots)}, "freeResource": {"cpuCores": float(self.free_slots)},
            "hardware": {"cpuCores": self.resources.get("cpu_cores", 1),
                         "physicalMemory": self.resources.get("physical_memory", -1),
                         "freeMemory": -1, "managedMemory": 0},
            "blocked": False,
            # streamlet extensions: the process's resident memory (bytes) and CPU load (fraction
            # of one core) at its last heartbeat; -1 / null before the first
            "memoryRss": self.stats.get("rss_bytes", -1), "cpuLoad": self.stats.get("cpu_load"),
        }
        if details:
            out["allocatedSlots"] = self.allocated
            out["resources"] = self.resources
        return out


@dataclass(frozen=True)
class ClusterOverview:
    """``GET /overview``."""

    taskmanagers: int
    slots_total: int
    slots_available: int
    jobs: dict[str, int]
    version: str

    def to_json(self) -> dict[str, Any]:
        return {"taskmanagers": self.taskmanagers, "slots-total": self.slots_total,
                "slots-available": self.slots_available, "jobs-running": self.jobs.get("running", 0),
                "jobs-finished": self.jobs.get("finished", 0), "jobs-cancelled": self.jobs.get("cancelled", 0),
                "jobs-failed": self.jobs.get("failed", 0), "flink-version": self.version, "flink-commit": "",
                "streamlet-version": self.version}


@dataclass(frozen=True)
class SubtaskBackpressure:
    """Back-pressured, idle and busy ratios (0..1) of one subtask over the last report interval."""

    subtask: int
    ratio: float
    idle_ratio: float
    busy_ratio: float

    def to_json(self) -> dict[str, Any]:
        return {"subtask": self.subtask, "attempt-number": 0, "backpressure-level": backpressure_level(self.ratio),
                "ratio": round(self.ratio, 4), "idleRatio": round(self.idle_ratio, 4),
                "busyRatio": round(self.busy_ratio, 4)}


@dataclass(frozen=True)
class VertexBackpressure:
    """``GET /jobs/:id/vertices/:vid/backpressure`` (the level is the worst subtask's)."""

    end_timestamp: int
    subtasks: list[SubtaskBackpressure]

    def to_json(self) -> dict[str, Any]:
        worst = max((s.ratio for s in self.subtasks), default=0.0)
        return {"status": "ok", "backpressure-level": backpressure_level(worst),
                "end-timestamp": self.end_timestamp, "subtasks": [s.to_json() for s in self.subtasks]}


# -- JSON Schemas of the bodies above (rendered into the OpenAPI document by rest.spec) ----------

def _obj(props: dict[str, Any], required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """An object schema; every listed property is required unless ``required`` says otherwise."""
    return {"type": "object", "properties": props, "required": list(props if required is None else required)}


def _arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _null(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_S: dict[str, Any] = {"type": "string"}
_I: dict[str, Any] = {"type": "integer"}
_N: dict[str, Any] = {"type": "number"}
_B: dict[str, Any] = {"type": "boolean"}
_O: dict[str, Any] = {"type": "object"}
_JOB_STATE: dict[str, Any] = {"type": "string", "enum": ["INITIALIZING", "CREATED", "RUNNING", "FAILING", "FAILED",
                                                         "CANCELLING", "CANCELED", "FINISHED", "RESTARTING",
                                                         "SUSPENDED"]}
_EXEC_STATE: dict[str, Any] = {"type": "string", "enum": list(EXECUTION_STATES)}
_LEVEL: dict[str, Any] = {"type": "string", "enum": ["ok", "low", "high"]}

OVERVIEW_SCHEMA = _obj({"taskmanagers": _I, "slots-total": _I, "slots-available": _I, "jobs-running": _I,
                        "jobs-finished": _I, "jobs-cancelled": _I, "jobs-failed": _I, "flink-version": _S,
                        "flink-commit": _S, "streamlet-version": _S})
_TASK_MANAGER = _obj({"id": _S, "path": _S, "address": _S, "dataPort": _I, "jmxPort": _I,
                      "timeSinceLastHeartbeat": _I, "slotsNumber": _I, "freeSlots": _I, "totalResource": _O,
                      "freeResource": _O, "hardware": _O, "blocked": _B,
                      "memoryRss": _I, "cpuLoad": _null(_N),
                      "allocatedSlots": _arr(_O), "resources": _O},
                     required=("id", "address", "slotsNumber", "freeSlots", "timeSinceLastHeartbeat"))
TASK_MANAGERS_SCHEMA = _obj({"taskmanagers": _arr(_TASK_MANAGER)})
TASK_MANAGER_SCHEMA = _TASK_MANAGER
DASHBOARD_CONFIG_SCHEMA = _obj({"refresh-interval": _I, "timezone-name": _S, "timezone-offset": _I,
                                "flink-version": _S, "flink-revision": _S, "features": _O},
                               required=("refresh-interval", "flink-version", "features"))
CONFIG_ENTRIES_SCHEMA = _arr(_obj({"key": _S, "value": _S}))
JOB_IDS_SCHEMA = _obj({"jobs": _arr(_obj({"id": _S, "status": _JOB_STATE}))})
_TASK_COUNTS = {"type": "object", "additionalProperties": _I}
_JOB_OVERVIEW = _obj({"jid": _S, "name": _S, "state": _JOB_STATE, "start-time": _I, "end-time": _I, "duration": _I,
                      "last-modification": _I, "pending-operators": _I, "tasks": _TASK_COUNTS,
                      "numRestarts": _I},
                     required=("jid", "name", "state", "start-time", "end-time", "duration", "last-modification",
                               "pending-operators", "tasks"))
JOBS_OVERVIEW_SCHEMA = _obj({"jobs": _arr(_JOB_OVERVIEW)})
_METRICS = _obj({"read-bytes": _I, "read-records": _I, "write-bytes": _I, "write-records": _I,
                 "accumulated-backpressured-time": _I, "accumulated-idle-time": _I, "accumulated-busy-time": _N,
                 "read-records-per-second": _N, "write-records-per-second": _N, "busy-time-ms-per-second": _N,
                 "idle-time-ms-per-second": _N, "backpressured-time-ms-per-second": _N,
                 "input-progress": _null(_N)},
                required=("read-records", "write-records", "read-records-per-second", "write-records-per-second",
                          "busy-time-ms-per-second", "idle-time-ms-per-second",
                          "backpressured-time-ms-per-second"))
_VERTEX = _obj({"id": _S, "name": _S, "maxParallelism": _I, "parallelism": _I, "status": _EXEC_STATE,
                "start-time": _I, "end-time": _I, "duration": _I, "tasks": _TASK_COUNTS, "metrics": _METRICS})
JOB_DETAILS_SCHEMA = _obj({"jid": _S, "name": _S, "isStoppable": _B, "state": _JOB_STATE,
                           "job-type": {"type": "string", "enum": ["BATCH", "STREAMING"]}, "start-time": _I,
                           "end-time": _I, "duration": _I, "maxParallelism": _I, "now": _I,
                           "timestamps": {"type": "object", "additionalProperties": _I},
                           "vertices": _arr(_VERTEX), "status-counts": _TASK_COUNTS, "plan": _O,
                           "pending-reason": _null(_S), "numRestarts": _I},
                          required=("jid", "name", "isStoppable", "state", "job-type", "start-time", "end-time",
                                    "duration", "maxParallelism", "now", "timestamps", "vertices", "status-counts",
                                    "plan", "pending-reason"))
PLAN_SCHEMA = _obj({"plan": _obj({"jid": _S, "name": _S, "type": _S, "nodes": _arr(_O)})})
_SUBTASK = _obj({"subtask": _I, "status": _EXEC_STATE, "attempt": _I, "attempt-id": _S, "endpoint": _null(_S),
                 "host": _null(_S), "taskmanager-id": _null(_S), "start-time": _I, "end-time": _I, "duration": _I,
                 "metrics": _METRICS, "failure-cause": _null(_S)})
VERTEX_DETAILS_SCHEMA = _obj({"id": _S, "name": _S, "parallelism": _I, "maxParallelism": _I, "now": _I,
                              "subtasks": _arr(_SUBTASK)})
_HISTORY_ENTRY = _obj({"exceptionName": _S, "stacktrace": _S, "timestamp": _I, "taskName": _null(_S),
                       "endpoint": _null(_S), "taskManagerId": _null(_S), "failureLabels": _O,
                       "concurrentExceptions": _arr(_O), "restart": _null(_I)})
EXCEPTIONS_SCHEMA = _obj({"root-exception": _null(_S), "timestamp": _null(_I),
                          "all-exceptions": _arr(_obj({"exception": _S, "task": _null(_S), "location": _null(_S),
                                                       "timestamp": _I, "taskManagerId": _null(_S)})),
                          "truncated": _B,
                          "exceptionHistory": _obj({"entries": _arr(_HISTORY_ENTRY), "truncated": _B}),
                          "restarts": _arr(_obj({"restart": _I, "failure-timestamp": _I, "delay": _I,
                                                 "timestamp": _I, "checkpoint-id": _null(_I), "cause": _S}))})
BACKPRESSURE_SCHEMA = _obj({"status": {"type": "string", "enum": ["ok", "deprecated"]}, "backpressure-level": _LEVEL,
                            "end-timestamp": _I,
                            "subtasks": _arr(_obj({"subtask": _I, "attempt-number": _I, "backpressure-level": _LEVEL,
                                                   "ratio": _N, "idleRatio": _N, "busyRatio": _N}))})
SUBMIT_RESPONSE_SCHEMA = _obj({"jobUrl": _S, "jid": _S})
VALIDATE_RESPONSE_SCHEMA = _obj({"plan": _obj({"jid": {"type": "null"}, "name": _S, "type": _S, "nodes": _arr(_O)})})
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "maxProperties": 0}
WATERMARKS_SCHEMA = _arr(_obj({"id": {"type": "string", "pattern": r"^\d+\.current(Input|Output)Watermark$"},
                               "value": {"type": "string", "pattern": r"^-?\d+$"}}))
STATE_SCHEMA = _obj({"jid": _S, "node": _S, "key": {}, "vertex": _S, "subtask": _S, "key-group": _I,
                     "live": _B, "truncated": _B,
                     "states": _arr(_obj({"name": _S, "kind": {"type": "string", "enum": ["value", "list", "map",
                                                                                     "reducing", "aggregating"]},
                                          "namespace": {}, "value": {}}))})
