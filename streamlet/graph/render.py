"""Text rendering of a JobGraph for ``streamlet validate``."""

from __future__ import annotations

from streamlet.graph.job_graph import JobGraph


def _op_label(op: dict) -> str:
    kind = op["kind"]
    if kind in ("source", "sink"):
        return f"{kind} {op['id']} ({op['type']})"
    if kind in ("map", "filter", "flat_map", "reduce"):
        return f"{kind} {op['id']}: {op.get('expr') or op.get('path')}"
    if kind == "aggregate":
        aggs = ", ".join(f"{a[0]}={a[1]}({a[2] or ''})" for a in op["aggregates"])
        return f"aggregate {op['id']}: {aggs}"
    return f"{kind} {op['id']}"


def _key_label(key: dict | None) -> str:
    if not key:
        return ""
    if key.get("fields"):
        return ",".join(key["fields"])
    return key.get("expr") or key.get("path") or ""


def render_text(graph: JobGraph) -> str:
    """Vertices after chaining, their parallelism and operators, and every edge's partitioner."""
    index = {v.id: i + 1 for i, v in enumerate(graph.vertices)}
    lines = [f"job {graph.name!r}: mode {graph.mode}, max_parallelism {graph.max_parallelism}, "
             f"{len(graph.vertices)} vertices, needs {graph.max_vertex_parallelism} slot(s)"]
    for v in graph.vertices:
        lines.append(f"  [{index[v.id]}] {v.name}  parallelism={v.parallelism}  id={v.id}")
        for op in v.operators:
            lines.append(f"        {_op_label(op)}")
        for e in graph.outputs_of(v.id):
            key = _key_label(e.key)
            label = f"{e.partitioner}({key})" if key else e.partitioner
            lines.append(f"      --{label}--> [{index[e.target]}] {graph.vertex(e.target).name}")
    return "\n".join(lines)
