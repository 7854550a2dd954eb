"""Stateless operators (map, filter, flat_map), fused into one function per batch."""

from __future__ import annotations

import ast
from typing import Any

from streamlet.graph.operators import parse_expression
from streamlet.operators.base import Batch, Operator, RuntimeContext, Timestamps
from streamlet.operators.codegen import CodeBuilder, call_generated, function_ref

class FusedOperator(Operator):
    """A run of chained stateless stages (map, filter, flat_map specs) compiled into a single loop.

    A source's decoder comes first as a map stage whose expression uses ``extra_globals``.  For
    ``map: EXPR``, ``filter: EXPR`` and ``flat_map: EXPR`` over ``[a, b]`` the generated code is::

        for r in batch:
            r = (EXPR)                  # map
            if not (EXPR): continue     # filter
            for r in (EXPR):            # flat_map
                _append(r)
    """

    def __init__(self, stages: list[Any], ctx: RuntimeContext, extra_globals: dict[str, Any] | None = None) -> None:
        super().__init__(stages, ctx)
        self.node_ids = tuple(dict.fromkeys(s.id for s in stages))
        self._plain = self._generate(stages, ctx.vertex_name, False, extra_globals or {})
        self._with_ts = self._generate(stages, ctx.vertex_name, True, extra_globals or {})

    @staticmethod
    def _generate(stages: list[Any], name: str, with_ts: bool, extra_globals: dict[str, Any]) -> Any:
        b = CodeBuilder(name)
        b.namespace.update(extra_globals)
        if with_ts:
            b.add(0, "def _fused(batch, tss):")
            b.add(1, "out = []; _append = out.append; ots = []; _tappend = ots.append")
            b.add(1, "for r, _ts in zip(batch, tss):")
        else:
            b.add(0, "def _fused(batch):")
            b.add(1, "out = []; _append = out.append")
            b.add(1, "for r in batch:")
        indent = 2
        for s in stages:
            call = function_ref(b, s.expr, s.path)
            if s.KIND == "map":
                b.add(indent, f"r = {call}", s.id)
            elif s.KIND == "filter":
                b.add(indent, f"if not {call}: continue", s.id)
            elif s.KIND == "flat_map":
                one = _at_most_one(s.expr) if s.expr is not None else None
                if one is None:
                    b.add(indent, f"for r in {call}:", s.id)
                    indent += 1
                else:  # [X] if C else []: no list per record, no inner loop
                    cond, elt = one
                    if cond is not None:
                        b.add(indent, f"if not ({cond}): continue", s.id)
                    b.add(indent, f"r = ({elt})", s.id)
            else:
                raise ValueError(f"not a stateless stage: {s.KIND!r}")
        b.add(indent, "_append(r)")
        if with_ts:
            b.add(indent, "_tappend(_ts)")
            b.add(1, "return out, ots")
        else:
            b.add(1, "return out")
        return b.compile("_fused")

    def process(self, records: Batch, timestamps: Timestamps) -> tuple[Batch, Timestamps]:
        if timestamps is None:
            return call_generated(self._plain, records), None
        return call_generated(self._with_ts, records, timestamps)


def _at_most_one(expr: str) -> tuple[str | None, str] | None:
    """``(C, X)`` for a flat_map expression ``[X] if C else []`` (``(None, X)`` for ``[X]``; ``[]
    if C else [X]`` is ``(not C, X)``), which emits X when C holds: the fused loop then filters
    and maps instead of building and iterating a list per record.  None for any other shape."""
    node = parse_expression(expr)
    if node is None:
        return None

    def single(n: ast.AST) -> ast.AST | None:
        if isinstance(n, ast.List) and len(n.elts) == 1 and not isinstance(n.elts[0], ast.Starred):
            return n.elts[0]
        return None

    def empty(n: ast.AST) -> bool:
        return isinstance(n, ast.List) and not n.elts

    if (elt := single(node)) is not None:
        return None, ast.unparse(elt)
    if isinstance(node, ast.IfExp):
        if (elt := single(node.body)) is not None and empty(node.orelse):
            return ast.unparse(node.test), ast.unparse(elt)
        if empty(node.body) and (elt := single(node.orelse)) is not None:
            return f"not ({ast.unparse(node.test)})", ast.unparse(elt)
    return None
