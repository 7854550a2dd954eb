"""What each subtask of a job restores from a completed checkpoint or savepoint, also at another
parallelism (Flink's StateAssignmentOperation).

Old vertices are matched to the new job's vertices by their operators (node ids), part by part,
so a changed parallelism (which may change chaining) keeps the state of every operator: an old
vertex's keyed state, operator state and source splits go to the new vertex that holds its first
(head) operator, its sink's state and committables to the new vertex that holds its last
operator.  For a matched part:

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


def _head_state(v: dict[str, Any]) -> bool:
    return any(st.get("keyed") or st.get("operators") or st.get("splits") for st in v.get("subtasks", {}).values())


def _sink_state(v: dict[str, Any]) -> bool:
    return any(st.get("committables") or st.get("sink") is not None for st in v.get("subtasks", {}).values())


def match_vertices(checkpoint: CompletedCheckpoint, graph: JobGraph,
                   allow_non_restored_state: bool) -> dict[str, list[tuple[dict[str, Any], frozenset[str]]]]:
    """New vertex id -> the old vertices (metadata entries) it restores, each with the parts it
    takes (``head``: keyed and operator state, splits; ``sink``: sink state and committables);
    raises PipelineDefinitionError for a checkpoint that does not fit the job."""
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
    parts: dict[str, dict[str, set[str]]] = {v.id: {} for v in graph.vertices}
    olds: dict[str, dict[str, Any]] = {}
    dropped = []
    for old_id, old in meta["vertices"].items():
        ops = old.get("operators") or []
        if not ops:
            continue
        olds[old_id] = old
        for part, op, has in (("head", ops[0], _head_state(old)), ("sink", ops[-1], _sink_state(old))):
            target = owner.get(op)
            if target is None:
                if has:
                    dropped.append(f"{op!r} (of {old.get('name', old_id)})")
                continue
            if part == "head" and any(st.get("splits") for st in old.get("subtasks", {}).values()) \
                    and not graph.vertex(target).is_source:
                raise PipelineDefinitionError(f"the savepoint's source {op!r} is not a source in this job")
            parts[target].setdefault(old_id, set()).add(part)
    if dropped and not allow_non_restored_state:
        raise PipelineDefinitionError(
            f"the savepoint at {checkpoint.location} holds state of operators this job does not have: "
            f"{', '.join(dropped)}; restore with --allow-non-restored-state (allowNonRestoredState) to drop it")
    return {vid: [(olds[o], frozenset(p)) for o, p in by.items()] for vid, by in parts.items()}


def subtask_restore(checkpoint: CompletedCheckpoint, olds: list[tuple[dict[str, Any], frozenset[str]]],
                    subtask: int, parallelism: int, external: bool) -> dict[str, Any] | None:
    """The ``restore`` of one new subtask's deployment descriptor (None: nothing to restore)."""
    if not olds:
        return None
    keyed: list[Any] = []
    operators: dict[str, Any] = {}
    sinks: list[Any] = []
    committables: list[Any] = []
    sink_olds = [old for old, p in olds if "sink" in p]
    same = len(sink_olds) == 1 and int(sink_olds[0].get("parallelism", 0)) == parallelism
    for old, p in olds:
        for idx, st in sorted(old.get("subtasks", {}).items(), key=lambda kv: int(kv[0])):
            j = int(idx)
            if "head" in p:
                if st.get("keyed"):
                    keyed.append(st["keyed"])
                if j == subtask:
                    operators.update(st.get("operators") or {})
            if "sink" in p and j % parallelism == subtask:
                if st.get("sink") is not None:
                    sinks.append(st["sink"])
                committables.extend(st.get("committables") or [])
    sink: Any = (sinks[0] if sinks else None) if same else (sinks if sink_olds else None)
    return {"storage": checkpoint.metadata["storage"], "keyed": keyed, "operators": operators, "sink": sink,
            "committables": committables, "external": external, "checkpoint_id": checkpoint.checkpoint_id}


def split_states(olds: list[tuple[dict[str, Any], frozenset[str]]]) -> list[dict[str, Any]]:
    """The split states of every old subtask of the matched source vertices, in subtask order."""
    out: list[dict[str, Any]] = []
    for old, parts in olds:
        if "head" not in parts:
            continue
        for _, st in sorted(old.get("subtasks", {}).items(), key=lambda kv: int(kv[0])):
            out.extend(st.get("splits") or [])
    return out
