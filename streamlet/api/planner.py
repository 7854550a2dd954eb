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
from streamlet.graph.operators import (
    SPECS, AggregateSpec, IntervalJoinSpec, KeySpec, LookupJoinSpec, OpSpec, ProcessSpec, ReduceSpec,
    RegularJoinSpec, SinkSpec, SourceSpec, WindowJoinSpec, WindowSpec,
)
from streamlet.ids import stable_id
from streamlet.keys import DEFAULT_MAX_PARALLELISM
from streamlet.udf import resolve_path, search_path

NodeDef = Union[SourceDef, TransformDef, SinkDef]
#: nodes that never become operators: unions, bare key_by, and side outputs (``late_output:``)
VIRTUAL = ("union", "key_by", "side")
DEFAULT_BATCH_SIZE = 1024


@dataclass(frozen=True)
class _In:
    """A physical input of a physical node: upstream node id, optional key, forced partitioner."""

    node: str
    key: KeyDef | None
    partition: str | None
    #: the side output of ``node`` read here (None: its main output)
    tag: str | None = None
    #: which input of a two-input operator (a join) this is: 0 left, 1 right
    input: int = 0


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
    for t in pipeline.transforms:
        for tag in t.side_outputs:
            at = f"{t.where}.window.late_output" if t.window is not None else f"{t.where}.side_outputs"
            if tag in nodes:
                raise PipelineDefinitionError(f"side output {tag!r} has the name of another node; give it its own "
                                              "name (ids and side outputs are unique)", at)
            nodes[tag] = TransformDef(tag, "side", (t.id,), where=at)
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
                out.extend(_In(i.node, up.key, i.partition, i.tag) for i in virtual_ins[inp])
            elif isinstance(up, TransformDef) and up.op == "side":
                out.append(_In(up.inputs[0], None, None, inp))
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
        if isinstance(n, TransformDef) and n.op == "join" and n.join is not None and n.join.type != "lookup":
            j = n.join
            left = [_In(i.node, j.left_key, None, i.tag, 0) for i in _physical(nodes, virtual_ins, j.left)]
            right = [_In(i.node, j.right_key, None, i.tag, 1) for i in _physical(nodes, virtual_ins, j.right)]
            phys[nid] = left + right
            continue
        ins = physical_inputs(n)
        if isinstance(n, TransformDef) and n.op in ("aggregate", "reduce", "process"):
            key = n.key or (ins[0].key if ins and all(i.key == ins[0].key for i in ins) else None)
            if key is None and n.window is not None:
                # a non-keyed window sees every record: it runs as one subtask (Flink's windowAll)
                if n.parallelism is not None and n.parallelism > 1:
                    raise PipelineDefinitionError(
                        "a window without key_by runs as one subtask; remove parallelism or add key_by",
                        f"{n.where}.parallelism")
                par[nid] = 1
                phys[nid] = [_In(i.node, None, i.partition, i.tag) for i in ins]
                continue
            if key is None:
                raise PipelineDefinitionError(
                    f"{n.op} needs a key: add key_by: FIELD to this node or read a key_by node",
                    f"{n.where}.{n.op}")
            ins = [_In(i.node, key, i.partition, i.tag) for i in ins]
            keys[nid] = key
        phys[nid] = ins
    _check_event_time(nodes, order, phys)

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
        two_input = isinstance(nodes[nid], TransformDef) and nodes[nid].op == "join" and any(i.input for i in ins)
        if (len(ins) == 1 and not two_input and ins[0].tag is None and partitioner(nid, ins[0]) == FORWARD
                and consumers[ins[0].node] == 1 and par[ins[0].node] == par[nid]):
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
                                 _key_spec(i.key) if i.key is not None else None, side_output=i.tag,
                                 input=i.input))
    return JobGraph(name=pipeline.name, vertices=tuple(vertices), edges=tuple(edges), mode=pipeline.mode,
                    max_parallelism=max_p, batch_size=pipeline.batch_size or batch_size or DEFAULT_BATCH_SIZE,
                    base_dir=pipeline.base_dir, sys_path=paths, state_backend=pipeline.state_backend,
                    checkpointing=dict(pipeline.checkpointing) if pipeline.checkpointing is not None else None,
                    restart=dict(pipeline.restart) if pipeline.restart is not None else None)


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


def _join_spec(n: TransformDef) -> OpSpec:
    j = n.join
    assert j is not None
    if j.type == "lookup":
        assert j.key is not None and j.path is not None and j.lookup_key is not None
        return LookupJoinSpec(n.id, key=_key_spec(j.key), path=j.path, format=j.format, header=j.header,
                              columns=tuple(j.columns), delimiter=j.delimiter, lookup_key=j.lookup_key,
                              where=j.where, select=j.select)
    assert j.left_key is not None and j.right_key is not None
    common = {"left_key": _key_spec(j.left_key), "right_key": _key_spec(j.right_key), "where": j.where,
              "select": j.select}
    if j.type == "interval":
        return IntervalJoinSpec(n.id, lower_ms=j.lower_ms, upper_ms=j.upper_ms, **common)
    if j.type == "window":
        assert j.window is not None
        w = j.window
        return WindowJoinSpec(n.id, window=w.type, size_ms=w.size_ms, slide_ms=w.slide_ms, offset_ms=w.offset_ms,
                              **common)
    return RegularJoinSpec(n.id, ttl_ms=j.ttl_ms, **common)


