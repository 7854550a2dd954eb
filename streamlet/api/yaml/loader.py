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
    JoinDef, KeyDef, PipelineDef, SinkDef, SourceDef, TimestampDef, TransformDef, WindowDef,
)
from streamlet.time.watermarks import WatermarkStrategy
from streamlet.api.expressions import compile_expression, looks_like_import_path
from streamlet.api.limits import DEFAULT_LIMITS, PipelineLimits
from streamlet.errors import PipelineDefinitionError
from streamlet.graph.settings import parse_checkpointing, parse_restart

TOP_LEVEL_KEYS = ("name", "parallelism", "max_parallelism", "mode", "batch_size", "checkpointing",
                  "state", "restart", "sources", "transforms", "sinks")
#: backends of the pipeline-level ``state: {backend: ...}``
STATE_BACKENDS = ("heap", "rocksdb")
SOURCE_COMMON = ("type", "parallelism", "timestamp", "watermark")
SINK_COMMON = ("type", "input", "parallelism", "partition")
TRANSFORM_KEYS = ("input", "key_by", "parallelism", "partition", "name", "window", "side_outputs") + OPERATIONS
NOT_YET: dict[str, str] = {}


try:  # libyaml's scanner and parser (C), with PyYAML's composer so compose_node below sees every node
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python scanner and parser
    _Base: type = yaml.SafeLoader
else:
    class _Base(yaml.composer.Composer, _CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):  # type: ignore[misc]
        """SafeLoader's composer, constructor and resolver on libyaml's events (8x faster to scan)."""

        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)


class _PipelineLoader(_Base):  # type: ignore[misc, valid-type]
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
    """``key_by:`` value: a field name, a list of field names, an expression or an import path,
    or a map of output field name to field or expression (``{day: "r['t'] // 86400000"}``)."""
    if isinstance(value, dict):
        if not value or not all(isinstance(k, str) and k.isidentifier() for k in value):
            raise PipelineDefinitionError(
                f"expected a map of output field name to a field or an expression, got {value!r}", where)
        parts = []
        for name, item in value.items():
            if isinstance(item, str) and item.isidentifier():
                parts.append(f"r[{item!r}]")
                continue
            fn = compile_expression(item, f"{where}.{name}", limits=limits)
            if fn.path is not None:
                raise PipelineDefinitionError(
                    "a named key part is a field or an expression over r; call the function in an expression",
                    f"{where}.{name}")
            parts.append(f"({fn.expr})")
        expr = parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"
        return KeyDef(function=FunctionDef(expr=expr), names=tuple(value))
    if isinstance(value, list):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise PipelineDefinitionError(f"expected a non-empty list of field names, got {value!r}", where)
        return KeyDef(fields=tuple(value))
    if isinstance(value, str) and value.isidentifier():
        return KeyDef(fields=(value,))
    return KeyDef(function=compile_expression(value, where, limits=limits))


def parse_aggregates(value: Any, where: str, limits: PipelineLimits = DEFAULT_LIMITS) -> tuple[AggregateDef, ...]:
    """``aggregate: {name: count | {func: field, where: EXPR}}``; ``func`` may be an import path.

    ``count`` takes any value (``{count: "*"}``); a user aggregate without a field gets the record.
    """
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
        if isinstance(spec, str) and looks_like_import_path(spec):
            out.append(AggregateDef(name, spec))
            continue
        if isinstance(spec, str):
            raise PipelineDefinitionError(
                f"{spec!r} needs a field: write {{{spec}: FIELD}}; only count and user aggregates "
                "(package.module:Class) stand alone", w)
        if not isinstance(spec, dict) or not spec:
            raise PipelineDefinitionError(
                f"expected count or a map {{function: field}} (with an optional where: EXPR), got {spec!r}", w)
        spec = dict(spec)
        cond = None
        if "where" in spec:
            cond = compile_expression(spec.pop("where"), f"{w}.where", limits=limits)
            if cond.path is not None:
                raise PipelineDefinitionError("where: takes an expression over r; call the function in it",
                                              f"{w}.where")
        if len(spec) != 1:
            raise PipelineDefinitionError(
                f"expected a one-entry map {{function: field}} (and an optional where), got {sorted(spec)!r}", w)
        func, fld = next(iter(spec.items()))
        user = isinstance(func, str) and looks_like_import_path(func)
        if func not in AGGREGATE_FUNCTIONS and not user:
            raise PipelineDefinitionError(
                f"unknown aggregate {func!r}; {_did_you_mean(str(func), AGGREGATE_FUNCTIONS)}"
                f"allowed: {', '.join(AGGREGATE_FUNCTIONS)}, or a user aggregate package.module:Class", w)
        if func == "count":
            out.append(AggregateDef(name, "count", None, cond.expr if cond else None))
            continue
        if not isinstance(fld, str) or not fld:
            raise PipelineDefinitionError(f"expected a field name for {func}, got {fld!r}", w)
        out.append(AggregateDef(name, func, fld, cond.expr if cond else None))
    return tuple(out)


