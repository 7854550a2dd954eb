"""What each subtask of a job restores from a completed checkpoint or savepoint, also at another
parallelism (Flink's StateAssignmentOperation).

Old vertices are matched to the new job's vertices by their operators (node ids): an old vertex
goes to the new vertex that holds its first operator, so a changed parallelism (which may
change chaining) keeps the state of every operator.  For a matched vertex:

* keyed state: every new subtask gets the handles of every old subtask; the backend reads only
  the key groups it owns (key groups move between subtasks; ``max_parallelism`` must not change);
* source splits: the split states of all old subtasks go to the vertex's SourceCoordinator,
  which spreads them over the new subtasks;
* sink state and committables: new subtask ``i`` gets those of the old subtasks ``j`` with
  ``j % p == i`` (committables are committed again, idempotently; a sink restored at another
  parallelism gets a list of states);
* other operator state: subtask ``i`` gets old subtask ``i``'s, when there is one.

An old vertex that holds state but matches no new vertex fails the restore, unless
``allow_non_restored_state`` is set (its state is then dropped, as in Flink).
"""

from __future__ import annotations

from typing import Any

from streamlet.errors import PipelineDefinitionError
from streamlet.graph.job_graph import JobGraph
from streamlet.runtime.jobmanager.checkpoint.metadata import CompletedCheckpoint


def _has_state(v: dict[str, Any]) -> bool:
    for st in v.get("subtasks", {}).values():
        if st.get("keyed") or st.get("operators") or st.get("splits") or st.get("committables") or st.get("sink"):
            return True
    return False


def match_vertices(checkpoint: CompletedCheckpoint, graph: JobGraph,
                   allow_non_restored_state: bool) -> dict[str, list[dict[str, Any]]]:
    """New vertex id -> the old vertices (metadata entries) it restores; raises
    PipelineDefinitionError for a checkpoint that does not fit the job."""
    meta = checkpoint.metadata
    if meta.get("max_parallelism") != graph.max_parallelism:
        raise PipelineDefinitionError(
            f"the savepoint at {checkpoint.location} has max_parallelism {meta.get('max_parallelism')}, the job "
            f"{graph.max_parallelism}: keyed state is split into max_parallelism key groups, so it must stay the same; "
            f"set max_parallelism: {meta.get('max_parallelism')} in the pipeline")
    owner: dict[str, str] = {}
    for v in graph.vertices:
        for op in v.operators:
            owner[op.id] = v.id
    out: dict[str, list[dict[str, Any]]] = {v.id: [] for v in graph.vertices}
    dropped = []
    for old_id, old in meta["vertices"].items():
        ops = old.get("operators") or []
        target = next((owner[o] for o in ops if o in owner), None)
        if target is None:
            if _has_state(old):
                dropped.append(f"{old.get('name', old_id)} (operators {', '.join(ops)})")
            continue
        new_v = graph.vertex(target)
        if any(old_sub.get("splits") for old_sub in old.get("subtasks", {}).values()) and not new_v.is_source:
            raise PipelineDefinitionError(f"the savepoint's source {ops[0]!r} is not a source in this job")
        out[target].append(old)
    if dropped and not allow_non_restored_state:
        raise PipelineDefinitionError(
            f"the savepoint at {checkpoint.location} holds state of operators this job does not have: "
            f"{'; '.join(dropped)}; restore with --allow-non-restored-state (allowNonRestoredState) to drop it")
    return out


def subtask_restore(checkpoint: CompletedCheckpoint, olds: list[dict[str, Any]], subtask: int, parallelism: int,
                    external: bool) -> dict[str, Any] | None:
    """The ``restore`` of one new subtask's deployment descriptor (None: nothing to restore)."""
    if not olds:
        return None
    keyed: list[Any] = []
    operators: dict[str, Any] = {}
    sinks: list[Any] = []
    committables: list[Any] = []
    same = len(olds) == 1 and int(olds[0].get("parallelism", 0)) == parallelism
    for old in olds:
        for idx, st in sorted(old.get("subtasks", {}).items(), key=lambda kv: int(kv[0])):
            j = int(idx)
            if st.get("keyed"):
                keyed.append(st["keyed"])
            if j == subtask:
                operators.update(st.get("operators") or {})
            if j % parallelism == subtask:
                if st.get("sink") is not None:
                    sinks.append(st["sink"])
                committables.extend(st.get("committables") or [])
    sink: Any = (sinks[0] if sinks else None) if same else sinks
    return {"storage": checkpoint.metadata["storage"], "keyed": keyed, "operators": operators, "sink": sink,
            "committables": committables, "external": external, "checkpoint_id": checkpoint.checkpoint_id}


def split_states(olds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The split states of every old subtask of the matched source vertices, in subtask order."""
    out: list[dict[str, Any]] = []
    for old in olds:
        for _, st in sorted(old.get("subtasks", {}).items(), key=lambda kv: int(kv[0])):
            out.extend(st.get("splits") or [])
    return out
