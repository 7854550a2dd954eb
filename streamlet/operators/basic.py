"""Stateless operators (map, filter, flat_map), fused into one function per batch."""

from __future__ import annotations

from typing import Any

from streamlet.operators.base import Batch, Operator, RuntimeContext, Timestamps
from streamlet.operators.codegen import CodeBuilder, call_generated, function_ref

STATELESS = ("map", "filter", "flat_map")


class FusedOperator(Operator):
    """A run of chained stateless stages compiled into a single loop.

    ``stages`` are op specs (``{"kind": "map", "id": ..., "expr": ..., "path": ...}``); a source's
    decoder comes first as a ``map`` stage with extra globals.  For ``map: EXPR``, ``filter: EXPR``
    and ``flat_map: EXPR`` over ``[a, b]`` the generated code is::

        for r in batch:
            r = (EXPR)                  # map
            if not (EXPR): continue     # filter
            for r in (EXPR):            # flat_map
                _append(r)
    """

    def __init__(self, stages: list[dict[str, Any]], ctx: RuntimeContext) -> None:
        super().__init__(stages, ctx)
        self.node_ids = tuple(dict.fromkeys(s["id"] for s in stages))
        self._plain = self._generate(stages, ctx.vertex_name, with_ts=False)
        self._with_ts = self._generate(stages, ctx.vertex_name, with_ts=True)

    @staticmethod
    def _generate(stages: list[dict[str, Any]], name: str, with_ts: bool) -> Any:
        b = CodeBuilder(name)
        for s in stages:
            b.namespace.update(s.get("globals", {}))
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
            call = function_ref(b, s.get("expr"), s.get("path"))
            if s["kind"] == "map":
                b.add(indent, f"r = {call}", s["id"])
            elif s["kind"] == "filter":
                b.add(indent, f"if not {call}: continue", s["id"])
            elif s["kind"] == "flat_map":
                b.add(indent, f"for r in {call}:", s["id"])
                indent += 1
            else:
                raise ValueError(f"not a stateless stage: {s['kind']!r}")
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
