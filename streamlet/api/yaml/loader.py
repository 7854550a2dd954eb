"""YAML → :class:`PipelineDef`.

Checks the shape of the document: top-level keys, node keys, types, one operation per transform,
aggregate specs, expression syntax.  Connector keys are checked by the connector's ``PARAMS``
(through the registry); graph-level checks (inputs, cycles, import paths, files) happen when the
definition is planned (:mod:`streamlet.api.planner`).  Every error names the file, the node id and
the key, e.g. ``wordcount.yaml: transforms.counts.key_by: ...``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from streamlet.api.yaml.schema import (
    AGGREGATE_FUNCTIONS, BATCH, OPERATIONS, PARTITIONERS, STREAMING, AggregateDef, FunctionDef,
    KeyDef, PipelineDef, SinkDef, SourceDef, TransformDef,
)
from streamlet.api.expressions import compile_expression
from streamlet.api.limits import DEFAULT_LIMITS, PipelineLimits
from streamlet.errors import PipelineDefinitionError

TOP_LEVEL_KEYS = ("name", "parallelism", "max_parallelism", "mode", "batch_size", "checkpointing",
                  "state", "restart", "sources", "transforms", "sinks")
#: accepted top-level keys whose feature arrives with a later issue; a warning is printed
UNIMPLEMENTED_TOP_LEVEL = ("checkpointing", "restart")
#: backends of the pipeline-level ``state: {backend: ...}``
STATE_BACKENDS = ("heap", "rocksdb")
SOURCE_COMMON = ("type", "parallelism")
SINK_COMMON = ("type", "input", "parallelism", "partition")
TRANSFORM_KEYS = ("input", "key_by", "parallelism", "partition", "name") + OPERATIONS
NOT_YET = {
    "window": "windows arrive with event time; use a running aggregate for now",
    "process": "keyed process functions arrive with state and timers",
    "join": "joins arrive with event time",
    "timestamp": "event time arrives in a later version; remove the key",
    "watermark": "event time arrives in a later version; remove the key",
}


class _PipelineLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, bounded and strict, for documents that come from the network.

    * while composing (before any Python object exists) it counts nesting depth, aliases and
      values, an alias counting as the whole node it repeats, so a "billion laughs" document is
      refused after reading the few hundred bytes that define it, not after expanding it;
      an alias to a node that contains it (a recursive structure) is refused;
    * it builds only JSON values: timestamps stay strings, and ``!!binary``, ``!!set``,
      ``!!omap`` and ``!!pairs`` are refused (a pipeline travels as JSON);
    * duplicate keys are refused (PyYAML silently keeps the last one).
    """

    def __init__(self, text: str, limits: PipelineLimits, source_file: str) -> None:
        super().__init__(text)
        self._limits = limits
        self._file = source_file
        self._depth = 0
        self._values = 0
        self._aliases = 0
        #: anchor -> number of values of the anchored node (set once the node is complete)
        self._sizes: dict[str, int] = {}

    def _where(self, mark: Any) -> str:
        return f"{self._file} (line {mark.line + 1})" if mark is not None else self._file

    def _count(self, n: int, mark: Any) -> None:
        self._values += n
        if self._values > self._limits.max_values:
            raise self._limits.exceeded("max_values", "the YAML document has too many values (maps, lists "
                                        "and scalars, counted after alias expansion)", self._where(mark))

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            self._aliases += 1
            if self._aliases > self._limits.max_aliases:
                raise self._limits.exceeded("max_aliases", "the YAML document has too many aliases (*name)",
                                            self._where(event.start_mark))
            if event.anchor in self.anchors:
                size = self._sizes.get(event.anchor)
                if size is None:
                    raise PipelineDefinitionError(
                        f"alias *{event.anchor} is used inside the node it names; recursive structures are "
                        "not allowed in a pipeline", self._where(event.start_mark))
                self._count(size, event.start_mark)
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > self._limits.max_depth:
            raise self._limits.exceeded("max_depth", "the YAML document nests maps and lists too deeply",
                                        self._where(event.start_mark))
        before = self._values
        self._count(1, event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self._values - before
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)
        self.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                duplicate = key in out
            except TypeError:
                raise PipelineDefinitionError(f"a map key must be a string or a number, got {type(key).__name__} "
                                              f"(line {line})", self._file) from None
            if duplicate:
                raise PipelineDefinitionError(f"duplicate key {key!r} (line {line}); ids and keys must be unique",
                                              self._file)
            out[key] = self.construct_object(value_node, deep=deep)
        return out

    def _refuse(self, node: Any) -> Any:
        raise PipelineDefinitionError(
            f"the YAML tag {node.tag!r} is not supported in a pipeline (line {node.start_mark.line + 1}); "
            "write plain strings, numbers, lists and maps", self._file)


