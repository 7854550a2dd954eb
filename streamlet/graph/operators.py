"""Typed operator specs: what a JobVertex's operator chain is made of.

Pure data with a JSON round trip (specs travel in the JobGraph from the client to the JobManager
and, inside task deployment descriptors, to TaskManagers).  Each spec class names the operator
class that runs it as an import string (``OPERATOR``), resolved only on the TaskManager, so this
package stays free of runtime code.  Adding an operator kind (a window, a join, a process
function) is one spec class decorated with :func:`op_spec` plus one operator class::

    @op_spec
    @dataclass(frozen=True)
    class DedupSpec(OpSpec):
        KIND: ClassVar[str] = "dedup"
        OPERATOR: ClassVar[str] = "mypkg.ops:DedupOperator"
        key: KeySpec = KeySpec()

Consecutive specs whose class sets ``FUSABLE`` (map, filter, flat_map) are compiled together
into one function per batch by ``OPERATOR`` of the first of them.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import functools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, TypeVar

#: kind -> spec class (filled by :func:`op_spec`)
SPECS: dict[str, type[OpSpec]] = {}

S = TypeVar("S", bound="type[OpSpec]")


class SpecError(ValueError):
    """A spec's JSON form is malformed (unknown kind, missing or extra fields)."""


def op_spec(cls: S) -> S:
    """Register a spec class under its ``KIND`` (a class decorator)."""
    kind = cls.KIND
    if not kind or kind in SPECS and SPECS[kind] is not cls:
        raise ValueError(f"operator kind {kind!r} is empty or registered twice")
    SPECS[kind] = cls
    return cls


@dataclass(frozen=True)
class KeySpec:
    """How a record's key is extracted: field names, or an expression / import path over ``r``."""

    fields: tuple[str, ...] = ()
    expr: str | None = None
    path: str | None = None
    #: output field names of a computed key (``key_by: {day: EXPR}``); a tuple key for several
    names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.fields:
            return {"fields": list(self.fields)}
        out: dict[str, Any] = {"expr": self.expr, "path": self.path}
        if self.names:
            out["names"] = list(self.names)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeySpec:
        return cls(tuple(data.get("fields") or ()), data.get("expr"), data.get("path"), tuple(data.get("names") or ()))

    @property
    def output_fields(self) -> list[str]:
        """Field names a keyed result row carries its key under (``key`` for an unnamed expression key)."""
        return list(self.fields or self.names or ["key"])

    def label(self) -> str:
        return ",".join(self.fields) if self.fields else (self.expr or self.path or "")


@dataclass(frozen=True)
class OpSpec:
    """Base of every operator spec: ``id`` is the pipeline node id it implements."""

    KIND: ClassVar[str] = ""
    #: ``package.module:Class`` of the operator that runs this spec (None: the task's reader/writer)
    OPERATOR: ClassVar[str | None] = None
    #: consecutive fusable specs are compiled into one function per batch
    FUSABLE: ClassVar[bool] = False
    #: given JSON values in, this operator emits only JSON values (no user code shapes its output);
    #: edges after a chain of such operators skip the JSON check of local channels
    JSON_OUTPUT: ClassVar[bool] = False

    id: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``{"kind": KIND, <fields>}`` (nested specs by their own ``to_json``)."""
        out: dict[str, Any] = {"kind": self.KIND}
        for f in dataclasses.fields(self):
            out[f.name] = _to_json(getattr(self, f.name))
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> OpSpec:
        """The spec a ``to_json`` dict encodes; raises :class:`SpecError` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise SpecError(f"an operator spec must be a JSON object, got {type(data).__name__}")
        cls = SPECS.get(data.get("kind"))  # type: ignore[arg-type]
        if cls is None:
            raise SpecError(f"unknown operator kind {data.get('kind')!r}; known: {', '.join(sorted(SPECS))}")
        kwargs: dict[str, Any] = {}
        names = {f.name: f for f in dataclasses.fields(cls)}
        extra = set(data) - set(names) - {"kind"}
        if extra:
            raise SpecError(f"operator {data.get('id')!r} ({cls.KIND}) has unknown fields {sorted(extra)}")
        for name, f in names.items():
            if name in data:
                kwargs[name] = _from_json(f.type, data[name])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise SpecError(f"operator {data.get('id')!r} ({cls.KIND}): {exc}") from None

    def label(self) -> str:
        """One line for ``streamlet validate``."""
        return f"{self.KIND} {self.id}"

    def fields_read(self, input_index: int = 0) -> tuple[str, ...] | None:
        """The record fields this operator reads from input ``input_index``, when it provably reads
        no others (dict records; a record without one of them fails here as before); None: it may
        read the whole record.  An edge into this operator may then carry only these fields."""
        return None

    def leaves_input(self) -> bool:
        """True when this operator provably neither changes a record it is given (JSON values) nor
        keeps one after the batch: then the records it reads may be shared with other readers."""
        return False


