"""StreamEnvironment: the entry point of the Python API.

It collects the same definitions a YAML file produces and plans them with the same planner, so
``env.plan()`` of a Python pipeline equals ``plan(load("same.yaml"))``.
"""

from __future__ import annotations

from typing import Any

from streamlet.api.datastream import DataStream
from streamlet.api.limits import DEFAULT_LIMITS
from streamlet.api.planner import plan
from streamlet.api.registry import executor, validate_sink, validate_source
from streamlet.api.yaml.schema import STREAMING, PipelineDef, SinkDef, SourceDef, TransformDef
from streamlet.errors import JobFailedError, PipelineDefinitionError
from streamlet.graph.job_graph import JobGraph


class StreamEnvironment:
    """Builds a pipeline in Python.

    Example::

        env = StreamEnvironment("clean", parallelism=2, mode="batch")
        env.source("in", type="file", path="in.jsonl").filter("ok", "r['ok']").sink("out", type="print")
        env.execute()
    """

    def __init__(self, name: str, parallelism: int | None = None, max_parallelism: int | None = None,
                 mode: str = STREAMING, batch_size: int | None = None, base_dir: str = ".") -> None:
        self.name = name
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.mode = mode
        self.batch_size = batch_size
        self.base_dir = base_dir
        self._sources: list[SourceDef] = []
        self._transforms: list[TransformDef] = []
        self._sinks: list[SinkDef] = []
        self._ids: set[str] = set()

    def _claim(self, node_id: str, where: str) -> None:
        if node_id in self._ids:
            raise PipelineDefinitionError(f"duplicate id {node_id!r}; ids are unique", where)
        self._ids.add(node_id)

    def source(self, node_id: str, type: str, parallelism: int | None = None, **params: Any) -> DataStream:  # noqa: A002
        """Add a source (``file``, ``datagen``, ``nexmark``) with its YAML keys as keyword arguments.

        ``timestamp=`` and ``watermark=`` declare event time as in YAML.
        """
        from streamlet.api.yaml.loader import parse_event_time

        where = f"{self.name}: sources.{node_id}"
        self._claim(node_id, where)
        ts, wm = parse_event_time(params, where, DEFAULT_LIMITS)
        clean = validate_source(type, {k: v for k, v in params.items() if k not in ("timestamp", "watermark")},
                                where, self.base_dir)
        self._sources.append(SourceDef(node_id, type, clean, parallelism, where, ts, wm))
        return DataStream(self, node_id)

    def _add_transform(self, t: TransformDef) -> None:
        self._claim(t.id, t.where)
        for tag in t.side_outputs:
            self._claim(tag, t.where)
        self._transforms.append(t)

    def _add_sink(self, node_id: str, kind: str, input_id: str, params: dict[str, Any],
                  parallelism: int | None) -> None:
        where = f"{self.name}: sinks.{node_id}"
        self._claim(node_id, where)
        clean = validate_sink(kind, params, where, self.base_dir)
        self._sinks.append(SinkDef(node_id, kind, input_id, clean, parallelism, None, where))

    def to_def(self) -> PipelineDef:
        """The pipeline definition (what YAML would have produced)."""
        return PipelineDef(name=self.name, sources=tuple(self._sources), transforms=tuple(self._transforms),
                           sinks=tuple(self._sinks), parallelism=self.parallelism,
                           max_parallelism=self.max_parallelism, mode=self.mode, batch_size=self.batch_size,
                           base_dir=self.base_dir, source_file=self.name)

    def plan(self, parallelism: int | None = None) -> JobGraph:
        """The JobGraph of this pipeline."""
        return plan(self.to_def(), parallelism_override=parallelism)

    def execute(self, parallelism: int | None = None) -> Any:
        """Run the pipeline in this process until it ends; raises JobFailedError if it fails.

        Called from inside a running event loop, use ``await env.execute_async()`` instead.
        """
        from streamlet.config import load

        result = executor("execute")(self.plan(parallelism), load())
        if result.state != "FINISHED":
            raise JobFailedError(f"job {self.name!r} {result.state}: {result.error}") from result.error
        return result

    async def execute_async(self, parallelism: int | None = None) -> Any:
        """Run the pipeline on a MiniCluster on the current event loop."""
        from streamlet.config import load

        result = await executor("execute_async")(self.plan(parallelism), load())
        if result.state != "FINISHED":
            raise JobFailedError(f"job {self.name!r} {result.state}: {result.error}") from result.error
        return result
