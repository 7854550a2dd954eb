"""Fluent builders of the Python API: each call adds one definition to the environment.

They build exactly the definitions YAML builds (:mod:`streamlet.api.yaml.schema`), so a pipeline
written in Python and the same pipeline in YAML plan to the same JobGraph.  Functions are inline
expressions over ``r`` (strings) or module-level functions, which are referenced by import path
(``module:qualname``) because code never travels pickled.

Example::

    env = StreamEnvironment("sums", parallelism=2)
    src = env.source("events", type="file", path="events.jsonl")
    doubled = src.map("doubled", "dict(r, value=r['value'] * 2)")
    doubled.key_by("user").aggregate("sums", {"total": {"sum": "value"}}).sink("out", type="print")
    result = env.execute()

Event time and windows::

    clicks = env.source("clicks", type="file", path="clicks.jsonl", timestamp="ts",
                        watermark={"max_out_of_orderness": "4s"})
    clicks.key_by("user").window(type="tumbling", size="10s").aggregate("per_user", {"n": "count"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from streamlet.api.yaml.loader import compile_expression, parse_aggregates, parse_join, parse_key, parse_window
from streamlet.api.yaml.schema import FunctionDef, KeyDef, TransformDef
from streamlet.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from streamlet.api.environment import StreamEnvironment

UserFunction = Union[str, Callable[..., Any]]


def function_def(fn: UserFunction, where: str) -> FunctionDef:
    """A FunctionDef from an expression string, an import path, or a module-level function."""
    if isinstance(fn, str):
        return compile_expression(fn, where)
    if callable(fn):
        qual = getattr(fn, "__qualname__", "")
        module = getattr(fn, "__module__", None)
        if not module or "<lambda>" in qual or "<locals>" in qual:
            raise PipelineDefinitionError(
                "pass an expression string or a module-level function; lambdas and nested functions "
                "cannot be shipped to TaskManagers", where)
        return FunctionDef(path=f"{module}:{qual}")
    raise PipelineDefinitionError(f"expected an expression string or a function, got {fn!r}", where)


class DataStream:
    """A stream produced by one node of the pipeline."""

    def __init__(self, env: StreamEnvironment, node_id: str) -> None:
        self.env = env
        self.node_id = node_id

    def _where(self, node_id: str) -> str:
        return f"{self.env.name}: transforms.{node_id}"

    def _stateless(self, op: str, node_id: str, fn: UserFunction, parallelism: int | None) -> DataStream:
        where = self._where(node_id)
        self.env._add_transform(TransformDef(node_id, op, (self.node_id,), function=function_def(fn, f"{where}.{op}"),
                                             parallelism=parallelism, where=where))
        return DataStream(self.env, node_id)

    def map(self, node_id: str, fn: UserFunction, parallelism: int | None = None) -> DataStream:
        """One output record per input record: ``fn(r)``."""
        return self._stateless("map", node_id, fn, parallelism)

    def filter(self, node_id: str, fn: UserFunction, parallelism: int | None = None) -> DataStream:
        """Keep records for which ``fn(r)`` is true."""
        return self._stateless("filter", node_id, fn, parallelism)

    def flat_map(self, node_id: str, fn: UserFunction, parallelism: int | None = None) -> DataStream:
        """Zero or more records per input record: iterate ``fn(r)``."""
        return self._stateless("flat_map", node_id, fn, parallelism)

    def key_by(self, key: str | list[str] | Callable[..., Any]) -> KeyedStream:
        """Partition by key: a field name, a list of fields, an expression or a function."""
        where = f"{self.env.name}: key_by of {self.node_id}"
        if callable(key) and not isinstance(key, str):
            kdef = KeyDef(function=function_def(key, where))
        else:
            kdef = parse_key(key, where)
        return KeyedStream(self.env, self.node_id, kdef)

    def union(self, node_id: str, *others: DataStream) -> DataStream:
        """Merge this stream with ``others``."""
        self.env._add_transform(TransformDef(node_id, "union", (self.node_id, *(o.node_id for o in others)),
                                             where=self._where(node_id)))
        return DataStream(self.env, node_id)

    def sink(self, node_id: str, type: str, parallelism: int | None = None, **params: Any) -> None:  # noqa: A002
        """Write this stream to a sink (``print``, ``file``, ``blackhole``)."""
        self.env._add_sink(node_id, type, self.node_id, params, parallelism)

    def side_output(self, name: str) -> DataStream:
        """The side output ``name`` of this node (a window's ``late_output``, a process function's tag)."""
        return DataStream(self.env, name)

    def window_all(self, **window: Any) -> WindowedStream:
        """A non-keyed window over this stream (runs as one subtask), e.g.
        ``window_all(type="tumbling", size="10s").aggregate("counts", {"n": "count"})``.
        The keys are those of YAML's ``window:``."""
        return WindowedStream(self.env, self.node_id, None, window)

    def join(self, node_id: str, right: DataStream, type: str, left_key: Any, right_key: Any,  # noqa: A002
             parallelism: int | None = None, **options: Any) -> DataStream:
        """Join this stream (left) with ``right``: ``type`` interval, window or regular; ``options``
        are YAML's join keys (``lower``, ``upper``, ``window``, ``ttl``, ``where``, ``select``).

        Example: ``bids.join("j", auctions, "regular", "auction", "id", select="{**l, 'seller': r['seller']}")``.
        """
        where = self._where(node_id)
        spec = {"type": type, "left": self.node_id, "right": right.node_id, "left_key": left_key,
                "right_key": right_key, **options}
        jdef = parse_join(spec, f"{where}.join", self.env.base_dir)
        self.env._add_transform(TransformDef(node_id, "join", (self.node_id, right.node_id), parallelism=parallelism,
                                             where=where, join=jdef))
        return DataStream(self.env, node_id)

    def lookup_join(self, node_id: str, path: str, key: Any, lookup_key: str, parallelism: int | None = None,
                    **options: Any) -> DataStream:
        """Join each record with the rows of a static file (YAML's ``join: {type: lookup, ...}``)."""
        where = self._where(node_id)
        spec = {"type": "lookup", "path": path, "key": key, "lookup_key": lookup_key, **options}
        jdef = parse_join(spec, f"{where}.join", self.env.base_dir)
        self.env._add_transform(TransformDef(node_id, "join", (self.node_id,), parallelism=parallelism, where=where,
                                             join=jdef))
        return DataStream(self.env, node_id)