def _to_json(value: Any) -> Any:
    if isinstance(value, KeySpec):
        return value.to_json()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(annotation: Any, value: Any) -> Any:
    text = str(annotation)
    if "KeySpec" in text and isinstance(value, Mapping):
        return KeySpec.from_json(value)
    if text.startswith("tuple") and isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    if text.startswith("dict") and isinstance(value, Mapping):
        return dict(value)
    return value


@op_spec
@dataclass(frozen=True)
class SourceSpec(OpSpec):
    """A source node: ``type`` names the connector (registry), ``params`` its validated keys."""

    KIND: ClassVar[str] = "source"
    JSON_OUTPUT: ClassVar[bool] = True
    type: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    #: event time: ``{"field": name}`` or ``{"expr": ..., "path": ...}`` (streamlet.time.timestamps)
    timestamp: dict[str, Any] | None = None
    #: watermark strategy (``WatermarkStrategy.to_spec()``); None with a timestamp: monotonous
    watermark: dict[str, Any] | None = None

    def label(self) -> str:
        return f"source {self.id} ({self.type})"


@op_spec
@dataclass(frozen=True)
class SinkSpec(OpSpec):
    """A sink node: ``type`` names the connector (registry), ``params`` its validated keys."""

    KIND: ClassVar[str] = "sink"
    type: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        return f"sink {self.id} ({self.type})"


@dataclass(frozen=True)
class _FunctionSpec(OpSpec):
    """A stateless stage running a user function (an expression over ``r`` or an import path)."""

    OPERATOR: ClassVar[str | None] = "streamlet.operators.basic:FusedOperator"
    FUSABLE: ClassVar[bool] = True
    expr: str | None = None
    path: str | None = None

    def label(self) -> str:
        return f"{self.KIND} {self.id}: {self.expr or self.path}"

    def leaves_input(self) -> bool:
        # an expression (not an import path) that calls no method that changes a dict, list or set
        return self.expr is not None and expression_leaves_input(self.expr)


def parse_expression(expr: str) -> ast.expr | None:
    """The syntax tree of an inline expression (its body), for the analyses that prove what it
    does (:func:`expression_leaves_input`, :func:`expression_gives_json`, the fused flat_map's
    shapes); None when it does not parse, which each of them treats as proving nothing."""
    try:
        return ast.parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


#: what changes a dict, a list or a set in place (the mutable values a JSON record holds)
_MUTATORS = frozenset(name for t in (dict, list, set) for name in dir(t)
                      if not name.startswith("_") and name not in dir(frozenset) and name not in dir(tuple)
                      and name not in ("copy", "get", "keys", "values", "items", "fromkeys"))
#: attributes an expression may read without changing what it reads: the methods of immutable
#: values (str, bytes, numbers, dates, regular expression matches) and of the modules expressions
#: see (streamlet.udf.EXPRESSION_GLOBALS), and the reading methods of dict, list and set
_READERS = frozenset(
    name for t in (str, bytes, int, float, complex, bool, frozenset, tuple, math, re, json, datetime,
                   datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone,
                   re.Pattern, re.Match, dict, list, set)
    for name in dir(t) if not name.startswith("_")) - _MUTATORS


@functools.lru_cache(maxsize=4096)
def expression_leaves_input(expr: str) -> bool:
    """Whether the inline expression ``expr`` provably changes none of the JSON values it reads.

    An expression has no statements, assignments (``:=`` is refused) or attribute access by name
    (streamlet.api.expressions), so the only way it can change its record is a method that changes
    a dict, a list or a set (``r.update(...)``, ``r['xs'].append(...)``, ``dict.pop(r, 'k')``):
    every attribute it names must be one of :data:`_READERS`.  A name it does not know makes it
    False (an answer that is only ever safe).  Or a comprehension whose ``for`` target is not a
    name: ``[r for r['seen'] in [1]]`` stores into r, so every target must bind names only."""
    tree = parse_expression(expr)
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr not in _READERS:
            return False
        # a subscript or attribute stored into (a comprehension target) changes what it names
        if isinstance(node, (ast.Subscript, ast.Attribute)) and not isinstance(node.ctx, ast.Load):
            return False
    return True


