"""Aggregate functions as generated code: the one home of ``count``, ``sum``, ... and user aggregates.

Keyed running aggregates (:mod:`streamlet.operators.aggregate`) and window aggregates
(:mod:`streamlet.operators.window`) describe their aggregates as
``(output name, function, field or None, where expression or None)`` and ask an
:class:`AggregateCode` for the source lines that create, update, merge and read accumulators.
Accumulators are JSON values (they live in keyed state and go into checkpoints): a scalar when
there is one single-slot aggregate, else a list of slots.

Functions (``V`` is the field's value, or the whole record when no field is given):

=================  ====================================  ==========================================
function           accumulator                           result
=================  ====================================  ==========================================
``count``          int                                   records counted
``sum``            the sum (None before a value)         the sum
``min``/``max``    the extreme value (None before one)   it
``avg``            [sum, count]                          ``sum / count`` (None with no value)
``first``/``last`` the first / last value (arrival)      it
``collect``        list of values                        the list
``count_distinct`` sorted list of distinct non-None      its length
                   values (they must be comparable)
``pkg.mod:Cls``    whatever ``Cls().create()`` returns   ``result(acc)``
=================  ====================================  ==========================================

A user aggregate class has ``create() -> acc``, ``add(acc, value) -> acc``,
``merge(acc, other) -> acc`` and ``result(acc) -> value``; its accumulator must be a JSON
value.  ``where`` (an expression over ``r``) is SQL's ``FILTER (WHERE ...)``: only records for
which it holds reach that aggregate (``count`` then counts them; the others start empty).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from streamlet.operators.codegen import CodeBuilder
from streamlet.udf import resolve_path

#: built-in aggregate functions (anything else must be an import path to a user aggregate)
BUILTIN_FUNCTIONS = ("count", "sum", "min", "max", "avg", "first", "last", "collect", "count_distinct")

Aggregate = Sequence[Any]  # (name, func, field | None, where | None)


@dataclass(frozen=True)
class _Fn:
    """Code templates of one function; ``{A0}``.. are its slots, ``{B0}``.. another's, ``{V}`` the value.

    ``empty``/``init`` are slot expressions; ``update``/``add``/``merge`` are statements; ``add``
    works from empty slots (filtered aggregates), ``init``/``update`` are the unfiltered fast path.
    """

    empty: tuple[str, ...]
    init: tuple[str, ...]
    update: tuple[str, ...]
    add: tuple[str, ...]
    merge: tuple[str, ...]
    result: str


_FNS: dict[str, _Fn] = {
    "count": _Fn(("0",), ("1",), ("{A0} += 1",), ("{A0} += 1",), ("{A0} += {B0}",), "{A0}"),
    "sum": _Fn(("None",), ("{V}",), ("{A0} += {V}",), ("{A0} = {V} if {A0} is None else {A0} + {V}",),
               ("if {A0} is None: {A0} = {B0}", "elif {B0} is not None: {A0} += {B0}"), "{A0}"),
    "min": _Fn(("None",), ("{V}",), ("if {V} < {A0}: {A0} = {V}",),
               ("if {A0} is None or {V} < {A0}: {A0} = {V}",),
               ("if {A0} is None or ({B0} is not None and {B0} < {A0}): {A0} = {B0}",), "{A0}"),
    "max": _Fn(("None",), ("{V}",), ("if {V} > {A0}: {A0} = {V}",),
               ("if {A0} is None or {V} > {A0}: {A0} = {V}",),
               ("if {A0} is None or ({B0} is not None and {B0} > {A0}): {A0} = {B0}",), "{A0}"),
    "avg": _Fn(("0", "0"), ("{V}", "1"), ("{A0} += {V}", "{A1} += 1"), ("{A0} += {V}", "{A1} += 1"),
               ("{A0} += {B0}", "{A1} += {B1}"), "({A0} / {A1} if {A1} else None)"),
    "first": _Fn(("None",), ("{V}",), (), ("if {A0} is None: {A0} = {V}",),
                 ("if {A0} is None: {A0} = {B0}",), "{A0}"),
    "last": _Fn(("None",), ("{V}",), ("{A0} = {V}",), ("{A0} = {V}",),
                ("if {B0} is not None: {A0} = {B0}",), "{A0}"),
    # the result is a copy: a row must not change when the accumulator grows afterwards
    "collect": _Fn(("[]",), ("[{V}]",), ("{A0}.append({V})",), ("{A0}.append({V})",),
                   ("{A0} = {A0} + {B0}",), "list({A0})"),
    "count_distinct": _Fn(("[]",), ("([] if {V} is None else [{V}])",), ("{_cd_add}({A0}, {V})",),
                          ("{_cd_add}({A0}, {V})",), ("{A0} = {_cd_merge}({A0}, {B0})",), "len({A0})"),
}


def _cd_add(values: list[Any], v: Any) -> None:
    """Insert ``v`` into the sorted distinct list ``values`` (None is not counted, as in SQL)."""
    if v is None:
        return
    i = bisect_left(values, v)
    if i == len(values) or values[i] != v:
        values.insert(i, v)


def _cd_merge(a: list[Any], b: list[Any]) -> list[Any]:
    return sorted(set(a).union(b))


def _user_fn(path: str) -> tuple[_Fn, Any]:
    cls = resolve_path(path)
    inst = cls()
    for method in ("create", "add", "merge", "result"):
        if not callable(getattr(inst, method, None)):
            raise TypeError(f"user aggregate {path!r} has no method {method}(); a user aggregate class "
                            "has create(), add(acc, value), merge(acc, other) and result(acc)")
    return _Fn(("{U}.create()",), ("{U}.add({U}.create(), {V})",), ("{A0} = {U}.add({A0}, {V})",),
               ("{A0} = {U}.add({A0}, {V})",), ("{A0} = {U}.merge({A0}, {B0})",), "{U}.result({A0})"), inst


def is_user_aggregate(func: str) -> bool:
    """Whether ``func`` names a user aggregate class (an import path) rather than a built-in."""
    return func not in BUILTIN_FUNCTIONS


class AggregateCode:
    """Generated-code pieces for a list of named aggregates over records ``r``.

    Built once per operator in ``open()`` (it imports user aggregate classes).  The methods
    return source text for a :class:`~streamlet.operators.codegen.CodeBuilder`; ``acc`` is the
    name of the accumulator variable in the generated code.  Example (one ``count``, one
    ``sum``)::

        code = AggregateCode(b, [("n", "count", None, None), ("s", "sum", "v", None)], "node")
        code.new_lines("a", 2)      # a = [1, r['v']]
        code.update_lines("a", 2)   # a[0] += 1 / a[1] += r['v']
    """

    def __init__(self, b: CodeBuilder, aggregates: Sequence[Aggregate], node_id: str) -> None:
        self.b = b
        self.node_id = node_id
        self.names: list[str] = []
        self._parts: list[tuple[_Fn, int, str, str | None, str]] = []  # fn, first slot, value, where, user
        slot = 0
        helpers = {"_cd_add": b.bind("cd_add", _cd_add), "_cd_merge": b.bind("cd_merge", _cd_merge)}
        self._helpers = helpers
        for agg in aggregates:
            name, func, fld = agg[0], agg[1], agg[2]
            where = agg[3] if len(agg) > 3 else None
            user = ""
            if is_user_aggregate(func):
                fn, inst = _user_fn(func)
                user = b.bind("agg", inst)
            else:
                fn = _FNS[func]
            value = "r" if fld is None else f"r[{fld!r}]"
            self.names.append(name)
            self._parts.append((fn, slot, value, where, user))
            slot += len(fn.empty)
        self.slots = slot
        #: one slot: the accumulator is that value itself, else a list of slots
        self.scalar = slot == 1
        self.filtered = any(p[3] for p in self._parts)

    def _names(self, acc: str, part: tuple[_Fn, int, str, str | None, str], other: str | None = None,
               value: str | None = None) -> dict[str, str]:
        fn, first, val, _, user = part
        out = dict(self._helpers)
        for j in range(len(fn.empty)):
            out[f"A{j}"] = acc if self.scalar else f"{acc}[{first + j}]"
            if other is not None:
                out[f"B{j}"] = other if self.scalar else f"{other}[{first + j}]"
        out["V"] = value or val
        out["U"] = user
        return out

    def _value_lines(self, indent: int) -> tuple[list[tuple[int, str]], list[str]]:
        """Lines binding each aggregate's value to ``_v<i>`` (one field read per aggregate)."""
        lines, names = [], []
        for i, part in enumerate(self._parts):
            lines.append((indent, f"_v{i} = {part[2]}"))
            names.append(f"_v{i}")
        return lines, names

    def empty_expr(self) -> str:
        """An expression for an empty accumulator (no record added yet)."""
        exprs = [e.format(**self._names("a", p)) for p in self._parts for e in p[0].empty]
        return exprs[0] if self.scalar else "[" + ", ".join(exprs) + "]"

    def new_lines(self, acc: str, indent: int) -> None:
        """Add lines setting ``acc`` to the accumulator of the one record ``r``."""
        b, nid = self.b, self.node_id
        if self.filtered:
            b.add(indent, f"{acc} = {self.empty_expr()}", nid)
            self.add_lines(acc, indent)
            return
        vals, names = self._value_lines(indent)
        for ind, line in vals:
            b.add(ind, line, nid)
        exprs = [e.format(**self._names(acc, p, value=names[i])) for i, p in enumerate(self._parts)
                 for e in p[0].init]
        b.add(indent, f"{acc} = " + (exprs[0] if self.scalar else "[" + ", ".join(exprs) + "]"), nid)

    def update_lines(self, acc: str, indent: int) -> None:
        """Add lines folding record ``r`` into the non-empty accumulator ``acc``."""
        if self.filtered:
            self.add_lines(acc, indent)
            return
        b, nid = self.b, self.node_id
        vals, names = self._value_lines(indent)
        for ind, line in vals:
            b.add(ind, line, nid)
        any_line = False
        for i, p in enumerate(self._parts):
            for stmt in p[0].update:
                b.add(indent, stmt.format(**self._names(acc, p, value=names[i])), nid)
                any_line = True
        if not any_line:
            b.add(indent, "pass")

    def add_lines(self, acc: str, indent: int) -> None:
        """Add lines folding record ``r`` into ``acc`` (empty or not), honouring ``where``."""
        b, nid = self.b, self.node_id
        for i, p in enumerate(self._parts):
            where = p[3]
            ind = indent
            if where:
                b.add(indent, f"if {where}:", nid)
                ind += 1
            b.add(ind, f"_v{i} = {p[2]}", nid)
            for stmt in p[0].add:
                b.add(ind, stmt.format(**self._names(acc, p, value=f"_v{i}")), nid)

    def merge_lines(self, acc: str, other: str, indent: int) -> None:
        """Add lines folding accumulator ``other`` into ``acc`` (``acc`` ends up holding the merge).

        ``other`` is the later of the two (``first`` keeps ``acc``'s, ``last`` takes ``other``'s).
        """
        b, nid = self.b, self.node_id
        for p in self._parts:
            for stmt in p[0].merge:
                b.add(indent, stmt.format(**self._names(acc, p, other=other)), nid)

    def result_items(self, acc: str) -> list[str]:
        """``'name': <result expr>`` items of a dict display, one per aggregate."""
        return [f"{name!r}: {p[0].result.format(**self._names(acc, p))}" for name, p in zip(self.names, self._parts)]

    def merge_function(self) -> Callable[[Any, Any], Any]:
        """A compiled ``merge(acc, other) -> acc`` (may modify and return ``acc``)."""
        b = CodeBuilder(f"{self.b.name}:merge")
        b.namespace.update({k: v for k, v in self.b.namespace.items() if k.startswith("_")})
        sub = AggregateCode.__new__(AggregateCode)
        sub.__dict__.update(self.__dict__)
        sub.b = b
        b.add(0, "def _merge(a, o):")
        sub.merge_lines("a", "o", 1)
        b.add(1, "return a")
        return b.compile("_merge")

    def copy_function(self) -> Callable[[Any], Any]:
        """A compiled ``copy(acc) -> acc`` that shares no mutable slot with ``acc``.

        Slots of ``collect`` and ``count_distinct`` (lists that grow in place) are copied, those of
        user aggregates deeply; the others hold numbers or values no function changes in place.
        """
        slots: list[str] = []
        for fn, first, _, _, user in self._parts:
            for j in range(len(fn.empty)):
                a = "a" if self.scalar else f"a[{first + j}]"
                if user:
                    slots.append(f"_deep_copy({a})")
                elif fn is _FNS["collect"] or fn is _FNS["count_distinct"]:
                    slots.append(f"list({a})")
                else:
                    slots.append(a)
        b = CodeBuilder(f"{self.b.name}:copy")
        b.namespace["_deep_copy"] = _deep_copy
        b.add(0, "def _copy(a):")
        b.add(1, "return " + (slots[0] if self.scalar else "[" + ", ".join(slots) + "]"))
        return b.compile("_copy")


def _deep_copy(value: Any) -> Any:
    t = type(value)
    if t is list:
        return [_deep_copy(v) for v in value]
    if t is dict:
        return {k: _deep_copy(v) for k, v in value.items()}
    return value
