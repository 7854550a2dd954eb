"""PipelineDef → JobGraph.

1. resolve node inputs (``union`` and bare ``key_by`` nodes are virtual: they shape the edges of
   their consumers and never become operators);
2. reject unknown inputs, cycles, sinks used as inputs, keyed operators without a key;
3. check import paths resolve (on the client, before submission);
4. pick each edge's partitioner: ``hash`` after a key, ``forward`` between equal parallelism,
   ``rebalance`` otherwise, or what the node's ``partition:`` forces;
5. chain: a node joins its input's chain when it has exactly one input, reached by a forward edge
   at equal parallelism, and that input feeds nothing else.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Union

from streamlet.api import registry
from streamlet.api.yaml.schema import BATCH, FunctionDef, KeyDef, PipelineDef, SinkDef, SourceDef, TransformDef
from streamlet.errors import PipelineDefinitionError
from streamlet.graph.job_graph import BROADCAST, FORWARD, HASH, REBALANCE, JobEdge, JobGraph, JobVertex
from streamlet.ids import stable_id
from streamlet.keys import DEFAULT_MAX_PARALLELISM
from streamlet.udf import resolve_path, search_path

NodeDef = Union[SourceDef, TransformDef, SinkDef]
VIRTUAL = ("union", "key_by")
DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class _In:
    """A physical input of a physical node: upstream node id, optional key, forced partitioner."""

    node: str
    key: KeyDef | None
    partition: str | None


def _inputs_of(node: NodeDef) -> tuple[str, ...]:
    if isinstance(node, SourceDef):
        return ()
    if isinstance(node, SinkDef):
        return (node.input,)
    return node.inputs


def _check_function(fn: FunctionDef | None, where: str, paths: tuple[str, ...]) -> None:
    if fn is not None and fn.path is not None:
        with search_path(paths):
            resolve_path(fn.path, where)


def plan(pipeline: PipelineDef, default_parallelism: int = 1, max_parallelism: int | None = None,
         batch_size: int | None = None, parallelism_override: int | None = None) -> JobGraph:
    """Build the JobGraph of ``pipeline`` (see the module docstring for the steps).

    ``parallelism_override`` (``--parallelism``) replaces the pipeline's default parallelism;
    nodes that set their own keep it.
    """
    f = pipeline.source_file
    nodes: dict[str, NodeDef] = {}
    for n in (*pipeline.sources, *pipeline.transforms, *pipeline.sinks):
        if n.id in nodes:
            raise PipelineDefinitionError(f"duplicate id {n.id!r}; ids are unique across sources, transforms "
                                          "and sinks", n.where)
        nodes[n.id] = n
    sinks = {s.id for s in pipeline.sinks}
    for n in nodes.values():
        for inp in _inputs_of(n):
            key = "input" if not (isinstance(n, TransformDef) and n.op == "union") else "union"
            if inp not in nodes:
                close = difflib.get_close_matches(inp, [k for k in nodes if k not in sinks], n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PipelineDefinitionError(
                    f"unknown input {inp!r}; {hint}known ids: {', '.join(k for k in nodes if k not in sinks)}",
                    f"{n.where}.{key}")
            if inp in sinks:
                raise PipelineDefinitionError(f"{inp!r} is a sink; a sink has no output to read", f"{n.where}.{key}")
    order = _topological_order(nodes)

    paths = (pipeline.base_dir,)
    for n in nodes.values():
        if isinstance(n, TransformDef):
            _check_function(n.function, f"{n.where}.{n.op}", paths)
            if n.key is not None:
                _check_function(n.key.function, f"{n.where}.key_by", paths)
            if n.op in VIRTUAL and n.parallelism is not None:
                raise PipelineDefinitionError(
                    f"a {n.op} node is not an operator; set parallelism on the node that reads it",
                    f"{n.where}.parallelism")

    default_p = parallelism_override or pipeline.parallelism or default_parallelism
    max_p = pipeline.max_parallelism or max_parallelism or DEFAULT_MAX_PARALLELISM
    par: dict[str, int] = {}
    for nid in order:
        n = nodes[nid]
        if isinstance(n, TransformDef) and n.op in VIRTUAL:
            continue
        p = n.parallelism or default_p
        if p > max_p:
            raise PipelineDefinitionError(f"parallelism {p} exceeds max_parallelism {max_p}; raise max_parallelism",
                                          f"{n.where}.parallelism")
        par[nid] = p

    if pipeline.mode == BATCH:
        for s in pipeline.sources:
            if not registry.source_class(s.type, s.where).is_bounded(s.params):
                raise PipelineDefinitionError(
                    "mode: batch needs every source bounded; give this source an end "
                    "(datagen: rows, nexmark: events) or use mode: streaming", s.where)

    def physical_inputs(n: NodeDef) -> list[_In]:
        out: list[_In] = []
        for inp in _inputs_of(n):
            up = nodes[inp]
            if isinstance(up, TransformDef) and up.op == "union":
                out.extend(physical_inputs(up))
            elif isinstance(up, TransformDef) and up.op == "key_by":
                out.extend(_In(i.node, up.key, i.partition) for i in physical_inputs(up))
            else:
                out.append(_In(inp, None, None))
        return out

    phys: dict[str, list[_In]] = {}
    keys: dict[str, KeyDef] = {}
    for nid in order:
        n = nodes[nid]
        if isinstance(n, TransformDef) and n.op in VIRTUAL:
            continue
        ins = physical_inputs(n)
        if isinstance(n, TransformDef) and n.op in ("aggregate", "reduce"):
            key = n.key or (ins[0].key if ins and all(i.key == ins[0].key for i in ins) else None)
            if key is None:
                raise PipelineDefinitionError(
                    f"{n.op} needs a key: add key_by: FIELD to this node or read a key_by node",
                    f"{n.where}.{n.op}")
            ins = [_In(i.node, key, i.partition) for i in ins]
            keys[nid] = key
        phys[nid] = ins

    consumers: dict[str, int] = {nid: 0 for nid in phys}
    for ins in phys.values():
        for i in ins:
            consumers[i.node] += 1

    def partitioner(nid: str, i: _In) -> str:
        n = nodes[nid]
        forced = getattr(n, "partition", None)
        if i.key is not None:
            if forced not in (None, HASH):
                raise PipelineDefinitionError(f"a keyed input is hash-partitioned; remove partition: {forced}",
                                              f"{n.where}.partition")
            return HASH
        if forced == HASH:
            raise PipelineDefinitionError("partition: hash needs a key; use key_by instead", f"{n.where}.partition")
        if forced == FORWARD and par[i.node] != par[nid]:
            raise PipelineDefinitionError(
                f"partition: forward needs equal parallelism ({par[i.node]} upstream, {par[nid]} here)",
                f"{n.where}.partition")
        if forced in (REBALANCE, BROADCAST, FORWARD):
            return forced
        return FORWARD if par[i.node] == par[nid] else REBALANCE

    chain_of: dict[str, str] = {}
    chains: dict[str, list[str]] = {}
    for nid in order:
        if nid not in phys:
            continue
        ins = phys[nid]
        if (len(ins) == 1 and partitioner(nid, ins[0]) == FORWARD and consumers[ins[0].node] == 1
                and par[ins[0].node] == par[nid]):
            head = chain_of[ins[0].node]
            chains[head].append(nid)
            chain_of[nid] = head
        else:
            chain_of[nid] = nid
            chains[nid] = [nid]

    vid = {head: stable_id(pipeline.name, head) for head in chains}
    vertices = []
    for head, members in chains.items():
        ops = tuple(_op_spec(nodes[m], pipeline.mode, keys.get(m)) for m in members)
        vertices.append(JobVertex(vid[head], " -> ".join(members), par[head], ops))
    edges = []
    for nid, ins in phys.items():
        if chain_of[nid] != nid:
            continue
        for i in ins:
            edges.append(JobEdge(vid[chain_of[i.node]], vid[nid], partitioner(nid, i),
                                 i.key.to_spec() if i.key is not None else None))
    return JobGraph(name=pipeline.name, vertices=tuple(vertices), edges=tuple(edges), mode=pipeline.mode,
                    max_parallelism=max_p, batch_size=pipeline.batch_size or batch_size or DEFAULT_BATCH_SIZE,
                    base_dir=pipeline.base_dir, sys_path=paths)


def _op_spec(n: NodeDef, mode: str, key: KeyDef | None) -> dict[str, Any]:
    if isinstance(n, SourceDef):
        return {"kind": "source", "id": n.id, "type": n.type, "params": dict(n.params)}
    if isinstance(n, SinkDef):
        return {"kind": "sink", "id": n.id, "type": n.type, "params": dict(n.params)}
    spec: dict[str, Any] = {"kind": n.op, "id": n.id}
    if n.function is not None:
        spec["expr"] = n.function.expr
        spec["path"] = n.function.path
    if n.op in ("aggregate", "reduce"):
        assert key is not None
        spec["key"] = key.to_spec()
        spec["mode"] = mode
    if n.op == "aggregate":
        spec["aggregates"] = [[a.name, a.func, a.field] for a in n.aggregates]
    return spec


def _topological_order(nodes: dict[str, NodeDef]) -> list[str]:
    """Node ids, inputs first; raises naming the cycle."""
    state: dict[str, int] = {}
    order: list[str] = []
    stack: list[str] = []

    def visit(nid: str) -> None:
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            # the stack follows inputs; report the cycle in the direction data flows, at the
            # input key that closes it (the node on top of the stack reads ``nid``)
            cycle = stack[stack.index(nid):] + [nid]
            closing = nodes[stack[-1]]
            key = "union" if isinstance(closing, TransformDef) and closing.op == "union" else "input"
            raise PipelineDefinitionError(
                f"cycle {' -> '.join(reversed(cycle))}; a pipeline must be acyclic, remove one of these inputs",
                f"{closing.where}.{key}")
        state[nid] = 1
        stack.append(nid)
        for inp in _inputs_of(nodes[nid]):
            visit(inp)
        stack.pop()
        state[nid] = 2
        order.append(nid)

    for nid in nodes:
        visit(nid)
    return order