@op_spec
@dataclass(frozen=True)
class MapSpec(_FunctionSpec):
    """``map:``: one record out per record in."""

    KIND: ClassVar[str] = "map"

    @property
    def JSON_OUTPUT(self) -> bool:  # noqa: N802 - OpSpec's flag, per spec here
        """JSON out for an expression that provably builds a JSON value from JSON values."""
        return self.expr is not None and expression_gives_json(self.expr, False)


@op_spec
@dataclass(frozen=True)
class FilterSpec(_FunctionSpec):
    """``filter:``: the records for which the function is truthy."""

    KIND: ClassVar[str] = "filter"
    JSON_OUTPUT: ClassVar[bool] = True


@op_spec
@dataclass(frozen=True)
class FlatMapSpec(_FunctionSpec):
    """``flat_map:``: every element of the iterable the function returns."""

    KIND: ClassVar[str] = "flat_map"

    @property
    def JSON_OUTPUT(self) -> bool:  # noqa: N802 - OpSpec's flag, per spec here
        """JSON out for an expression that provably gives JSON values to iterate over."""
        return self.expr is not None and expression_gives_json(self.expr, True)


@op_spec
@dataclass(frozen=True)
class AggregateSpec(OpSpec):
    """``key_by`` + ``aggregate:``: running (streaming) or final (batch) keyed aggregates.

    ``aggregates`` lists ``(output name, function, field or None, where or None)``
    (:mod:`streamlet.operators.accumulators`).
    """

    KIND: ClassVar[str] = "aggregate"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.aggregate:KeyedAggregateOperator"
    key: KeySpec = KeySpec()
    #: ``(output name, function, field or None, where expression or None)``
    aggregates: tuple[tuple[Any, ...], ...] = ()

    @property
    def JSON_OUTPUT(self) -> bool:  # noqa: N802 - OpSpec's flag, per spec here
        """JSON out when no user aggregate (whose result is the user's) takes part."""
        return _builtin_aggregates(self.aggregates)

    def label(self) -> str:
        aggs = ", ".join(f"{a[0]}={a[1]}({a[2] or ''})" for a in self.aggregates)
        return f"aggregate {self.id}: {aggs}"

    def fields_read(self, input_index: int = 0) -> tuple[str, ...] | None:
        return _keyed_fields(self.key, self.aggregates)


@op_spec
@dataclass(frozen=True)
class ReduceSpec(OpSpec):
    """``key_by`` + ``reduce:`` over ``a`` (the accumulated record) and ``b`` (the new one)."""

    KIND: ClassVar[str] = "reduce"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.aggregate:KeyedReduceOperator"
    key: KeySpec = KeySpec()
    expr: str | None = None
    path: str | None = None

    def label(self) -> str:
        return f"reduce {self.id}: {self.expr or self.path}"


def _keyed_fields(key: KeySpec | None, aggregates: tuple[tuple[Any, ...], ...]) -> tuple[str, ...] | None:
    """The fields a keyed aggregation reads: its key fields and aggregated fields; None when a key
    expression, a ``where`` filter, a user aggregate or a whole-record aggregate (``collect``
    without a field) may read any field."""
    if key is None or not key.fields:
        return None
    out = list(key.fields)
    for agg in aggregates:
        func, fld = agg[1], agg[2]
        if (len(agg) > 3 and agg[3]) or ":" in func or (fld is None and func != "count"):
            return None
        if fld is not None and fld not in out:
            out.append(fld)
    return tuple(out)


def _builtin_aggregates(aggregates: tuple[tuple[Any, ...], ...]) -> bool:
    """Whether every aggregate is a built-in function (a user aggregate names ``module:Class``)."""
    return all(":" not in a[1] for a in aggregates)


