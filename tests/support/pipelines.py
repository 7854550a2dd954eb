"""Run pipelines through the public path and read what their sinks wrote.

The path is the one ``streamlet run`` takes, minus the CLI: YAML file →
:func:`streamlet.api.yaml.loader.load` → :func:`streamlet.api.planner.plan` →
:func:`streamlet.runtime.minicluster.execute_async` (a MiniCluster: the real Dispatcher, JobMaster
and TaskExecutor in this process) on a fresh event loop.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any, Iterable

import orjson

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import load
from streamlet.graph.job_graph import JobGraph
from streamlet import config as cfg
from streamlet.client.results import JobResult
from streamlet.runtime.minicluster import execute_async


def write_pipeline(directory: Path, text: str, name: str = "pipeline.yaml") -> Path:
    """Write dedented YAML ``text`` to ``directory/name``; return the path."""
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def plan_file(path: Path, parallelism: int | None = None, **kwargs: Any) -> JobGraph:
    """Load and plan a pipeline file (``parallelism`` as ``--parallelism``)."""
    return plan(load(path), parallelism_override=parallelism, **kwargs)


def run_graph(graph: JobGraph, queue_capacity: int = 4, **overrides: object) -> JobResult:
    """Run ``graph`` to its end on a fresh event loop (``overrides`` are config keys)."""
    conf = cfg.load(overrides={"taskmanager.network.queue-capacity": queue_capacity, **overrides}, env={})
    return asyncio.run(execute_async(graph, conf))


def run_pipeline(directory: Path, text: str, parallelism: int | None = None) -> JobResult:
    """Write, plan and run a pipeline; fail the test unless the job FINISHED."""
    result = run_graph(plan_file(write_pipeline(directory, text), parallelism))
    assert result.state == "FINISHED", f"job ended {result.state}: {result.error!r}"
    return result


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    """Write records as JSON lines (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def read_parts(directory: Path, ext: str = "jsonl") -> dict[int, list[Any]]:
    """The records of every committed ``part-<i>-<checkpoint>-<seq>.<ext>`` file of a file sink,
    by subtask index ``i``, in checkpoint and part order (csv: the lines, headers included)."""
    out: dict[int, list[Any]] = {}
    files = sorted(directory.glob(f"part-*-*-*.{ext}"),
                   key=lambda f: tuple(int(x) for x in f.name.split(".")[0].split("-")[1:]))
    for f in files:
        index = int(f.name.split("-")[1])
        part = out.setdefault(index, [])
        if ext == "jsonl":
            part += [orjson.loads(line) for line in f.read_bytes().splitlines() if line]
        else:
            part += f.read_text().splitlines()
    return out


def read_output(directory: Path) -> list[Any]:
    """Every record a jsonl file sink wrote, all subtasks together."""
    return [r for part in read_parts(directory).values() for r in part]


def canonical(records: Iterable[Any]) -> list[bytes]:
    """Records in a comparable, order-free form (sorted canonical JSON)."""
    return sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def vertex_named(info: Any, name: str) -> Any:
    """The vertex called ``name`` of a JobInfo / JobResult."""
    return next(v for v in info.vertices if v.name == name)
