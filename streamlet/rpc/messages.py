"""Every control-plane message, declared once, as a frozen dataclass.

Messages travel between the JobManager and TaskManagers over the websocket RPC (``/rpc``), in
the envelope of :mod:`streamlet.rpc.codec`.  A payload is the dataclass's fields as JSON; nested
runtime objects (task deployment descriptors, metrics) travel as plain JSON maps so this module
stays pure data and imports nothing from the runtime.

Who sends what (``->`` is a request, ``<-`` its response):

======================  =========================  ==========================================
sender                  request                    response
======================  =========================  ==========================================
TaskManager             RegisterTaskManager        RegistrationAck | RegistrationRefused
TaskManager             Heartbeat                  HeartbeatAck
TaskManager             TaskStateUpdates           Ack
TaskManager             MetricsReport              Ack
TaskManager             AcknowledgeCheckpoint      Ack
TaskManager             DeclineCheckpoint          Ack
JobManager              DeployTasks                Ack
JobManager              CancelJob                  Ack
JobManager              AddSplits                  Ack
JobManager              ReleaseJob                 Ack
JobManager              TriggerCheckpoint          Ack
JobManager              NotifyCheckpointComplete   Ack
JobManager              QueryState                 StateValue
JobManager              SampleStacks               StackSamples
either                  (any, on failure)          Error
======================  =========================  ==========================================

``VERSION`` changes when a message changes incompatibly; a peer with another version is refused.
Unknown payload fields are ignored, so adding an optional field is compatible.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: protocol version carried in every envelope
VERSION = 1


@dataclass(frozen=True)
class Message:
    """Base of every message: ``from_payload`` builds one from its JSON fields."""

    TYPE: ClassVar[str] = ""

    def to_payload(self) -> dict[str, Any]:
        """The JSON fields (shallow: values are already JSON-native)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Message:
        """A message from its fields; unknown fields are ignored (newer peers may add some).

        Raises TypeError naming the field when a field is missing or has the wrong JSON type
        (its declared type, one level deep: a ``list[dict]`` must hold maps), so handlers only
        ever see well-typed messages.
        """
        checks = _checks(cls)
        values = {}
        for name, check in checks.items():
            if name in payload:
                value = payload[name]
                if not check(value):
                    raise TypeError(f"field {name!r} has the wrong type {type(value).__name__}")
                values[name] = value
        return cls(**values)


_CHECKS: dict[type, dict[str, Any]] = {}
_SCALARS: dict[str, Any] = {
    "str": lambda v: type(v) is str, "int": lambda v: type(v) is int, "bool": lambda v: type(v) is bool,
    "float": lambda v: type(v) in (int, float), "None": lambda v: v is None, "Any": lambda v: True,
}


def _check_of(annotation: str) -> Any:
    """A predicate for a field annotation (the subset messages use: scalars, ``X | None``,
    ``list[...]``, ``dict[str, ...]``)."""
    if "|" in annotation and "[" not in annotation.split("|")[0]:
        parts = [_check_of(p.strip()) for p in annotation.split("|")]
        return lambda v: any(p(v) for p in parts)
    if annotation.startswith("list["):
        inner = _check_of(annotation[5:-1])
        return lambda v: type(v) is list and all(inner(x) for x in v)
    if annotation.startswith("dict["):
        value = _check_of(annotation[5:-1].split(",", 1)[1].strip())
        return lambda v: type(v) is dict and all(type(k) is str and value(x) for k, x in v.items())
    return _SCALARS[annotation]


def _checks(cls: type) -> dict[str, Any]:
    checks = _CHECKS.get(cls)
    if checks is None:
        checks = _CHECKS[cls] = {f.name: _check_of(str(f.type)) for f in dataclasses.fields(cls)}
    return checks


# -- generic responses -------------------------------------------------------------------------


@dataclass(frozen=True)
class Ack(Message):
    """A request was carried out."""

    TYPE: ClassVar[str] = "Ack"


@dataclass(frozen=True)
class Error(Message):
    """A request failed; ``retryable`` tells the caller whether trying again may help."""

    TYPE: ClassVar[str] = "Error"
    message: str
    retryable: bool = False