@op_spec
@dataclass(frozen=True)
class WindowSpec(OpSpec):
    """``window:`` + ``aggregate:``: keyed (or, without a key, parallelism-1) window aggregates.

    ``window`` is tumbling (``size_ms``, ``offset_ms``), sliding (``size_ms``, ``slide_ms``,
    ``offset_ms``), session (``gap_ms``) or global (``count``); ``time`` is ``event`` or
    ``processing``.  ``aggregates`` lists ``(name, function, field or None, where or None)``;
    late records beyond ``allowed_lateness_ms`` go to the side output ``late_output`` (or are
    dropped).  See :mod:`streamlet.operators.window`.
    """

    KIND: ClassVar[str] = "window"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.window:WindowOperator"

    @property
    def JSON_OUTPUT(self) -> bool:  # noqa: N802 - OpSpec's flag, per spec here
        """JSON out when no user aggregate (whose result is the user's) takes part."""
        return _builtin_aggregates(self.aggregates)

    key: KeySpec | None = None
    window: str = "tumbling"
    size_ms: int = 0
    slide_ms: int = 0
    offset_ms: int = 0
    gap_ms: int = 0
    count: int = 0
    time: str = "event"
    allowed_lateness_ms: int = 0
    late_output: str | None = None
    aggregates: tuple[tuple[Any, ...], ...] = ()

    def label(self) -> str:
        if self.window == "tumbling":
            shape = f"tumbling {self.size_ms}ms"
        elif self.window == "sliding":
            shape = f"sliding {self.size_ms}ms every {self.slide_ms}ms"
        elif self.window == "session":
            shape = f"session gap {self.gap_ms}ms"
        else:
            shape = f"global every {self.count}"
        aggs = ", ".join(f"{a[0]}={a[1]}({a[2] or ''})" for a in self.aggregates)
        key = f" by {self.key.label()}" if self.key is not None else ""
        return f"window {self.id}: {shape} ({self.time} time){key}: {aggs}"

    def fields_read(self, input_index: int = 0) -> tuple[str, ...] | None:
        # late records leave whole through the side output
        return None if self.late_output else _keyed_fields(self.key, self.aggregates)


@op_spec
@dataclass(frozen=True)
class ProcessSpec(OpSpec):
    """``key_by`` + ``process: package.module:Class``: a keyed process function.

    ``side_outputs`` are the tags the function may send to with ``ctx.output(tag, record)``.
    See :mod:`streamlet.operators.process`.
    """

    KIND: ClassVar[str] = "process"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.process:KeyedProcessOperator"
    key: KeySpec = KeySpec()
    path: str = ""
    side_outputs: tuple[str, ...] = ()

    def label(self) -> str:
        return f"process {self.id}: {self.path} by {self.key.label()}"


@dataclass(frozen=True)
class _JoinSpec(OpSpec):
    """Fields of every two-input join: the join keys of each side, ``where`` and ``select``
    (expressions over ``l`` and ``r``; ``select`` None is ``{**l, **r}``)."""

    left_key: KeySpec = KeySpec()
    right_key: KeySpec = KeySpec()
    where: str | None = None
    select: str | None = None

    def label(self) -> str:
        return f"{self.KIND} {self.id}: {self.left_key.label()} = {self.right_key.label()}"


@op_spec
@dataclass(frozen=True)
class IntervalJoinSpec(_JoinSpec):
    """``join: {type: interval}``: pairs with ``l.ts + lower <= r.ts <= l.ts + upper``."""

    KIND: ClassVar[str] = "interval_join"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.join:IntervalJoinOperator"
    lower_ms: int = 0
    upper_ms: int = 0


@op_spec
@dataclass(frozen=True)
class WindowJoinSpec(_JoinSpec):
    """``join: {type: window}``: pairs in the same tumbling or sliding window."""

    KIND: ClassVar[str] = "window_join"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.join:WindowJoinOperator"
    window: str = "tumbling"
    size_ms: int = 0
    slide_ms: int = 0
    offset_ms: int = 0


@op_spec
@dataclass(frozen=True)
class RegularJoinSpec(_JoinSpec):
    """``join: {type: regular}``: unbounded inner join; ``ttl_ms`` (0: none) expires buffered rows."""

    KIND: ClassVar[str] = "regular_join"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.join:RegularJoinOperator"
    ttl_ms: int = 0


@op_spec
@dataclass(frozen=True)
class LookupJoinSpec(OpSpec):
    """``join: {type: lookup}``: one input joined with the rows of a static file.

    ``key`` is the stream record's key; ``lookup_key`` an expression over a file row ``r``;
    ``path`` is absolute (resolved by the planner); ``format`` csv or jsonl (csv rows are maps of
    strings named by the header line, or by ``columns`` when ``header`` is false).
    """

    KIND: ClassVar[str] = "lookup_join"
    OPERATOR: ClassVar[str | None] = "streamlet.operators.join:LookupJoinOperator"
    key: KeySpec = KeySpec()
    path: str = ""
    format: str = "csv"
    header: bool = True
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    lookup_key: str = "r"
    where: str | None = None
    select: str | None = None

    def label(self) -> str:
        return f"lookup_join {self.id}: {self.key.label()} in {self.path}"