def _construct_mapping(loader: _PipelineLoader, node: yaml.MappingNode) -> Any:
    data: dict[Any, Any] = {}
    yield data
    data.update(loader.construct_mapping(node))


_PipelineLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_PipelineLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
for _tag in ("binary", "set", "omap", "pairs"):
    _PipelineLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _PipelineLoader._refuse)


def _did_you_mean(word: Any, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(word), list(allowed), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _unknown(key: str, allowed: tuple[str, ...] | list[str], where: str) -> PipelineDefinitionError:
    if key in NOT_YET:
        return PipelineDefinitionError(f"{key!r} is not supported yet: {NOT_YET[key]}", where)
    return PipelineDefinitionError(
        f"unknown key {key!r}; {_did_you_mean(key, allowed)}allowed keys: {', '.join(allowed)}", where)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PipelineDefinitionError(f"expected a positive integer, got {value!r}", where)
    return value


def parse_key(value: Any, where: str, limits: PipelineLimits = DEFAULT_LIMITS) -> KeyDef:
    """``key_by:`` value: a field name, a list of field names, an expression or an import path."""
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise PipelineDefinitionError(f"expected a non-empty list of field names, got {value!r}", where)
        return KeyDef(fields=tuple(value))
    if isinstance(value, str) and value.isidentifier():
        return KeyDef(fields=(value,))
    return KeyDef(function=compile_expression(value, where, limits=limits))


def parse_aggregates(value: Any, where: str) -> tuple[AggregateDef, ...]:
    """``aggregate: {name: count | {func: field}}``."""
    if not isinstance(value, dict) or not value:
        raise PipelineDefinitionError(
            "expected a map of output name to aggregate, e.g. {n: count, total: {sum: price}}", where)
    out = []
    for name, spec in value.items():
        w = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            raise PipelineDefinitionError(f"aggregate names must be strings, got {name!r}", where)
        if spec == "count":
            out.append(AggregateDef(name, "count"))
            continue
        if isinstance(spec, str):
            raise PipelineDefinitionError(
                f"{spec!r} needs a field: write {{{spec}: FIELD}}; only count stands alone", w)
        if not isinstance(spec, dict) or len(spec) != 1:
            raise PipelineDefinitionError(
                f"expected count or a one-entry map {{function: field}}, got {spec!r}", w)
        func, fld = next(iter(spec.items()))
        if func not in AGGREGATE_FUNCTIONS:
            raise PipelineDefinitionError(
                f"unknown aggregate {func!r}; {_did_you_mean(func, AGGREGATE_FUNCTIONS)}"
                f"allowed: {', '.join(AGGREGATE_FUNCTIONS)}", w)
        if func == "count":
            out.append(AggregateDef(name, "count"))
            continue
        if not isinstance(fld, str) or not fld:
            raise PipelineDefinitionError(f"expected a field name for {func}, got {fld!r}", w)
        out.append(AggregateDef(name, func, fld))
    return tuple(out)


def _inputs(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise PipelineDefinitionError(f"expected a node id or a list of node ids, got {value!r}", where)


def _partition(value: Any, where: str) -> str:
    if value not in PARTITIONERS:
        raise PipelineDefinitionError(
            f"{value!r} is not a partitioner; allowed: {', '.join(PARTITIONERS)}", where)
    return str(value)


def parse_transform(node_id: str, body: Any, where: str, limits: PipelineLimits = DEFAULT_LIMITS) -> TransformDef:
    """One ``transforms.<id>`` entry."""
    if not isinstance(body, dict):
        raise PipelineDefinitionError(
            "expected a map, e.g. {input: source_id, map: \"dict(r, x=1)\"}", where)
    for key in body:
        if key not in TRANSFORM_KEYS:
            raise _unknown(str(key), TRANSFORM_KEYS, f"{where}.{key}")
    ops = [k for k in OPERATIONS if k in body]
    if len(ops) > 1:
        raise PipelineDefinitionError(
            f"a transform does one operation, found {', '.join(ops)}; split it into several nodes", where)
    for later in ("process", "join"):
        if later in ops:
            raise PipelineDefinitionError(f"{later!r} is not supported yet: {NOT_YET[later]}", f"{where}.{later}")
    key = parse_key(body["key_by"], f"{where}.key_by", limits) if "key_by" in body else None
    if not ops and key is None:
        raise PipelineDefinitionError(
            f"no operation; give one of {', '.join(k for k in OPERATIONS if k not in ('process', 'join'))} "
            "or key_by", where)
    op = ops[0] if ops else "key_by"
    parallelism = _positive_int(body["parallelism"], f"{where}.parallelism") if "parallelism" in body else None
    partition = _partition(body["partition"], f"{where}.partition") if "partition" in body else None
    if op == "union":
        if "input" in body:
            raise PipelineDefinitionError("a union lists its inputs in union: [a, b]; remove input", f"{where}.input")
        inputs = _inputs(body["union"], f"{where}.union")
        if len(inputs) < 2:
            raise PipelineDefinitionError("a union needs at least two inputs", f"{where}.union")
        if partition is not None:
            raise PipelineDefinitionError(
                "a union is not an operator; set partition on the node that reads it", f"{where}.partition")
        return TransformDef(node_id, "union", inputs, parallelism=parallelism, where=where)
    if "input" not in body:
        raise PipelineDefinitionError("missing key 'input' (the id of the node this one reads)", where)
    inputs = _inputs(body["input"], f"{where}.input")
    if len(inputs) != 1:
        raise PipelineDefinitionError("a transform reads one input; use union: [a, b] to merge streams",
                                      f"{where}.input")
    if op in ("map", "filter", "flat_map"):
        if key is not None:
            raise PipelineDefinitionError(
                f"key_by with {op}: partition in its own node, then {op}", f"{where}.key_by")
        return TransformDef(node_id, op, inputs, function=compile_expression(body[op], f"{where}.{op}", limits=limits),
                            parallelism=parallelism, partition=partition, where=where)
    if op == "aggregate":
        return TransformDef(node_id, op, inputs, key=key,
                            aggregates=parse_aggregates(body["aggregate"], f"{where}.aggregate"),
                            parallelism=parallelism, partition=partition, where=where)
    if op == "reduce":
        return TransformDef(node_id, op, inputs, key=key,
                            function=compile_expression(body["reduce"], f"{where}.reduce", "reduce", limits),
                            parallelism=parallelism, partition=partition, where=where)
    return TransformDef(node_id, "key_by", inputs, key=key, parallelism=parallelism,
                        partition=partition, where=where)


def _connector_params(section: str, node_id: str, body: Any, where: str) -> tuple[str, dict[str, Any]]:
    from streamlet.api import registry

    if not isinstance(body, dict):
        raise PipelineDefinitionError("expected a map with at least 'type'", where)
    if "type" not in body:
        kinds = registry.source_types() if section == "sources" else registry.sink_types()
        raise PipelineDefinitionError(f"missing key 'type' (one of {', '.join(kinds)})", where)
    for key in body:
        if key in NOT_YET:
            raise _unknown(str(key), (), f"{where}.{key}")
    return str(body["type"]), body


def parse_document(data: Any, source_file: str = "<pipeline>", base_dir: str = ".",
                   limits: PipelineLimits = DEFAULT_LIMITS) -> PipelineDef:
    """A :class:`PipelineDef` from a parsed YAML document."""
    from streamlet.api import registry

    f = source_file
    if not isinstance(data, dict):
        raise PipelineDefinitionError(
            f"expected a map with sources, transforms and sinks, got {type(data).__name__}", f)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown(str(key), TOP_LEVEL_KEYS, f"{f}: {key}")
    name = data.get("name", Path(source_file).stem)
    if not isinstance(name, str) or not name:
        raise PipelineDefinitionError(f"expected a non-empty string, got {name!r}", f"{f}: name")
    mode = data.get("mode", STREAMING)
    if mode not in (STREAMING, BATCH):
        raise PipelineDefinitionError(f"{mode!r} is not a mode; allowed: streaming, batch", f"{f}: mode")
    parallelism = _positive_int(data["parallelism"], f"{f}: parallelism") if "parallelism" in data else None
    max_par = _positive_int(data["max_parallelism"], f"{f}: max_parallelism") if "max_parallelism" in data else None
    batch_size = _positive_int(data["batch_size"], f"{f}: batch_size") if "batch_size" in data else None
    unimplemented = {k: data[k] for k in UNIMPLEMENTED_TOP_LEVEL if k in data}
    state_backend = _state_backend(data["state"], f"{f}: state") if "state" in data else None

    sections: dict[str, dict[str, Any]] = {}
    for section in ("sources", "transforms", "sinks"):
        body = data.get(section, {}) or {}
        if not isinstance(body, dict):
            raise PipelineDefinitionError(f"expected a map of node id to node, got {type(body).__name__}",
                                          f"{f}: {section}")
        sections[section] = body
    if not sections["sources"]:
        raise PipelineDefinitionError("a pipeline needs at least one source", f"{f}: sources")
    if not sections["sinks"]:
        raise PipelineDefinitionError("a pipeline needs at least one sink (print, file, blackhole)", f"{f}: sinks")

    count = sum(len(b) for b in sections.values())
    if count > limits.max_nodes:
        raise limits.exceeded("max_nodes", f"the pipeline has {count} nodes", f"{f}: sources, transforms, sinks")
    seen: dict[str, str] = {}
    for section, body in sections.items():
        for node_id in body:
            if not isinstance(node_id, str) or not node_id:
                raise PipelineDefinitionError(f"node ids must be non-empty strings, got {node_id!r}", f"{f}: {section}")
            if node_id in seen:
                raise PipelineDefinitionError(
                    f"duplicate id {node_id!r} (also in {seen[node_id]}); ids are unique across "
                    "sources, transforms and sinks", f"{f}: {section}.{node_id}")
            seen[node_id] = section

    sources = []
    for node_id, body in sections["sources"].items():
        where = f"{f}: sources.{node_id}"
        kind, params = _connector_params("sources", node_id, body, where)
        par = _positive_int(params["parallelism"], f"{where}.parallelism") if "parallelism" in params else None
        clean = registry.validate_source(kind, params, where, base_dir)
        sources.append(SourceDef(node_id, kind, clean, par, where))
    transforms = [parse_transform(nid, body, f"{f}: transforms.{nid}", limits)
                  for nid, body in sections["transforms"].items()]
    sinks = []
    for node_id, body in sections["sinks"].items():
        where = f"{f}: sinks.{node_id}"
        kind, params = _connector_params("sinks", node_id, body, where)
        if "input" not in params:
            raise PipelineDefinitionError("missing key 'input' (the id of the node this sink writes)", where)
        inp = params["input"]
        if not isinstance(inp, str) or not inp:
            raise PipelineDefinitionError(f"expected a node id, got {inp!r}", f"{where}.input")
        par = _positive_int(params["parallelism"], f"{where}.parallelism") if "parallelism" in params else None
        partition = _partition(params["partition"], f"{where}.partition") if "partition" in params else None
        clean = registry.validate_sink(kind, params, where, base_dir)
        sinks.append(SinkDef(node_id, kind, inp, clean, par, partition, where))
    return PipelineDef(name=name, sources=tuple(sources), transforms=tuple(transforms), sinks=tuple(sinks),
                       parallelism=parallelism, max_parallelism=max_par, mode=mode, batch_size=batch_size,
                       base_dir=base_dir, source_file=source_file, unimplemented=unimplemented,
                       state_backend=state_backend)


def _state_backend(value: Any, where: str) -> str:
    """The backend named by ``state: {backend: heap | rocksdb}``."""
    if not isinstance(value, dict):
        raise PipelineDefinitionError(f"expected a map like {{backend: rocksdb}}, got {value!r}", where)
    for key in value:
        if key != "backend":
            raise _unknown(str(key), ("backend",), f"{where}.{key}")
    backend = value.get("backend")
    if backend not in STATE_BACKENDS:
        raise PipelineDefinitionError(f"{backend!r} is not a state backend; allowed: {', '.join(STATE_BACKENDS)}",
                                      f"{where}.backend")
    return str(backend)


def parse_yaml(text: str, source_file: str = "<pipeline>", limits: PipelineLimits = DEFAULT_LIMITS) -> Any:
    """The YAML document of ``text``, within ``limits``; errors name the file (and line).

    Raises :class:`PipelineDefinitionError` for every bad input, never another exception.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise limits.exceeded("max_bytes", f"the YAML document has {size} bytes", source_file)
    try:
        loader = _PipelineLoader(text, limits, source_file)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except PipelineDefinitionError:
        raise  # from the loader's own checks, already naming the file
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PipelineDefinitionError(f"malformed YAML{at}: {problem}; fix the syntax", source_file) from None
    except RecursionError:
        raise PipelineDefinitionError("the YAML document nests (or merges with <<) too deeply to load; "
                                      "flatten it", source_file) from None
    except (ValueError, OverflowError, TypeError) as exc:
        # a scalar PyYAML resolves but cannot build, e.g. an integer of more than 4300 digits
        raise PipelineDefinitionError(f"malformed YAML value: {exc}; quote it to make it a string",
                                      source_file) from None


def loads(text: str, source_file: str = "<pipeline>", base_dir: str = ".",
          limits: PipelineLimits = DEFAULT_LIMITS, variables: Mapping[str, str] | None = None) -> PipelineDef:
    """Parse YAML text into a :class:`PipelineDef`, within ``limits`` (see :mod:`streamlet.api.limits`).

    ``${NAME}`` references in values are replaced from ``variables`` (default: the process
    environment), see :mod:`streamlet.api.yaml.variables`.  Raises
    :class:`PipelineDefinitionError` for every bad input, never another exception.
    """
    from streamlet.api.yaml.variables import substitute

    data = parse_yaml(text, source_file, limits)
    data = substitute(data, os.environ if variables is None else variables, source_file)
    return parse_document(data, source_file, base_dir, limits)


def load(path: str | Path, limits: PipelineLimits = DEFAULT_LIMITS,
         variables: Mapping[str, str] | None = None) -> PipelineDef:
    """Read and parse a pipeline file; relative paths in it are resolved against its directory.

    ``variables`` as for :func:`loads` (the CLI passes the environment overridden by ``--set``).
    """
    p = Path(path)
    return loads(read_pipeline_text(p, limits), source_file=p.name, base_dir=str(p.resolve().parent),
                 limits=limits, variables=variables)


def read_pipeline_text(path: str | Path, limits: PipelineLimits = DEFAULT_LIMITS) -> str:
    """The text of a pipeline file; errors say the file is missing, too large or unreadable."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_bytes:
            raise limits.exceeded("max_bytes", f"the pipeline file has {size} bytes", p.name)
        return p.read_text()
    except FileNotFoundError:
        raise PipelineDefinitionError(f"pipeline file {str(p)!r} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError, OSError) as exc:
        raise PipelineDefinitionError(f"cannot read pipeline file {str(p)!r}: {exc}") from None
