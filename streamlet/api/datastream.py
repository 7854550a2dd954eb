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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Union

from streamlet.api.yaml.loader import compile_expression, parse_aggregates, parse_key
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

    def reduce(self, node_id: str, fn: UserFunction, parallelism: int | None = None) -> DataStream:
        """Fold records of a key with ``fn(a, b)`` (an expression over ``a`` and ``b``)."""
        where = f"{self.env.name}: transforms.{node_id}"
        self.env._add_transform(TransformDef(node_id, "reduce", (self.input_id,), key=self.key,
                                             function=function_def(fn, f"{where}.reduce"),
                                             parallelism=parallelism, where=where))
        return DataStream(self.env, node_id)

