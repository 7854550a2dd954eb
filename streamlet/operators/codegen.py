"""Generate one Python function per batch for fused operators.

Chained stateless operators (map, filter, flat_map, a source's decoder) and keyed aggregates are
compiled into a single loop over the batch: no per-record function call for inline expressions,
no intermediate lists.  When the generated code raises, :func:`user_error` maps the failing line
back to the node id and picks the record that node was working on from the frame, so the fast
path carries no bookkeeping.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from streamlet.errors import UserFunctionError
from streamlet.graph.operators import KeySpec
from streamlet.udf import EXPRESSION_GLOBALS, resolve_path

_counter = itertools.count()


@dataclass
class CodeBuilder:
    """Accumulates source lines and remembers which node each line belongs to."""

    name: str
    lines: list[str] = field(default_factory=list)
    line_nodes: list[str | None] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=lambda: dict(EXPRESSION_GLOBALS))

    def add(self, indent: int, text: str, node: str | None = None) -> None:
        for i, part in enumerate(text.split("\n")):
            self.lines.append("    " * indent + part if i == 0 else part)
            self.line_nodes.append(node)

    def bind(self, prefix: str, value: Any) -> str:
        """Put ``value`` in the generated function's globals; return its name."""
        name = f"_{prefix}{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def compile(self, func_name: str) -> Callable[..., Any]:
        filename = f"<fused:{self.name}:{next(_counter)}>"
        code = compile("\n".join(self.lines) + "\n", filename, "exec")
        exec(code, self.namespace)  # noqa: S102 - our own generated code
        fn = self.namespace[func_name]
        fn._line_nodes = self.line_nodes  # type: ignore[attr-defined]
        fn._filename = filename  # type: ignore[attr-defined]
        return fn


def function_ref(b: CodeBuilder, expr: str | None, path: str | None, args: str = "r") -> str:
    """Source text calling a user function: the inline expression or a bound import path."""
    if expr is not None:
        return f"({expr})"
    assert path is not None
    fn = resolve_path(path)
    return f"{b.bind('f', fn)}({args})"


def user_error(fn: Callable[..., Any], exc: BaseException, var: str = "r") -> UserFunctionError | None:
    """A :class:`UserFunctionError` for ``exc`` raised inside generated ``fn``, or None.

    The failing node is the one that owns the traceback's line; the record is the value of
    ``var`` in that frame (the input of the failing node, since the failing assignment did not
    happen).
    """
    filename = getattr(fn, "_filename", None)
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            found = tb
        tb = tb.tb_next
    if found is None:
        return None
    line_nodes = fn._line_nodes  # type: ignore[attr-defined]
    idx = found.tb_lineno - 1
    node = line_nodes[idx] if 0 <= idx < len(line_nodes) else None
    if node is None:
        return None
    record = found.tb_frame.f_locals.get(var)
    if isinstance(record, (bytes, bytearray)):
        record = bytes(record).decode("utf-8", "replace")
    return UserFunctionError(node, record, exc)


def call_generated(fn: Callable[..., Any], *args: Any, var: str = "r") -> Any:
    """Call generated ``fn``; turn a user exception into a :class:`UserFunctionError`."""
    try:
        return fn(*args)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - re-raised with the node and record (sys.exit() too)
        err = user_error(fn, exc, var)
        if err is None:
            raise
        raise err from exc


def key_code(b: CodeBuilder, key: KeySpec, node: str) -> str:
    """Source text of the key of record ``r`` for a key spec (hashable result)."""
    fields = key.fields
    if fields:
        if len(fields) == 1:
            return f"r[{fields[0]!r}]"
        return "(" + ", ".join(f"r[{f!r}]" for f in fields) + ",)"
    from streamlet.keys import freeze

    fr = b.bind("freeze", _hashable(freeze))
    return f"{fr}({function_ref(b, key.expr, key.path)})"


def batch_keys_code(b: CodeBuilder, key: KeySpec, node: str, batch: str = "batch") -> str:
    """Source text of the list of keys of the records of ``batch`` (as :func:`key_code`'s, each).

    A key expression's results are frozen only when one is a list or a map (a C-level type scan
    per batch), not through a call per record."""
    if key.fields:
        return f"[{key_code(b, key, node)} for r in {batch}]"
    from streamlet.keys import freeze

    fr = b.bind("freeze_keys", _freeze_keys(_hashable(freeze)))
    return f"{fr}([{function_ref(b, key.expr, key.path)} for r in {batch}])"


def keys_function(b: CodeBuilder, key: KeySpec, node: str, name: str = "_keys") -> Callable[[list[Any]], list[Any]]:
    """``name(batch)``: the keys of a batch's records (:func:`batch_keys_code`), compiled in ``b``."""
    b.add(0, f"def {name}(batch):")
    b.add(1, f"return {batch_keys_code(b, key, node)}", node)
    return b.compile(name)


_UNHASHABLE = frozenset((list, dict))


def _freeze_keys(hk: Callable[[Any], Any]) -> Callable[[list[Any]], list[Any]]:
    def freeze_keys(keys: list[Any]) -> list[Any]:
        return keys if _UNHASHABLE.isdisjoint(map(type, keys)) else [hk(k) for k in keys]
    return freeze_keys


def _hashable(freeze: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def hk(k: Any) -> Any:
        if type(k) in (list, dict):
            return freeze(k)
        return k
    return hk