WINDOW_KEYS = {
    "tumbling": ("type", "size", "offset", "time", "allowed_lateness", "late_output"),
    "sliding": ("type", "size", "slide", "offset", "time", "allowed_lateness", "late_output"),
    "session": ("type", "gap", "time", "allowed_lateness", "late_output"),
    "global": ("type", "count"),
}


def parse_window(value: Any, where: str) -> WindowDef:
    """``window: {type: tumbling|sliding|session|global, ...}`` (see docs/yaml.md)."""
    from streamlet.time.durations import duration_ms

    if not isinstance(value, dict) or "type" not in value:
        raise PipelineDefinitionError(
            "expected a map with a type, e.g. {type: tumbling, size: 10s}; types: "
            f"{', '.join(WINDOW_KEYS)}", where)
    kind = value["type"]
    if kind not in WINDOW_KEYS:
        raise PipelineDefinitionError(
            f"unknown window type {kind!r}; {_did_you_mean(str(kind), tuple(WINDOW_KEYS))}"
            f"allowed: {', '.join(WINDOW_KEYS)}", f"{where}.type")
    allowed = WINDOW_KEYS[kind]
    for key in value:
        if key not in allowed:
            raise PipelineDefinitionError(
                f"unknown key {key!r} for a {kind} window; {_did_you_mean(str(key), allowed)}"
                f"allowed keys: {', '.join(allowed)}", f"{where}.{key}")

    def need(key: str) -> int:
        if key not in value:
            raise PipelineDefinitionError(f"a {kind} window needs {key}, e.g. {key}: 10s", where)
        return duration_ms(value[key], f"{where}.{key}", allow_zero=False)

    time = value.get("time", "event")
    if time not in ("event", "processing"):
        raise PipelineDefinitionError(f"{time!r} is not a time; allowed: event, processing", f"{where}.time")
    lateness = duration_ms(value.get("allowed_lateness", 0), f"{where}.allowed_lateness")
    late_output = value.get("late_output")
    if late_output is not None and (not isinstance(late_output, str) or not late_output):
        raise PipelineDefinitionError(f"expected a name for the side output of late records, got {late_output!r}",
                                      f"{where}.late_output")
    if time == "processing" and (lateness or late_output):
        raise PipelineDefinitionError("processing-time windows have no late records; remove "
                                      "allowed_lateness and late_output", where)
    if kind == "tumbling":
        size = need("size")
        return WindowDef(kind, size_ms=size, offset_ms=duration_ms(value.get("offset", 0), f"{where}.offset"),
                         time=time, allowed_lateness_ms=lateness, late_output=late_output)
    if kind == "sliding":
        size, slide = need("size"), need("slide")
        if slide > size:
            raise PipelineDefinitionError(f"slide {value['slide']!r} is longer than size {value['size']!r}: "
                                          "records between windows would be lost; use slide <= size", where)
        return WindowDef(kind, size_ms=size, slide_ms=slide,
                         offset_ms=duration_ms(value.get("offset", 0), f"{where}.offset"),
                         time=time, allowed_lateness_ms=lateness, late_output=late_output)
    if kind == "session":
        return WindowDef(kind, gap_ms=need("gap"), time=time, allowed_lateness_ms=lateness, late_output=late_output)
    count = value.get("count")
    return WindowDef(kind, count=_positive_int(count, f"{where}.count"))


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


