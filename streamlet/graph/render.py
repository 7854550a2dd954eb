"""Text rendering of a JobGraph for ``streamlet validate``."""

from __future__ import annotations

from streamlet.graph.job_graph import JobGraph


def render_text(graph: JobGraph) -> str:
    """Vertices after chaining, their parallelism and operators, and every edge's partitioner."""
    index = {v.id: i + 1 for i, v in enumerate(graph.vertices)}
    lines = [f"job {graph.name!r}: mode {graph.mode}, max_parallelism {graph.max_parallelism}, "
             f"{len(graph.vertices)} vertices, needs {graph.max_vertex_parallelism} slot(s)"]
    for v in graph.vertices:
        lines.append(f"  [{index[v.id]}] {v.name}  parallelism={v.parallelism}  id={v.id}")
        for op in v.operators:
            lines.append(f"        {op.label()}")
        for e in graph.outputs_of(v.id):
            key = e.key.label() if e.key is not None else ""
            label = f"{e.partitioner}({key})" if key else e.partitioner
            if e.side_output is not None:
                label = f"side output {e.side_output!r} {label}"
            side = " (right input)" if e.input == 1 else ""
            lines.append(f"      --{label}--> [{index[e.target]}] {graph.vertex(e.target).name}{side}")
    return "\n".join(lines)
