"""SourceCoordinator: the JobMaster's side of one source vertex (Flink's SourceCoordinator).

It enumerates the source's splits (off the event loop: enumeration may read files or ask a
broker) and assigns them to the vertex's subtasks, split ``i`` to subtask ``i % parallelism``.
Because the assignment lives here, a checkpoint can record it and a restore, also at another
parallelism, can hand the restored split states to the new subtasks (:meth:`restore`).

**Discovery** (Flink's continuous split enumeration, e.g. ``FileSource.monitorContinuously``): a
source class with ``discovery_interval(params)`` (seconds, or None) and
``discover_splits(params, parallelism, known)`` is asked, every interval, for the splits it has
that are not among ``known`` (every split assigned so far, or restored).  The JobMaster sends
them to running subtasks (``AddSplits``), round-robin.  What was already found needs no state of
its own: readers keep every split they were given in their snapshots (finished ones marked
done), so after a restore ``known`` is the restored split states and nothing is found twice.  A
split assigned after a checkpoint's barrier passed its reader is not in that checkpoint, and a
restore from it finds the split again: it is read from its start, exactly as its records were
not in the checkpoint.
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
        #: the subtask index (mod parallelism) that gets the next discovered split
        self._next = 0

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

    @property
    def discovery_interval(self) -> float | None:
        """Seconds between two discoveries of new splits, or None when the source finds none."""
        fn = getattr(source_class(self.spec.type), "discovery_interval", None)
        return fn(self.spec.params) if fn is not None else None

    async def discover(self) -> dict[int, list[dict[str, Any]]]:
        """Find new splits (in a thread: it may list directories) and assign them, round-robin
        from where the assignment stands; returns subtask index -> its new splits (may be empty).

        Raises OSError when the source cannot be listed (the caller tries again later).
        """
        known = [s for a in self.assignment for s in a]
        cls = source_class(self.spec.type)
        fresh = await asyncio.to_thread(cls.discover_splits, self.spec.params, self.vertex.parallelism, known)
        out: dict[int, list[dict[str, Any]]] = {}
        p = self.vertex.parallelism
        for split in fresh:
            index = self._next % p
            self._next += 1
            self.assignment[index].append(split)
            out.setdefault(index, []).append(split)
        return out

    def restore(self, split_states: list[dict[str, Any]]) -> None:
        """Hand restored split states (of every old subtask) to this vertex's subtasks."""
        self._assign(list(split_states))

    def _assign(self, splits: list[dict[str, Any]]) -> None:
        p = self.vertex.parallelism
        self.assignment = [[] for _ in range(p)]
        for i, split in enumerate(splits):
            self.assignment[i % p].append(split)
        self._next = len(splits)

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
