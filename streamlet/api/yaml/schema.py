"""Pipeline definitions: plain frozen data built from YAML or from the Python API.

Nothing here does I/O or knows the runtime.  ``where`` fields keep the place a definition came
from (``file.yaml: transforms.counts``) so later checks can name it in their errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from streamlet.time.watermarks import WatermarkStrategy

STREAMING = "streaming"
BATCH = "batch"

#: transform operations a node may name (exactly one per node, except a bare ``key_by``)
OPERATIONS = ("map", "filter", "flat_map", "aggregate", "reduce", "union", "process", "join")
#: aggregate functions of ``aggregate:`` (running and windowed); an import path names a user aggregate
AGGREGATE_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last", "collect", "count_distinct")
#: partitioners a node may force with ``partition:``
PARTITIONERS = ("forward", "rebalance", "broadcast", "hash")


@dataclass(frozen=True)
class FunctionDef:
    """A user function: an inline Python expression or an import path ``pkg.mod:name``."""

    expr: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class KeyDef:
    """How to extract a key: field names, or a function of the record ``r``.

    ``names`` are the output fields of a computed key (``key_by: {day: EXPR}``): with several,
    ``function`` returns a tuple in that order.
    """

    fields: tuple[str, ...] = ()
    function: FunctionDef | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class AggregateDef:
    """One named aggregate: ``name: {func: field}`` (``count`` needs no field).

    ``func`` is one of :data:`AGGREGATE_FUNCTIONS` or an import path to a user aggregate class;
    ``where`` (an expression over ``r``) filters the records this aggregate sees.
    """

    name: str
    func: str
    field: str | None = None
    where: str | None = None


@dataclass(frozen=True)
class TimestampDef:
    """A source's event time: a field (epoch ms or ISO-8601) or a function of the record."""

    field: str | None = None
    function: FunctionDef | None = None

    def to_spec(self) -> dict[str, Any]:
        """JSON form carried by the source's spec (see :mod:`streamlet.time.timestamps`)."""
        if self.field is not None:
            return {"field": self.field}
        assert self.function is not None
        return {"expr": self.function.expr, "path": self.function.path}


@dataclass(frozen=True)
class WindowDef:
    """``window:`` of a transform (durations in milliseconds; see :mod:`streamlet.time.windows`)."""

    type: str
    size_ms: int = 0
    slide_ms: int = 0
    offset_ms: int = 0
    gap_ms: int = 0
    count: int = 0
    time: str = "event"
    allowed_lateness_ms: int = 0
    late_output: str | None = None


@dataclass(frozen=True)
class JoinDef:
    """``join:`` of a transform (see :mod:`streamlet.operators.join`); durations in milliseconds.

    Two-input joins (interval, window, regular) name ``left``/``right`` node ids and their keys;
    a lookup join reads the node's ``input`` and a static file (``path``, already absolute).
    ``where``/``select`` are expressions over ``l`` and ``r``.
    """

    type: str
    left: str | None = None
    right: str | None = None
    left_key: KeyDef | None = None
    right_key: KeyDef | None = None
    lower_ms: int = 0
    upper_ms: int = 0
    window: WindowDef | None = None
    ttl_ms: int = 0
    where: str | None = None
    select: str | None = None
    key: KeyDef | None = None
    path: str | None = None
    format: str = "csv"
    header: bool = True
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    lookup_key: str | None = None


@dataclass(frozen=True)
class SourceDef:
    """A source node (``sources.<id>``)."""

    id: str
    type: str
    params: Mapping[str, Any]
    parallelism: int | None = None
    where: str = ""
    #: event time (None: the source's records carry no timestamps)
    timestamp: TimestampDef | None = None
    watermark: WatermarkStrategy | None = None


@dataclass(frozen=True)
class TransformDef:
    """A transform node (``transforms.<id>``).

    ``op`` is one of :data:`OPERATIONS`, or ``"key_by"`` for a node that only partitions by key.
    """

    id: str
    op: str
    inputs: tuple[str, ...]
    function: FunctionDef | None = None
    key: KeyDef | None = None
    aggregates: tuple[AggregateDef, ...] = ()
    parallelism: int | None = None
    partition: str | None = None
    where: str = ""
    #: ``window:`` of an ``aggregate`` node (None: a running aggregate)
    window: WindowDef | None = None
    #: ``join:`` of a ``join`` node
    join: JoinDef | None = None
    #: side outputs a ``process`` node declares (``side_outputs: [alerts]``)
    outputs: tuple[str, ...] = ()

    @property
    def side_outputs(self) -> tuple[str, ...]:
        """Names of the side outputs this node produces (usable as inputs by other nodes)."""
        if self.window is not None and self.window.late_output:
            return (self.window.late_output,)
        return self.outputs


@dataclass(frozen=True)
class SinkDef:
    """A sink node (``sinks.<id>``)."""

    id: str
    type: str
    input: str
    params: Mapping[str, Any]
    parallelism: int | None = None
    partition: str | None = None
    where: str = ""


@dataclass(frozen=True)
class PipelineDef:
    """A whole pipeline.  ``base_dir`` anchors relative paths and import paths."""

    name: str
    sources: tuple[SourceDef, ...]
    transforms: tuple[TransformDef, ...] = ()
    sinks: tuple[SinkDef, ...] = ()
    parallelism: int | None = None
    max_parallelism: int | None = None
    mode: str = STREAMING
    batch_size: int | None = None
    base_dir: str = "."
    source_file: str = "<pipeline>"
    #: ``state: {backend: ...}``; None: the cluster's ``state.backend.type``
    state_backend: str | None = None
    #: ``checkpointing:`` / ``restart:`` as checked by streamlet.graph.settings (None: not given)
    checkpointing: Mapping[str, Any] | None = None
    restart: Mapping[str, Any] | None = None
