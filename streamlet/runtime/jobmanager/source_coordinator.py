"""SourceCoordinator: the JobMaster's side of one source vertex (Flink's SourceCoordinator).

It enumerates the source's splits (off the event loop: enumeration may read files or ask a
broker) and assigns them to the vertex's subtasks, split ``i`` to subtask ``i % parallelism``.
Because the assignment lives here, a checkpoint can record it and a restore, also at another
parallelism, can hand the restored split states to the new subtasks (:meth:`restore`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamlet.api.registry import source_class
from streamlet.errors import PipelineDefinitionError
from streamlet.graph.job_graph import JobGraph, JobVertex
from streamlet.graph.operators import SourceSpec


class SourceCoordinator:
    """Splits of one source vertex and which subtask reads each (see the module docstring)."""

    def __init__(self, vertex: JobVertex) -> None:
        spec = vertex.operators[0]
        assert isinstance(spec, SourceSpec)
        self.vertex = vertex
        self.spec = spec
        #: subtask index -> its splits (fresh splits or restored split states)
        self.assignment: list[list[dict[str, Any]]] = [[] for _ in range(vertex.parallelism)]

    async def start(self) -> None:
        """Enumerate the splits (in a thread) and assign them; raises PipelineDefinitionError."""
        self._assign(await asyncio.to_thread(self.enumerate))

    def enumerate(self) -> list[dict[str, Any]]:
        """The source's splits (blocking: it may read files or ask a broker)."""
        try:
            return list(source_class(self.spec.type).enumerate_splits(self.spec.params, self.vertex.parallelism))
        except (OSError, ValueError) as exc:
            msg = (f"source {self.spec.id!r}: cannot enumerate its splits: {type(exc).__name__}: {exc}; check "
                   "that its inputs exist and are readable")
            raise PipelineDefinitionError(msg) from None

    def restore(self, split_states: list[dict[str, Any]]) -> None:
        """Hand restored split states (of every old subtask) to this vertex's subtasks."""
        self._assign(list(split_states))

    def _assign(self, splits: list[dict[str, Any]]) -> None:
        p = self.vertex.parallelism
        self.assignment = [[] for _ in range(p)]
        for i, split in enumerate(splits):
            self.assignment[i % p].append(split)

    def splits_for(self, subtask_index: int) -> list[dict[str, Any]]:
        return list(self.assignment[subtask_index])

    def snapshot(self) -> list[list[dict[str, Any]]]:
        """The current assignment (JSON), e.g. for the checkpoint's metadata."""
        return [list(a) for a in self.assignment]


def assign_splits(graph: JobGraph) -> dict[str, list[list[dict[str, Any]]]]:
    """Vertex id -> the splits of each subtask, for every source of ``graph`` (blocking)."""
    out = {}
    for v in graph.vertices:
        if v.is_source:
            c = SourceCoordinator(v)
            c._assign(c.enumerate())
            out[v.id] = c.assignment
    return out
