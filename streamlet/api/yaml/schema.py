"""Pipeline definitions: plain frozen data built from YAML or from the Python API.

Nothing here does I/O or knows the runtime.  ``where`` fields keep the place a definition came
from (``file.yaml: transforms.counts``) so later checks can name it in their errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

STREAMING = "streaming"
BATCH = "batch"

#: transform operations a node may name (exactly one per node, except a bare ``key_by``)
OPERATIONS = ("map", "filter", "flat_map", "aggregate", "reduce", "union", "process", "join")
#: running aggregate functions of ``aggregate:``
AGGREGATE_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last", "collect")
#: partitioners a node may force with ``partition:``
PARTITIONERS = ("forward", "rebalance", "broadcast", "hash")


@dataclass(frozen=True)
class FunctionDef:
    """A user function: an inline Python expression or an import path ``pkg.mod:name``."""

    expr: str | None = None
    path: str | None = None


@dataclass(frozen=True)
class KeyDef:
    """How to extract a key: field names, or a function of the record ``r``."""

    fields: tuple[str, ...] = ()
    function: FunctionDef | None = None


@dataclass(frozen=True)
class AggregateDef:
    """One named running aggregate: ``name: {func: field}`` (``count`` needs no field)."""

    name: str
    func: str
    field: str | None = None


@dataclass(frozen=True)
class SourceDef:
    """A source node (``sources.<id>``)."""

    id: str
    type: str
    params: Mapping[str, Any]
    parallelism: int | None = None
    where: str = ""


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
    unimplemented: Mapping[str, Any] = field(default_factory=dict)
    #: ``state: {backend: ...}``; None: the cluster's ``state.backend.type``
    state_backend: str | None = None