def parse_transform(node_id: str, body: Any, where: str, limits: PipelineLimits = DEFAULT_LIMITS,
                    base_dir: str = ".") -> TransformDef:
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
    if "window" in body and "aggregate" not in body:
        raise PipelineDefinitionError("a window needs aggregate: (what to compute per window), e.g. "
                                      "aggregate: {n: count}", f"{where}.window")
    key = parse_key(body["key_by"], f"{where}.key_by", limits) if "key_by" in body else None
    if not ops and key is None:
        raise PipelineDefinitionError(
            f"no operation; give one of {', '.join(OPERATIONS)} or key_by", where)
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
    if "side_outputs" in body and op != "process":
        raise PipelineDefinitionError("side_outputs: belongs to a process node (a window names its late_output)",
                                      f"{where}.side_outputs")
    if op == "join" and isinstance(body["join"], dict) and body["join"].get("type") != "lookup":
        if "input" in body:
            raise PipelineDefinitionError("a join names its inputs in join: {left: a, right: b}; remove input",
                                          f"{where}.input")
        if key is not None:
            raise PipelineDefinitionError("a join keys its inputs with left_key and right_key; remove key_by",
                                          f"{where}.key_by")
        jdef = parse_join(body["join"], f"{where}.join", base_dir, limits)
        assert jdef.left is not None and jdef.right is not None
        return TransformDef(node_id, "join", (jdef.left, jdef.right), parallelism=parallelism, where=where,
                            join=jdef)
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
        window = parse_window(body["window"], f"{where}.window") if "window" in body else None
        return TransformDef(node_id, op, inputs, key=key,
                            aggregates=parse_aggregates(body["aggregate"], f"{where}.aggregate", limits),
                            parallelism=parallelism, partition=partition, where=where, window=window)

    if op == "reduce":
        return TransformDef(node_id, op, inputs, key=key,
                            function=compile_expression(body["reduce"], f"{where}.reduce", "reduce", limits),
                            parallelism=parallelism, partition=partition, where=where)
    if op == "process":
        fn = compile_expression(body["process"], f"{where}.process", limits=limits)
        if fn.path is None:
            raise PipelineDefinitionError("process: names a class, package.module:Class (with process_element, "
                                          "and optionally open, on_timer, close)", f"{where}.process")
        outputs = _names(body.get("side_outputs", []), f"{where}.side_outputs")
        return TransformDef(node_id, op, inputs, function=fn, key=key, parallelism=parallelism,
                            partition=partition, where=where, outputs=outputs)
    if op == "join":
        if key is not None:
            raise PipelineDefinitionError("a lookup join keys records with key: in join:; remove key_by",
                                          f"{where}.key_by")
        jdef = parse_join(body["join"], f"{where}.join", base_dir, limits)
        return TransformDef(node_id, op, inputs, parallelism=parallelism, partition=partition, where=where,
                            join=jdef)
    return TransformDef(node_id, "key_by", inputs, key=key, parallelism=parallelism,
                        partition=partition, where=where)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PipelineDefinitionError(f"expected a list of names, got {value!r}", where)
    if len(set(value)) != len(value):
        raise PipelineDefinitionError(f"names repeat in {value!r}", where)
    return tuple(value)


JOIN_KEYS = {
    "interval": ("type", "left", "right", "left_key", "right_key", "lower", "upper", "where", "select"),
    "window": ("type", "left", "right", "left_key", "right_key", "window", "where", "select"),
    "regular": ("type", "left", "right", "left_key", "right_key", "ttl", "where", "select"),
    "lookup": ("type", "path", "format", "header", "columns", "delimiter", "key", "lookup_key", "where", "select"),
}


