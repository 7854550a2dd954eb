"""JobGraph: vertices (operator chains) joined by edges that carry a partitioner.

Pure data, JSON round-trippable (it travels from the client to the JobManager and, as task
descriptors, to TaskManagers).  An operator in a chain is a typed spec
(:mod:`streamlet.graph.operators`); the runtime builds operators from specs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamlet.graph.operators import KeySpec, OpSpec, SourceSpec

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
    operators: tuple[OpSpec, ...]

    @property
    def is_source(self) -> bool:
        return isinstance(self.operators[0], SourceSpec)

    @property
    def node_ids(self) -> list[str]:
        return [op.id for op in self.operators]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "parallelism": self.parallelism,
                "operators": [op.to_json() for op in self.operators]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobVertex:
        return cls(data["id"], data["name"], data["parallelism"],
                   tuple(OpSpec.from_json(op) for op in data["operators"]))


@dataclass(frozen=True)
class JobEdge:
    """Data flowing from every subtask of ``source`` to ``target`` through ``partitioner``.

    ``key`` is the key spec used by the ``hash`` partitioner.
    """

    source: str
    target: str
    partitioner: str
    key: KeySpec | None = None
    #: the side output (tag) of the source vertex this edge carries; None: its main output
    side_output: str | None = None
    #: which input of the target's head operator this edge feeds (1: ``process_right`` of a
    #: two-input operator such as a join)
    input: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "partitioner": self.partitioner,
                "key": self.key.to_json() if self.key is not None else None,
                "side_output": self.side_output, "input": self.input}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobEdge:
        key = data.get("key")
        return cls(data["source"], data["target"], data["partitioner"],
                   KeySpec.from_json(key) if key is not None else None, data.get("side_output"),
                   int(data.get("input", 0)))


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
    #: the keyed-state backend the job asks for; None: the cluster's ``state.backend.type``
    state_backend: str | None = None
    #: the pipeline's ``checkpointing:`` / ``restart:`` maps (streamlet.graph.settings; None: the
    #: cluster's ``execution.checkpointing.*`` / ``restart-strategy.*`` keys)
    checkpointing: dict[str, Any] | None = None
    restart: dict[str, Any] | None = None

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
        out = asdict(self)
        out["vertices"] = [v.to_json() for v in self.vertices]
        out["edges"] = [e.to_json() for e in self.edges]
        out["sys_path"] = list(self.sys_path)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobGraph:
        """The graph a ``to_json`` dict encodes; raises KeyError/TypeError/ValueError when malformed."""
        return cls(
            name=data["name"],
            vertices=tuple(JobVertex.from_json(v) for v in data["vertices"]),
            edges=tuple(JobEdge.from_json(e) for e in data["edges"]),
            mode=data["mode"], max_parallelism=data["max_parallelism"], batch_size=data["batch_size"],
            base_dir=data["base_dir"], sys_path=tuple(data.get("sys_path", ())),
            state_backend=data.get("state_backend"),
            checkpointing=data.get("checkpointing"), restart=data.get("restart"),
        )