# -- TaskManager -> JobManager -----------------------------------------------------------------


@dataclass(frozen=True)
class RegisterTaskManager(Message):
    """A TaskManager offers itself: its id, slots and the address of its data endpoint."""

    TYPE: ClassVar[str] = "RegisterTaskManager"
    task_manager_id: str
    slots: int
    data_address: str
    #: hostname, pid, cpu cores, memory: shown by ``GET /taskmanagers``
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistrationAck(Message):
    """Registration accepted; ``registration_id`` fences every later message of this session."""

    TYPE: ClassVar[str] = "RegistrationAck"
    registration_id: str
    resource_manager_id: str
    heartbeat_interval: float
    heartbeat_timeout: float


@dataclass(frozen=True)
class RegistrationRefused(Message):
    """Registration refused; the TaskManager logs ``reason`` and stops."""

    TYPE: ClassVar[str] = "RegistrationRefused"
    reason: str


@dataclass(frozen=True)
class Heartbeat(Message):
    """The TaskManager is alive; ``slots`` is its slot report (``[{index, job_id}]``), ``stats``
    what the process uses (``{rss_bytes, cpu_load}``, shown by ``GET /taskmanagers``)."""

    TYPE: ClassVar[str] = "Heartbeat"
    task_manager_id: str
    slots: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HeartbeatAck(Message):
    """The JobManager is alive and still knows this registration."""

    TYPE: ClassVar[str] = "HeartbeatAck"


@dataclass(frozen=True)
class TaskStateUpdates(Message):
    """Subtask state changes, in the order they happened.

    Each update is ``{job_id, vertex_id, subtask_index, attempt_id, state, error, metrics}``
    where ``state`` is an ExecutionState name, ``error`` a message or None, and ``metrics`` the
    subtask's final counters (on terminal states) or None.
    """

    TYPE: ClassVar[str] = "TaskStateUpdates"
    task_manager_id: str
    updates: list[dict[str, Any]]


@dataclass(frozen=True)
class MetricsReport(Message):
    """Per-subtask counters and per-second rates, every ``taskmanager.metrics.interval``.

    Each entry is ``{job_id, vertex_id, subtask_index, attempt_id, records_in, records_out,
    records_in_per_second, records_out_per_second, busy_ms_per_second, idle_ms_per_second,
    backpressured_ms_per_second, idle_ms, backpressured_ms, busy_ms, progress}``.
    """

    TYPE: ClassVar[str] = "MetricsReport"
    task_manager_id: str
    tasks: list[dict[str, Any]]


@dataclass(frozen=True)
class AcknowledgeCheckpoint(Message):
    """One subtask took its part of checkpoint ``checkpoint_id`` and its state is persisted.

    ``state`` is ``{operators, splits, sink, committables, keyed}`` (JSON; ``keyed`` the keyed-state
    backend's handle or None); ``metrics`` is ``{alignment_ms, sync_ms, async_ms, state_size,
    checkpointed_size}``.
    """

    TYPE: ClassVar[str] = "AcknowledgeCheckpoint"
    task_manager_id: str
    job_id: str
    vertex_id: str
    subtask_index: int
    attempt_id: str
    checkpoint_id: int
    state: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeclineCheckpoint(Message):
    """One subtask could not take its part of checkpoint ``checkpoint_id`` (``reason`` says why)."""

    TYPE: ClassVar[str] = "DeclineCheckpoint"
    task_manager_id: str
    job_id: str
    vertex_id: str
    subtask_index: int
    attempt_id: str
    checkpoint_id: int
    reason: str


# -- JobManager -> TaskManager -----------------------------------------------------------------


@dataclass(frozen=True)
class DeployTasks(Message):
    """Run these subtasks of one job (all of the job's subtasks placed on this TaskManager).

    * ``tasks``: ``[{slot, attempt_id, tdd}]`` with ``tdd`` a TaskDeploymentDescriptor as JSON;
    * ``locations``: vertex id -> the TaskManager id running each subtask index;
    * ``addresses``: TaskManager id -> its data address (``host:port``);
    * ``files``: relative path -> base64 content of the files submitted with the job; they are
      written to a per-job directory that is put first on the subtasks' ``sys.path``.
    """

    TYPE: ClassVar[str] = "DeployTasks"
    job_id: str
    job_name: str
    tasks: list[dict[str, Any]]
    locations: dict[str, list[str]]
    addresses: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelJob(Message):
    """Cancel every subtask of ``job_id`` on this TaskManager (each reports CANCELED)."""

    TYPE: ClassVar[str] = "CancelJob"
    job_id: str


