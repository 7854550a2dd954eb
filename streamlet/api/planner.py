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
from typing import Any, Iterator, Union

import orjson

from streamlet.api import registry
from streamlet.api.limits import DEFAULT_LIMITS, PipelineLimits
from streamlet.api.yaml.schema import BATCH, FunctionDef, KeyDef, PipelineDef, SinkDef, SourceDef, TransformDef
from streamlet.errors import PipelineDefinitionError
from streamlet.graph.job_graph import BROADCAST, FORWARD, HASH, REBALANCE, JobEdge, JobGraph, JobVertex
from streamlet.graph.operators import SPECS, AggregateSpec, KeySpec, OpSpec, ReduceSpec, SinkSpec, SourceSpec
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
         batch_size: int | None = None, parallelism_override: int | None = None,
         limits: PipelineLimits = DEFAULT_LIMITS) -> JobGraph:
    """Build the JobGraph of ``pipeline`` (see the module docstring for the steps).

    ``parallelism_override`` (``--parallelism``) replaces the pipeline's default parallelism;
    nodes that set their own keep it.  ``limits`` bound the node count, ``max_parallelism``,
    and the job's subtasks and channels (checked here, before anything is expanded).
    """
    f = pipeline.source_file
    count = len(pipeline.sources) + len(pipeline.transforms) + len(pipeline.sinks)
    if count > limits.max_nodes:
        raise limits.exceeded("max_nodes", f"the pipeline has {count} nodes", f)
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
    if max_p > limits.max_parallelism_limit:
        where = f"{f}: max_parallelism" if pipeline.max_parallelism else f
        raise limits.exceeded("max_parallelism_limit", f"max_parallelism is {max_p}", where, status=400)
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

    # the physical inputs of every node, inputs first (a union or key_by node stands for its
    # own inputs); memoised, and bounded: unions of unions would otherwise grow exponentially
    virtual_ins: dict[str, list[_In]] = {}

    def physical_inputs(n: NodeDef) -> list[_In]:
        out: list[_In] = []
        for inp in _inputs_of(n):
            up = nodes[inp]
            if isinstance(up, TransformDef) and up.op == "union":
                out.extend(virtual_ins[inp])
            elif isinstance(up, TransformDef) and up.op == "key_by":
                out.extend(_In(i.node, up.key, i.partition) for i in virtual_ins[inp])
            else:
                out.append(_In(inp, None, None))
            if len(out) > limits.max_channels:
                raise limits.exceeded("max_channels", f"node {n.id!r} reads more than {limits.max_channels} "
                                      "inputs through its unions", n.where, status=400)
        return out

    for nid in order:
        n = nodes[nid]
        if isinstance(n, TransformDef) and n.op in VIRTUAL:
            virtual_ins[nid] = physical_inputs(n)

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

    _check_size(pipeline, nodes, chains, chain_of, phys, par, keys, partitioner, limits)
    vid = {head: stable_id(pipeline.name, head) for head in chains}
    vertices = []
    for head, members in chains.items():
        ops = tuple(_op_spec(nodes[m], keys.get(m)) for m in members)
        vertices.append(JobVertex(vid[head], " -> ".join(members), par[head], ops))
    edges = []
    for nid, ins in phys.items():
        if chain_of[nid] != nid:
            continue
        for i in ins:
            edges.append(JobEdge(vid[chain_of[i.node]], vid[nid], partitioner(nid, i),
                                 _key_spec(i.key) if i.key is not None else None))
    return JobGraph(name=pipeline.name, vertices=tuple(vertices), edges=tuple(edges), mode=pipeline.mode,
                    max_parallelism=max_p, batch_size=pipeline.batch_size or batch_size or DEFAULT_BATCH_SIZE,
                    base_dir=pipeline.base_dir, sys_path=paths, state_backend=pipeline.state_backend)