class KeyedStream:
    """A stream partitioned by key; keyed operations follow."""

    def __init__(self, env: StreamEnvironment, input_id: str, key: KeyDef) -> None:
        self.env = env
        self.input_id = input_id
        self.key = key

    def aggregate(self, node_id: str, aggregates: dict[str, Any], parallelism: int | None = None) -> DataStream:
        """Running aggregates, e.g. ``{"n": "count", "total": {"sum": "price"}}``."""
        where = f"{self.env.name}: transforms.{node_id}"
        self.env._add_transform(TransformDef(node_id, "aggregate", (self.input_id,), key=self.key,
                                             aggregates=parse_aggregates(aggregates, f"{where}.aggregate"),
                                             parallelism=parallelism, where=where))
        return DataStream(self.env, node_id)

    def window(self, **window: Any) -> WindowedStream:
        """Keyed windows, e.g. ``window(type="sliding", size="10s", slide="2s")`` (YAML's ``window:``)."""
        return WindowedStream(self.env, self.input_id, self.key, window)

    def process(self, node_id: str, fn: str | type, side_outputs: list[str] | None = None,
                parallelism: int | None = None) -> DataStream:
        """A keyed process function: a class (module level) or its import path ``pkg.mod:Class``."""
        where = f"{self.env.name}: transforms.{node_id}"
        fdef = function_def(fn, f"{where}.process")
        if fdef.path is None:
            raise PipelineDefinitionError("process takes a class or an import path 'package.module:Class'",
                                          f"{where}.process")
        self.env._add_transform(TransformDef(node_id, "process", (self.input_id,), function=fdef, key=self.key,
                                             parallelism=parallelism, where=where, outputs=tuple(side_outputs or ())))
        return DataStream(self.env, node_id)

    def reduce(self, node_id: str, fn: UserFunction, parallelism: int | None = None) -> DataStream:
        """Fold records of a key with ``fn(a, b)`` (an expression over ``a`` and ``b``)."""
        where = f"{self.env.name}: transforms.{node_id}"
        self.env._add_transform(TransformDef(node_id, "reduce", (self.input_id,), key=self.key,
                                             function=function_def(fn, f"{where}.reduce"),
                                             parallelism=parallelism, where=where))
        return DataStream(self.env, node_id)



class WindowedStream:
    """A keyed (or non-keyed) stream with a window; ``aggregate`` makes the window node."""

    def __init__(self, env: StreamEnvironment, input_id: str, key: KeyDef | None, window: dict[str, Any]) -> None:
        self.env = env
        self.input_id = input_id
        self.key = key
        self.window = window

    def aggregate(self, node_id: str, aggregates: dict[str, Any], parallelism: int | None = None) -> DataStream:
        """Window aggregates, e.g. ``{"n": "count", "top": {"max": "price"}}``."""
        where = f"{self.env.name}: transforms.{node_id}"
        self.env._add_transform(TransformDef(node_id, "aggregate", (self.input_id,), key=self.key,
                                             aggregates=parse_aggregates(aggregates, f"{where}.aggregate"),
                                             parallelism=parallelism, where=where,
                                             window=parse_window(self.window, f"{where}.window")))
        return DataStream(self.env, node_id)
