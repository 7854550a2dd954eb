"""Scheduling: subtasks into slots (slot sharing) and slots into deployments.

Pure functions over the ExecutionGraph, driven by the JobMaster:

1. :func:`create_executions` expands the JobGraph (one :class:`Execution` per subtask, state
   CREATED, with its TaskDeploymentDescriptor);
2. :func:`slots_needed` is the job's largest parallelism (slot sharing: slot ``i`` runs subtask
   ``i`` of every vertex that has one, as Flink's default slot sharing group does);
3. :func:`assign_slots` places each execution in its slot;
4. :func:`build_deployments` groups executions by TaskManager into one ``DeployTasks`` each,
   carrying the location (TaskManager and data address) of every subtask, so each side of a
   channel knows whether its peer is local or remote.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from streamlet.graph.execution_graph import TaskDeploymentDescriptor, expand
from streamlet.graph.job_graph import JobGraph
from streamlet.ids import new_id
from streamlet.rpc.messages import DeployTasks
from streamlet.runtime.jobmanager.job_status import ExecutionState
from streamlet.runtime.jobmanager.resource_manager import SlotAssignment


@dataclass
class Execution:
    """One subtask attempt as the JobMaster tracks it."""

    tdd: TaskDeploymentDescriptor
    attempt_id: str
    attempt: int = 0
    state: ExecutionState = ExecutionState.CREATED
    slot: SlotAssignment | None = None
    #: state name -> epoch ms when the execution entered it
    timestamps: dict[str, int] = field(default_factory=dict)
    failure: str | None = None
    #: latest metrics reported by its TaskManager (see rpc.messages.MetricsReport)
    metrics: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.tdd.vertex_id, self.tdd.subtask_index)

    @property
    def name(self) -> str:
        """Flink's display name ``vertex (i/p)``."""
        return f"{self.tdd.vertex_name} ({self.tdd.subtask_index + 1}/{self.tdd.parallelism})"


def create_executions(graph: JobGraph, job_id: str, splits: dict[str, list[list[Any]]],
                      state_backend: str = "heap") -> list[Execution]:
    """One CREATED execution per subtask, vertices in topological order."""
    return [Execution(tdd, new_id()) for tdd in expand(graph, job_id, splits, state_backend)]


def slots_needed(graph: JobGraph) -> int:
    """Slots a job needs with slot sharing: its largest vertex parallelism."""
    return graph.max_vertex_parallelism


def assign_slots(executions: list[Execution], slots: list[SlotAssignment]) -> None:
    """Put subtask ``i`` of every vertex into ``slots[i]``."""
    for ex in executions:
        ex.slot = slots[ex.tdd.subtask_index]


def build_deployments(job_id: str, job_name: str, executions: list[Execution],
                      files: dict[str, bytes]) -> dict[str, DeployTasks]:
    """TaskManager id -> the ``DeployTasks`` of the executions placed there."""
    locations: dict[str, list[str]] = {}
    addresses: dict[str, str] = {}
    for ex in executions:
        assert ex.slot is not None, "assign_slots first"
        locs = locations.setdefault(ex.tdd.vertex_id, [""] * ex.tdd.parallelism)
        locs[ex.tdd.subtask_index] = ex.slot.task_manager_id
        addresses[ex.slot.task_manager_id] = ex.slot.data_address
    encoded = {path: base64.b64encode(data).decode("ascii") for path, data in files.items()}
    per_tm: dict[str, list[dict[str, Any]]] = {}
    for ex in executions:
        assert ex.slot is not None
        per_tm.setdefault(ex.slot.task_manager_id, []).append(
            {"slot": ex.slot.slot_index, "attempt_id": ex.attempt_id, "tdd": ex.tdd.to_json()})
    return {tm: DeployTasks(job_id, job_name, tasks, locations, addresses, encoded) for tm, tasks in per_tm.items()}