#: a code point JSON text cannot hold (orjson, and so a remote channel, refuses it)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _format_spec_safe(spec: ast.AST) -> bool:
    """An f-string format spec that cannot turn a number into a code point (``:c``)."""
    return isinstance(spec, ast.JoinedStr) and all(
        isinstance(v, ast.Constant) and "c" not in str(v.value) for v in spec.values)


#: builtins whose result is a JSON scalar whatever JSON values they are given (not chr: a lone
#: surrogate is a str JSON cannot hold)
_SCALAR_BUILTINS = frozenset({"str", "repr", "ascii", "format", "hex", "oct", "bin", "int", "float", "len",
                              "ord", "hash", "bool", "isinstance", "callable", "hasattr", "all", "any", "abs",
                              "round", "pow", "sum"})
#: str methods whose result is a str, a bool, an int or a list of str
_STR_METHODS = frozenset({"lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize", "casefold",
                          "swapcase", "replace", "zfill", "center", "ljust", "rjust", "split", "rsplit",
                          "splitlines", "join", "format", "startswith", "endswith", "find", "rfind", "count",
                          "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "isnumeric",
                          "isdecimal"})


@functools.lru_cache(maxsize=4096)
def expression_gives_json(expr: str, iterable: bool) -> bool:
    """Whether the inline expression ``expr`` (over a JSON record ``r``) provably gives a JSON value
    (``iterable``: an iterable of JSON values, as a ``flat_map`` returns), so its output needs no
    JSON round trip on a local channel: what a remote channel delivers is the same value.

    Proven from the expression's shape: subscripts of ``r``, str/number/bool/None literals, list
    displays, dict displays with literal str keys or ``**`` of a mapping, comprehensions over JSON
    values, conditionals, comparisons, arithmetic, f-strings and the builtins and str methods whose
    results are JSON scalars.  Tuples, sets, ``dict(...)`` (it takes pairs with keys of any type),
    ``.items()`` and calls of import paths are not.  As for aggregates, arithmetic is not checked
    for values JSON cannot hold (an integer beyond 64 bits, an infinite float): such a value fails
    where it is encoded (a remote channel, a sink)."""
    tree = parse_expression(expr)
    if tree is None:
        return False
    try:
        return ((_json_iterable if iterable else _json_value)(tree, frozenset({"r"}))
                and _refs(tree, {"r": ("r",)}) is not None)
    except RecursionError:
        return False


#: a part of the input an output value may hold by reference: a path of subscripts from a name
#: (``("r", "tags")``); ``"*"`` stands for any key (a computed subscript, a slice, an element)
_Path = tuple[Any, ...]


def _overlap(a: _Path, b: _Path) -> bool:
    # one holds the other (a prefix, keys equal or either "*")
    return all(x == y or x == "*" or y == "*" for x, y in zip(a, b))


def _disjoint(*parts: list[_Path] | None) -> list[_Path] | None:
    """The paths of values built of ``parts`` when no two parts may hold one value (else None)."""
    out: list[_Path] = []
    for part in parts:
        if part is None or any(_overlap(p, q) for p in part for q in out):
            return None
        out += part
    return out


def _alternatives(*parts: list[_Path] | None) -> list[_Path] | None:
    """The paths of a value that is one of ``parts`` (a conditional, ``or``, ``max``)."""
    return None if any(p is None for p in parts) else [q for p in parts for q in p]  # type: ignore[union-attr]