def _check_size(pipeline: PipelineDef, nodes: dict[str, NodeDef], chains: dict[str, list[str]],
                chain_of: dict[str, str], phys: dict[str, list[_In]], par: dict[str, int], keys: dict[str, KeyDef],
                partitioner: Any, limits: PipelineLimits) -> None:
    """Refuse a plan whose expansion (subtasks, channels) goes past the limits, before it is expanded."""
    subtasks = sum(par[head] for head in chains)
    if subtasks > limits.max_subtasks:
        raise limits.exceeded("max_subtasks", f"the job would run {subtasks} subtasks (the parallelism of "
                              "each vertex, summed)", pipeline.source_file, status=400)
    channels = 0
    for nid, ins in phys.items():
        if chain_of[nid] != nid:
            continue
        for i in ins:
            up, down = par[i.node], par[nid]
            channels += down if partitioner(nid, i) == FORWARD else up * down
    if channels > limits.max_channels:
        raise limits.exceeded("max_channels", f"the job would have {channels} channels between subtasks (an "
                              "all-to-all edge between parallelism p and q has p*q)", pipeline.source_file,
                              status=400)
    total = 0
    for head, members in chains.items():
        # what the chain's specs weigh as JSON, carried once per subtask (aliases expanded)
        size = 0
        for m in members:
            try:
                size += len(orjson.dumps(_op_spec(nodes[m], keys.get(m)).to_json()))
            except TypeError as exc:  # the Python API can pass any object as a connector key
                raise PipelineDefinitionError(f"node {m!r} has a value that is not JSON ({exc}); keys of a "
                                              "pipeline must be strings, numbers, lists and maps",
                                              nodes[m].where) from None
        total += size * par[head]
    if total > limits.max_deployment_bytes:
        raise limits.exceeded("max_deployment_bytes", f"the job's deployments would carry {total} bytes of operator "
                              "specs (each subtask gets its chain's specs; large inline lists add up)",
                              pipeline.source_file)


def _key_spec(key: KeyDef) -> KeySpec:
    if key.fields:
        return KeySpec(fields=tuple(key.fields))
    assert key.function is not None
    return KeySpec(expr=key.function.expr, path=key.function.path)


def _op_spec(n: NodeDef, key: KeyDef | None) -> OpSpec:
    if isinstance(n, SourceDef):
        return SourceSpec(n.id, n.type, dict(n.params))
    if isinstance(n, SinkDef):
        return SinkSpec(n.id, n.type, dict(n.params))
    expr = n.function.expr if n.function is not None else None
    path = n.function.path if n.function is not None else None
    if n.op == "aggregate":
        assert key is not None
        return AggregateSpec(n.id, _key_spec(key), tuple((a.name, a.func, a.field) for a in n.aggregates))
    if n.op == "reduce":
        assert key is not None
        return ReduceSpec(n.id, _key_spec(key), expr, path)
    cls = SPECS.get(n.op)
    if cls is None:
        raise PipelineDefinitionError(f"{n.op} is not implemented in this version", f"{n.where}.{n.op}")
    return cls(n.id, expr, path)  # type: ignore[call-arg]


def _topological_order(nodes: dict[str, NodeDef]) -> list[str]:
    """Node ids, inputs first; raises naming the cycle.

    Iterative depth-first search (a pipeline may be a chain of ``pipeline.max-nodes`` nodes,
    deeper than Python's recursion limit).
    """
    state: dict[str, int] = {}
    order: list[str] = []
    for root in nodes:
        if state.get(root) == 2:
            continue
        state[root] = 1
        stack: list[str] = [root]
        pending: list[Iterator[str]] = [iter(_inputs_of(nodes[root]))]
        while pending:
            inp = next(pending[-1], None)
            if inp is None:
                nid = stack.pop()
                pending.pop()
                state[nid] = 2
                order.append(nid)
                continue
            if state.get(inp) == 2:
                continue
            if state.get(inp) == 1:
                # the stack follows inputs; report the cycle in the direction data flows, at the
                # input key that closes it (the node on top of the stack reads ``inp``)
                cycle = stack[stack.index(inp):] + [inp]
                closing = nodes[stack[-1]]
                key = "union" if isinstance(closing, TransformDef) and closing.op == "union" else "input"
                raise PipelineDefinitionError(
                    f"cycle {' -> '.join(reversed(cycle))}; a pipeline must be acyclic, remove one of these inputs",
                    f"{closing.where}.{key}")
            state[inp] = 1
            stack.append(inp)
            pending.append(iter(_inputs_of(nodes[inp])))
    return order