def _key_spec(key: KeyDef) -> KeySpec:
    if key.fields:
        return KeySpec(fields=tuple(key.fields))
    assert key.function is not None
    return KeySpec(expr=key.function.expr, path=key.function.path, names=tuple(key.names))


def _physical(nodes: dict[str, NodeDef], virtual_ins: dict[str, list[_In]], nid: str) -> list[_In]:
    """The physical inputs standing for reading node ``nid`` (itself, or what a virtual node stands for)."""
    up = nodes[nid]
    if isinstance(up, TransformDef) and up.op == "side":
        return [_In(up.inputs[0], None, None, nid)]
    if isinstance(up, TransformDef) and up.op in ("union", "key_by"):
        return virtual_ins[nid]
    return [_In(nid, None, None)]


def _check_event_time(nodes: dict[str, NodeDef], order: list[str], phys: dict[str, list[_In]]) -> None:
    """Refuse an event-time window (or other event-time node) whose input carries no timestamps."""
    timed: dict[str, bool] = {}
    for nid in order:
        n = nodes[nid]
        if isinstance(n, SourceDef):
            timed[nid] = n.timestamp is not None
            continue
        if nid not in phys:
            continue
        ins_timed = all(timed.get(i.node, False) or i.tag is not None for i in phys[nid])
        if isinstance(n, TransformDef) and n.window is not None:
            if n.window.time == "event" and n.window.type != "global" and not ins_timed:
                untimed = sorted({_source_of(nodes, phys, i.node) for i in phys[nid] if not timed.get(i.node)})
                raise PipelineDefinitionError(
                    f"an event-time window needs timestamps, but its input from {', '.join(map(repr, untimed))} "
                    "has none; set timestamp: (and watermark:) on that source, or use time: processing",
                    f"{n.where}.window")
            timed[nid] = n.window.time == "event" and ins_timed
        elif isinstance(n, TransformDef) and n.join is not None and n.join.type in ("interval", "window"):
            if not ins_timed:
                untimed = sorted({_source_of(nodes, phys, i.node) for i in phys[nid] if not timed.get(i.node)})
                raise PipelineDefinitionError(
                    f"{'an' if n.join.type == 'interval' else 'a'} {n.join.type} join needs timestamps on both inputs, but the input from "
                    f"{', '.join(map(repr, untimed))} has none; set timestamp: (and watermark:) on that source, "
                    "or use a regular join", f"{n.where}.join")
            timed[nid] = True
        elif isinstance(n, TransformDef) and n.op in ("map", "filter", "flat_map", "join", "process"):
            timed[nid] = ins_timed
        else:
            timed[nid] = False


def _source_of(nodes: dict[str, NodeDef], phys: dict[str, list[_In]], nid: str) -> str:
    """The first source upstream of ``nid`` (for messages)."""
    while nid in phys and phys[nid]:
        nid = phys[nid][0].node
    return nid


def _op_spec(n: NodeDef, key: KeyDef | None) -> OpSpec:
    if isinstance(n, SourceDef):
        return SourceSpec(n.id, n.type, dict(n.params),
                          timestamp=n.timestamp.to_spec() if n.timestamp is not None else None,
                          watermark=n.watermark.to_spec() if n.watermark is not None else None)
    if isinstance(n, SinkDef):
        return SinkSpec(n.id, n.type, dict(n.params))
    expr = n.function.expr if n.function is not None else None
    path = n.function.path if n.function is not None else None
    if n.op == "aggregate" and n.window is not None:
        w = n.window
        return WindowSpec(n.id, key=_key_spec(key) if key is not None else None, window=w.type, size_ms=w.size_ms,
                          slide_ms=w.slide_ms, offset_ms=w.offset_ms, gap_ms=w.gap_ms, count=w.count, time=w.time,
                          allowed_lateness_ms=w.allowed_lateness_ms, late_output=w.late_output,
                          aggregates=tuple((a.name, a.func, a.field, a.where) for a in n.aggregates))
    if n.op == "process":
        assert key is not None and n.function is not None and n.function.path is not None
        return ProcessSpec(n.id, key=_key_spec(key), path=n.function.path, side_outputs=tuple(n.outputs))
    if n.op == "join":
        return _join_spec(n)
    if n.op == "aggregate":
        assert key is not None
        return AggregateSpec(n.id, _key_spec(key), tuple((a.name, a.func, a.field, a.where) for a in n.aggregates))
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