def _refs(node: ast.AST, env: dict[str, _Path]) -> list[_Path] | None:
    """The input values (paths from the names of ``env``) that the value of ``node`` may hold by
    reference, or None when it may hold one of them twice (``[r, r]``, ``{**r, 'a': r['a']}``, an
    element built per iteration around an outer value, a list repeated by ``*``): a JSON round trip
    would give each place its own list or map, so a consumer changing one would not change the
    other.  Called on what :func:`_json_value` accepted; values it makes afresh hold no reference."""
    if isinstance(node, ast.Name):
        return [env[node.id]] if node.id in env else []
    if isinstance(node, ast.Subscript):
        inner = _refs(node.value, env)
        if inner is None or len(inner) != 1:
            return inner
        key = node.slice.value if isinstance(node.slice, ast.Constant) and type(node.slice.value) in (str, int) else "*"
        return [inner[0] + (key,)]
    if isinstance(node, ast.List):
        return _disjoint(*(_refs(e.value if isinstance(e, ast.Starred) else e, env) for e in node.elts))
    if isinstance(node, ast.Dict):
        return _disjoint(*(_refs(v, env) for v in node.values))
    if isinstance(node, ast.IfExp):
        return _alternatives(_refs(node.body, env), _refs(node.orelse, env))
    if isinstance(node, ast.BoolOp):
        return _alternatives(*(_refs(v, env) for v in node.values))
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add) and any(isinstance(x, ast.Constant) and type(x.value) in (int, float)
                                                for x in (node.left, node.right)):
            return []  # a number
        if isinstance(node.op, (ast.Add, ast.BitOr)):  # lists concatenated, maps merged
            return _disjoint(_refs(node.left, env), _refs(node.right, env))
        if isinstance(node.op, ast.Mult):  # a number, or a list repeated (its elements held n times)
            if any(isinstance(x, ast.Constant) and type(x.value) in (str, float) for x in (node.left, node.right)):
                return []  # a str or a number
            if _refs(node.left, env) == _refs(node.right, env) == [] and not any(
                    isinstance(n, (ast.List, ast.ListComp, ast.Dict)) for n in ast.walk(node)):
                return []  # numbers (no list, new or of the input, to repeat)
            return None
        return []  # numbers (or a str of %): nothing held
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        inner = dict(env)
        last: set[str] = set()
        for g in node.generators:
            paths = _refs(g.iter, inner)
            if paths is None or len(paths) > 1:
                return None
            root = paths[0] + ("*",) if paths else ("<new>", id(g))
            last = set()
            targets = [(g.target, root)]
            while targets:
                t, path = targets.pop()
                if isinstance(t, ast.Name):
                    inner[t.id] = path
                    last.add(t.id)
                elif isinstance(t, (ast.Tuple, ast.List)):
                    targets += [(e, path + ("*" if isinstance(e, ast.Starred) else i,)) for i, e in enumerate(t.elts)]
                elif isinstance(t, ast.Starred):
                    targets.append((t.value, path))
                else:
                    return None
        elt = _refs(node.elt, inner)
        # only the innermost for's names take a new value per element: any other value it holds,
        # it holds in every element
        if elt is None or any(not any(p[:len(inner[n])] == inner[n] for n in last) for p in elt):
            return None
        return [p for p in elt if p[0] != "<new>"]
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("min", "max"):
            return _alternatives(*(_refs(a, env) for a in node.args))
        if isinstance(f, ast.Name) and f.id in ("sum", "sorted", "list"):
            return _disjoint(*(_refs(a, env) for a in node.args))
        if isinstance(f, ast.Attribute) and f.attr == "get":
            inner = _refs(f.value, env)
            if inner is None:
                return None
            key = node.args[0].value if isinstance(node.args[0], ast.Constant) else "*"
            own = [inner[0] + (key,)] if len(inner) == 1 else inner
            return _alternatives(own, *(_refs(a, env) for a in node.args[1:]))
        return []  # scalars: str, numbers, booleans (or a list of new str)
    return []  # constants, comparisons, f-strings, not