@dataclass(frozen=True)
class AddSplits(Message):
    """Hand new splits, found by the source coordinator while the job runs (e.g. new files of a
    watched directory), to one running source subtask; its reader takes them between batches."""

    TYPE: ClassVar[str] = "AddSplits"
    job_id: str
    vertex_id: str
    subtask_index: int
    splits: list[dict[str, Any]]


@dataclass(frozen=True)
class ReleaseJob(Message):
    """The job reached a terminal state: free its slots, channels and files."""

    TYPE: ClassVar[str] = "ReleaseJob"
    job_id: str


@dataclass(frozen=True)
class TriggerCheckpoint(Message):
    """Checkpoint ``checkpoint_id`` of ``job_id`` starts: sent to every TaskManager running the job.

    Source subtasks here inject its barrier; every subtask here persists its state below
    ``storage`` (a URI, the job-scoped checkpoint storage) in ``directory`` (its exclusive files);
    ``savepoint``: a self-contained snapshot (no shared files); ``drain``: sources end their input
    after it (stop --drain).
    """

    TYPE: ClassVar[str] = "TriggerCheckpoint"
    job_id: str
    checkpoint_id: int
    timestamp: int
    storage: str
    directory: str
    savepoint: bool = False
    drain: bool = False


@dataclass(frozen=True)
class NotifyCheckpointComplete(Message):
    """Checkpoint ``checkpoint_id`` of ``job_id`` is complete: commit what it covers."""

    TYPE: ClassVar[str] = "NotifyCheckpointComplete"
    job_id: str
    checkpoint_id: int


@dataclass(frozen=True)
class QueryState(Message):
    """Read the live keyed state of operator ``node_id`` for ``key`` (a JSON value; a list is a
    composite key) in subtask ``subtask_index`` of vertex ``vertex_id``, which owns its key group."""

    TYPE: ClassVar[str] = "QueryState"
    job_id: str
    vertex_id: str
    subtask_index: int
    node_id: str
    key: Any = None


@dataclass(frozen=True)
class StateValue(Message):
    """The answer to :class:`QueryState`: ``states`` as :func:`streamlet.state.query.read_key` gives them."""

    TYPE: ClassVar[str] = "StateValue"
    states: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    #: the subtask that answered (``name (i/n)``) and the key group of the key
    subtask: str = ""
    key_group: int = -1


@dataclass(frozen=True)
class SampleStacks(Message):
    """Sample the Python stacks of a vertex's subtasks on this TaskManager (a flame graph).

    ``subtasks`` are the subtask indexes to sample (empty: every one of the vertex here);
    ``num_samples`` samples are taken ``delay`` seconds apart, each stack cut to its
    ``max_depth`` outermost frames.  The answer comes when sampling ended.
    """

    TYPE: ClassVar[str] = "SampleStacks"
    job_id: str
    vertex_id: str
    subtasks: list[int]
    num_samples: int
    delay: float
    max_depth: int


@dataclass(frozen=True)
class StackSamples(Message):
    """The answer to :class:`SampleStacks`: ``samples`` is ``[{subtask, on_cpu, stack, count}]``
    with ``stack`` the frame names outermost first and ``count`` how many samples saw it."""

    TYPE: ClassVar[str] = "StackSamples"
    samples: list[dict[str, Any]]


MESSAGES: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (
        Ack, Error, RegisterTaskManager, RegistrationAck, RegistrationRefused, Heartbeat, HeartbeatAck,
        TaskStateUpdates, MetricsReport, AcknowledgeCheckpoint, DeclineCheckpoint, DeployTasks, CancelJob,
        AddSplits, ReleaseJob, TriggerCheckpoint, NotifyCheckpointComplete, QueryState, StateValue, SampleStacks,
        StackSamples,
    )
}
