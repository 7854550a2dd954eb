"""ExecutionGraph expansion: vertices into subtasks, edges into channels, and the task
deployment descriptors a TaskManager needs to run one subtask.

Pure data.  A forward edge connects subtask ``i`` to subtask ``i``; every other edge connects
every upstream subtask to every downstream subtask.  Channel ids are
``"<edge index>.<upstream subtask>.<downstream subtask>"``, unique within a job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from streamlet.graph.job_graph import FORWARD, JobEdge, JobGraph
from streamlet.graph.operators import KeySpec, OpSpec


@dataclass(frozen=True)
class InputChannelDesc:
    """One channel a subtask reads; ``input_index`` is the head operator's input it feeds (0 or 1)."""

    channel_id: str
    input_index: int
    producer_vertex: str
    producer_subtask: int


@dataclass(frozen=True)
class OutputDesc:
    """One output edge of a subtask: its partitioner and the channel to each target subtask."""

    edge_index: int
    target_vertex: str
    partitioner: str
    key: KeySpec | None
    key_node: str
    channel_ids: tuple[str, ...]
    target_subtasks: tuple[int, ...]
    #: the side output this edge carries (None: the main output)
    side_output: str | None = None
    #: the target's consumers of this node's output (copies are made when several read it)
    shared: bool = False
    #: the only record fields the target's head operator reads (``OpSpec.fields_read``): a remote
    #: channel may carry just these; None: whole records
    fields: tuple[str, ...] | None = None
    #: ``shared``, but the target reads the records in place and copies what it emits
    #: (:func:`reads_in_place`): this edge takes them uncopied
    in_place: bool = False


@dataclass(frozen=True)
class TaskDeploymentDescriptor:
    """Everything one subtask needs: its chain, its splits, its input and output channels."""

    job_id: str
    job_name: str
    vertex_id: str
    vertex_name: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    mode: str
    batch_size: int
    operators: tuple[OpSpec, ...]
    splits: tuple[Any, ...]
    inputs: tuple[InputChannelDesc, ...]
    outputs: tuple[OutputDesc, ...]
    sys_path: tuple[str, ...] = ()
    #: the keyed-state backend kind (``state.backend.type`` or the pipeline's ``state:``)
    state_backend: str = "heap"
    checkpointing_mode: str = "exactly_once"
    #: URI of the job's checkpoint storage (``<checkpoint dir>/<job id>``); None: no checkpoints
    checkpoint_storage: str | None = None
    #: what this subtask restores: ``{storage, keyed: [handles], operators, sink, committables,
    #: external}`` (see runtime/jobmanager/checkpoint/restore.py); None: a fresh start
    restore: dict[str, Any] | None = None
    #: an input edge hands this subtask records other consumers read too (:func:`reads_in_place`):
    #: every record it emits crosses its channels as a copy
    copy_outputs: bool = False

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["operators"] = [op.to_json() for op in self.operators]
        for o, desc in zip(out["outputs"], self.outputs):
            o["key"] = desc.key.to_json() if desc.key is not None else None
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TaskDeploymentDescriptor:
        return cls(**{**d,
                      "operators": tuple(OpSpec.from_json(op) for op in d["operators"]),
                      "splits": tuple(d["splits"]),
                      "inputs": tuple(InputChannelDesc(**i) for i in d["inputs"]),
                      "outputs": tuple(OutputDesc(**{**o, "channel_ids": tuple(o["channel_ids"]),
                                                      "target_subtasks": tuple(o["target_subtasks"]),
                                                      "fields": tuple(o["fields"]) if o.get("fields") else None,
                                                      "key": KeySpec.from_json(o["key"]) if o["key"] else None})
                                       for o in d["outputs"]),
                      "sys_path": tuple(d.get("sys_path", ()))})


def channel_id(edge_index: int, src: int, dst: int) -> str:
    return f"{edge_index}.{src}.{dst}"


def reads_in_place(graph: JobGraph, edge: JobEdge) -> bool:
    """Whether ``edge``, one of several reading the same output of a node, may hand its target the
    records the others get, uncopied (each reader otherwise gets a copy: a JSON round trip).

    The target reads them in place when every operator of its chain provably leaves its input
    unchanged and keeps none of it (``OpSpec.leaves_input``: expressions that call no method that
    changes a dict, list or set) and it has no chained sink; it then copies what it emits, so no
    record that leaves it is one another reader holds.  The source node's chain must emit only
    JSON values (``JSON_OUTPUT``: nothing copies them for a JSON check anyway) and hold no sink
    that could change them.  For a consumer that splits a stream with filters, this copies the
    records each branch keeps instead of every record for every branch.
    """
    readers = sum(1 for e in graph.edges if e.source == edge.source and e.side_output == edge.side_output)
    if readers < 2:
        return False
    up, down = graph.vertex(edge.source), graph.vertex(edge.target)
    # (a sink's JSON_OUTPUT is False: a chain holding one never hands its records over uncopied)
    return all(op.JSON_OUTPUT for op in up.operators) and all(op.leaves_input() for op in down.operators)


def expand(graph: JobGraph, job_id: str, splits: dict[str, list[list[Any]]],
           state_backend: str = "heap") -> list[TaskDeploymentDescriptor]:
    """One descriptor per subtask, vertices in topological order.

    ``splits[vertex_id][i]`` lists the splits of source subtask ``i``; ``state_backend`` is the
    backend of a job that names none.
    """
    out: list[TaskDeploymentDescriptor] = []
    edges = list(graph.edges)
    in_place = [reads_in_place(graph, e) for e in edges]
    for v in graph.vertices:
        in_edges = [(i, e) for i, e in enumerate(edges) if e.target == v.id]
        out_edges = [(i, e) for i, e in enumerate(edges) if e.source == v.id]
        for sub in range(v.parallelism):
            inputs: list[InputChannelDesc] = []
            for ei, e in in_edges:
                up = graph.vertex(e.source)
                producers = [sub] if e.partitioner == FORWARD else range(up.parallelism)
                inputs.extend(InputChannelDesc(channel_id(ei, p, sub), e.input, up.id, p) for p in producers)
            outputs: list[OutputDesc] = []
            readers: dict[str | None, int] = {}
            for _, e in out_edges:
                readers[e.side_output] = readers.get(e.side_output, 0) + 1
            for ei, e in out_edges:
                down = graph.vertex(e.target)
                targets = (sub,) if e.partitioner == FORWARD else tuple(range(down.parallelism))
                outputs.append(OutputDesc(ei, down.id, e.partitioner, e.key, down.operators[0].id,
                                          tuple(channel_id(ei, sub, t) for t in targets), targets, e.side_output,
                                          readers[e.side_output] > 1, down.operators[0].fields_read(e.input),
                                          in_place[ei]))
            out.append(TaskDeploymentDescriptor(
                job_id=job_id, job_name=graph.name, vertex_id=v.id, vertex_name=v.name, subtask_index=sub,
                parallelism=v.parallelism, max_parallelism=graph.max_parallelism, mode=graph.mode,
                batch_size=graph.batch_size, operators=v.operators,
                splits=tuple(splits.get(v.id, [[]] * v.parallelism)[sub]) if v.is_source else (),
                inputs=tuple(inputs), outputs=tuple(outputs), sys_path=graph.sys_path,
                state_backend=graph.state_backend or state_backend,
                copy_outputs=any(in_place[ei] for ei, _ in in_edges)))
    return out