def _json_value(node: ast.AST, env: frozenset[str]) -> bool:
    """``node`` evaluates to a JSON value when every name in ``env`` holds one."""
    if isinstance(node, ast.Name):
        return node.id in env
    if isinstance(node, ast.Constant):
        v = node.value
        return (v is None or type(v) in (int, bool) or (type(v) is float and math.isfinite(v))
                or (type(v) is str and not _SURROGATE.search(v)))
    if isinstance(node, ast.Subscript):  # an element or a slice of a JSON list, str or object
        return _json_value(node.value, env)
    if isinstance(node, ast.List):
        return all(_json_iterable(e.value, env) if isinstance(e, ast.Starred) else _json_value(e, env)
                   for e in node.elts)
    if isinstance(node, ast.Dict):
        return all((_json_value(v, env) if k is None  # ``**v``: a mapping (else it raises), so str keys
                    else isinstance(k, ast.Constant) and type(k.value) is str and _json_value(v, env))
                   for k, v in zip(node.keys, node.values))
    if isinstance(node, ast.IfExp):
        return _json_value(node.body, env) and _json_value(node.orelse, env)
    if isinstance(node, ast.BoolOp):
        return all(_json_value(v, env) for v in node.values)
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.JoinedStr):  # an f-string: a str, unless a spec makes a code point (:c)
        return all(_json_value(v, env) if isinstance(v, ast.Constant) else
                   v.format_spec is None or _format_spec_safe(v.format_spec) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.Not) or _json_value(node.operand, env)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and type(node.left.value) is str:
            # '%02d:%02d' % (...): a str (%c makes any code point, a lone surrogate too)
            return _json_value(node.left, env) and not re.search(r"%[^a-zA-Z%]*c", node.left.value)
        if isinstance(node.op, ast.Pow) and not _int_constant(node.right):
            return False  # (-4) ** 0.5 is a complex number
        return _json_value(node.left, env) and _json_value(node.right, env)
    if isinstance(node, ast.ListComp):
        inner = _comprehension_env(node.generators, env)
        return inner is not None and _json_value(node.elt, inner)
    if isinstance(node, ast.Call):
        f = node.func
        if any(isinstance(a, ast.Starred) for a in node.args) or node.keywords and not (
                isinstance(f, ast.Name) and f.id in ("min", "max", "sorted") and all(k.arg == "key" for k in node.keywords)):
            return False
        if isinstance(f, ast.Name):
            if f.id == "pow" and len(node.args) == 2 and not _int_constant(node.args[1]):
                return False  # pow(-4, 0.5) is a complex number
            if f.id == "format" and len(node.args) > 1 and not (
                    isinstance(node.args[1], ast.Constant) and type(node.args[1].value) is str
                    and "c" not in node.args[1].value):
                return False  # format(55296, 'c'): a lone surrogate, not UTF-8
            if f.id in _SCALAR_BUILTINS:
                return f.id not in ("sum", "abs", "round", "pow") or all(_json_value(a, env) for a in node.args)
            if f.id in ("min", "max") and len(node.args) == 1:
                return _json_iterable(node.args[0], env)
            if f.id in ("min", "max"):
                return all(_json_value(a, env) for a in node.args)
            if f.id in ("sorted", "list") and len(node.args) == 1:
                return _json_iterable(node.args[0], env)
            return False
        if isinstance(f, ast.Attribute):
            if f.attr in ("isoformat", "strftime"):  # only dates and times have them: a str
                return True
            if f.attr == "format" and not (isinstance(f.value, ast.Constant) and type(f.value.value) is str
                                           and not re.search(r":[^}]*c", f.value.value)):
                return False  # '{:c}'.format(55296): a lone surrogate
            if f.attr in _STR_METHODS:  # on a JSON str (a list's count and index: an int)
                return _json_value(f.value, env)
            if isinstance(f.value, ast.Name) and f.value.id == "math" and f.value.id not in env:
                return f.attr not in ("frexp", "modf")  # the others give numbers (or raise)
            if f.attr == "get" and _json_value(f.value, env):  # dict.get: a value or the default
                return len(node.args) == 1 or (len(node.args) == 2 and _json_value(node.args[1], env))
        return False
    return False


def _int_constant(node: ast.AST) -> bool:
    """``node`` is an int literal (``2``, ``-1``): a power with it is a number, never complex."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


def _json_iterable(node: ast.AST, env: frozenset[str]) -> bool:
    """``node`` evaluates to something whose elements are JSON values."""
    if isinstance(node, ast.GeneratorExp):
        inner = _comprehension_env(node.generators, env)
        return inner is not None and _json_value(node.elt, inner)
    # a JSON list (its elements), object (its keys: str) or str (its characters)
    return _json_value(node, env)


def _comprehension_env(generators: list[ast.comprehension], env: frozenset[str]) -> frozenset[str] | None:
    """``env`` with the names the ``for`` clauses bind to JSON values; None when one may not be."""
    for g in generators:
        if g.is_async or not _json_iterable(g.iter, env):
            return None
        # an element of a JSON iterable is JSON; unpacking a JSON list gives JSON values
        targets = [g.target]
        names = []
        while targets:
            t = targets.pop()
            if isinstance(t, ast.Name):
                names.append(t.id)
            elif isinstance(t, (ast.Tuple, ast.List)):
                targets.extend(t.elts)
            else:
                return None
        env = env | frozenset(names)
    return env