def parse_join(value: Any, where: str, base_dir: str, limits: PipelineLimits = DEFAULT_LIMITS) -> JoinDef:
    """``join: {type: interval|window|regular|lookup, ...}`` (see docs/yaml.md)."""
    from streamlet.time.durations import duration_ms

    if not isinstance(value, dict) or "type" not in value:
        raise PipelineDefinitionError(
            f"expected a map with a type, e.g. {{type: regular, left: a, right: b, left_key: id, right_key: id}}; "
            f"types: {', '.join(JOIN_KEYS)}", where)
    kind = value["type"]
    if kind not in JOIN_KEYS:
        raise PipelineDefinitionError(f"unknown join type {kind!r}; {_did_you_mean(str(kind), tuple(JOIN_KEYS))}"
                                      f"allowed: {', '.join(JOIN_KEYS)}", f"{where}.type")
    allowed = JOIN_KEYS[kind]
    for key in value:
        if key not in allowed:
            raise PipelineDefinitionError(
                f"unknown key {key!r} for a {kind} join; {_did_you_mean(str(key), allowed)}"
                f"allowed keys: {', '.join(allowed)}", f"{where}.{key}")

    def expr(key: str, scope: str = "join") -> str | None:
        if key not in value:
            return None
        fn = compile_expression(value[key], f"{where}.{key}", scope, limits)
        if fn.path is not None:
            raise PipelineDefinitionError(f"{key}: takes an expression; call the function in it", f"{where}.{key}")
        return fn.expr

    def need(key: str) -> Any:
        if key not in value:
            raise PipelineDefinitionError(f"a {kind} join needs {key}", where)
        return value[key]

    if kind == "lookup":
        path = need("path")
        if not isinstance(path, str) or not path:
            raise PipelineDefinitionError(f"expected a file path, got {path!r}", f"{where}.path")
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = Path(base_dir) / resolved
        if not resolved.is_file():
            raise PipelineDefinitionError(f"lookup file {path!r} does not exist (looked for {str(resolved)!r}); "
                                          "relative paths are resolved against the pipeline file's directory",
                                          f"{where}.path")
        fmt = value.get("format", "jsonl" if resolved.suffix in (".jsonl", ".json", ".ndjson") else "csv")
        if fmt not in ("csv", "jsonl"):
            raise PipelineDefinitionError(f"{fmt!r} is not a lookup format; allowed: csv, jsonl", f"{where}.format")
        header = value.get("header", True)
        if not isinstance(header, bool):
            raise PipelineDefinitionError(f"expected true or false, got {header!r}", f"{where}.header")
        columns = _names(value.get("columns", []), f"{where}.columns")
        if fmt == "csv" and not header and not columns:
            raise PipelineDefinitionError("a csv file without a header needs columns: [name, ...]", where)
        delimiter = value.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise PipelineDefinitionError(f"expected one character, got {delimiter!r}", f"{where}.delimiter")
        lookup_key = value.get("lookup_key")
        if isinstance(lookup_key, str) and lookup_key.isidentifier():
            lk = f"r[{lookup_key!r}]"
        else:
            lk = expr("lookup_key", "record")
            if lk is None:
                raise PipelineDefinitionError("a lookup join needs lookup_key: the field (or an expression over "
                                              "the file's row r) matched against key", where)
        return JoinDef(kind, key=parse_key(need("key"), f"{where}.key", limits), path=str(resolved.resolve()),
                       format=fmt, header=header, columns=columns, delimiter=delimiter, lookup_key=lk,
                       where=expr("where"), select=expr("select"))
    left, right = need("left"), need("right")
    for side, v in (("left", left), ("right", right)):
        if not isinstance(v, str) or not v:
            raise PipelineDefinitionError(f"expected a node id, got {v!r}", f"{where}.{side}")
    lk = parse_key(need("left_key"), f"{where}.left_key", limits)
    rk = parse_key(need("right_key"), f"{where}.right_key", limits)
    common: dict[str, Any] = {"left": left, "right": right, "left_key": lk, "right_key": rk,
                              "where": expr("where"), "select": expr("select")}
    if kind == "interval":
        lower = duration_ms(need("lower"), f"{where}.lower", allow_negative=True)
        upper = duration_ms(need("upper"), f"{where}.upper", allow_negative=True)
        if lower > upper:
            raise PipelineDefinitionError(f"lower {value['lower']!r} is after upper {value['upper']!r}; "
                                          "use lower <= upper", where)
        return JoinDef(kind, lower_ms=lower, upper_ms=upper, **common)
    if kind == "window":
        w = parse_window(need("window"), f"{where}.window")
        if w.type not in ("tumbling", "sliding") or w.time != "event" or w.allowed_lateness_ms or w.late_output:
            raise PipelineDefinitionError("a window join takes an event-time tumbling or sliding window "
                                          "(no allowed_lateness or late_output)", f"{where}.window")
        return JoinDef(kind, window=w, **common)
    ttl = duration_ms(value.get("ttl", 0), f"{where}.ttl")
    return JoinDef(kind, ttl_ms=ttl, **common)


def parse_event_time(params: dict[str, Any], where: str,
                limits: PipelineLimits) -> tuple[TimestampDef | None, WatermarkStrategy | None]:
    """A source's ``timestamp:`` and ``watermark:`` (monotonous when only timestamp is given)."""
    if "timestamp" not in params:
        if "watermark" in params:
            raise PipelineDefinitionError("a watermark needs event time: add timestamp: FIELD (epoch ms or "
                                          "ISO-8601) or an expression over r", f"{where}.watermark")
        return None, None
    value = params["timestamp"]
    if isinstance(value, str) and value.isidentifier():
        ts = TimestampDef(field=value)
    else:
        ts = TimestampDef(function=compile_expression(value, f"{where}.timestamp", limits=limits))
    wm = WatermarkStrategy.parse(params.get("watermark", "monotonous"), f"{where}.watermark")
    return ts, wm


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
    checkpointing = parse_checkpointing(data["checkpointing"], f"{f}: checkpointing") if "checkpointing" in data else None
    restart = parse_restart(data["restart"], f"{f}: restart") if "restart" in data else None
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
        ts, wm = parse_event_time(params, where, limits)
        clean = registry.validate_source(kind, {k: v for k, v in params.items() if k not in ("timestamp", "watermark")},
                                         where, base_dir)
        sources.append(SourceDef(node_id, kind, clean, par, where, ts, wm))
    transforms = [parse_transform(nid, body, f"{f}: transforms.{nid}", limits, base_dir)
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
                       base_dir=base_dir, source_file=source_file, state_backend=state_backend,
                       checkpointing=checkpointing, restart=restart)


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
    except UnicodeEncodeError as exc:  # libyaml reads UTF-8: a lone surrogate cannot be encoded
        raise PipelineDefinitionError(f"unacceptable character #x{ord(exc.object[exc.start]):04x} at position "
                                      f"{exc.start}: not valid Unicode; remove it", source_file) from None
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
