"""JobGraph: vertices (operator chains) joined by edges that carry a partitioner.

Pure data, JSON round-trippable (it travels from the client to the JobManager and, as task
descriptors, to TaskManagers).  An operator in a chain is a plain JSON spec
``{"kind": "map", "id": "node-id", ...}``; the runtime builds operators from specs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

FORWARD = "forward"
HASH = "hash"
REBALANCE = "rebalance"
BROADCAST = "broadcast"


@dataclass(frozen=True)
class JobVertex:
    """One operator chain, run as ``parallelism`` subtasks."""

    id: str
    name: str
    parallelism: int
    operators: tuple[dict[str, Any], ...]

    @property
    def is_source(self) -> bool:
        return self.operators[0]["kind"] == "source"

    @property
    def node_ids(self) -> list[str]:
        return [op["id"] for op in self.operators]


@dataclass(frozen=True)
class JobEdge:
    """Data flowing from every subtask of ``source`` to ``target`` through ``partitioner``.

    ``key`` is the key spec used by the ``hash`` partitioner (``{"fields": [...]}`` or
    ``{"expr": ..., "path": ...}``).
    """

    source: str
    target: str
    partitioner: str
    key: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobGraph:
    """A whole job, vertices in topological order."""

    name: str
    vertices: tuple[JobVertex, ...]
    edges: tuple[JobEdge, ...]
    mode: str = "streaming"
    max_parallelism: int = 128
    batch_size: int = 1024
    base_dir: str = "."
    sys_path: tuple[str, ...] = field(default_factory=tuple)

    def vertex(self, vertex_id: str) -> JobVertex:
        for v in self.vertices:
            if v.id == vertex_id:
                return v
        raise KeyError(vertex_id)

    def inputs_of(self, vertex_id: str) -> list[JobEdge]:
        return [e for e in self.edges if e.target == vertex_id]

    def outputs_of(self, vertex_id: str) -> list[JobEdge]:
        return [e for e in self.edges if e.source == vertex_id]

    @property
    def max_vertex_parallelism(self) -> int:
        """Slots the job needs with slot sharing."""
        return max(v.parallelism for v in self.vertices)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobGraph:
        return cls(
            name=data["name"],
            vertices=tuple(JobVertex(v["id"], v["name"], v["parallelism"], tuple(v["operators"]))
                           for v in data["vertices"]),
            edges=tuple(JobEdge(**e) for e in data["edges"]),
            mode=data["mode"], max_parallelism=data["max_parallelism"], batch_size=data["batch_size"],
            base_dir=data["base_dir"], sys_path=tuple(data.get("sys_path", ())),
        )
