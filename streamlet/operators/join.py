"""Joins: interval, window and regular (two keyed inputs), and lookup (a static side input).

Two-input joins get the records of their **left** input through ``process`` and those of their
**right** input through ``process_right`` (the planner marks the right input's edges with
``JobEdge.input == 1``); both inputs are hash-partitioned by their join key, so matching keys
meet on one subtask.  Buffers live in keyed state (map or list state of the join key, a window
being a namespace) and cleanup runs on per-key timers, so checkpoints cover them.

Every join emits, for each matching pair ``l`` (left) and ``r`` (right) for which ``where``
(an expression over ``l`` and ``r``) holds, ``select`` (an expression over ``l`` and ``r``;
default ``{**l, **r}``: right fields win on a name clash).  Joins are inner joins.

* **interval** (Flink's interval join): ``l.ts + lower <= r.ts <= l.ts + upper``; each side is
  buffered until the watermark passes the last time it can still match (``l.ts + upper`` /
  ``r.ts - lower``); a pair's timestamp is ``max(l.ts, r.ts)``; late records are dropped (counted).
* **window**: both sides in the same tumbling or sliding window (and key); at the window's end
  every pair of the window is emitted with timestamp ``end - 1`` and the window is dropped.
* **regular**: unbounded: every record meets every earlier record of the other side with the
  same key; ``ttl`` drops a key's buffered records ``ttl`` after the key's last new record
  (on the task clock). No event time needed.
* **lookup**: one input; each record meets the rows of a static file (csv or jsonl) whose
  ``lookup_key`` (an expression over the row ``r``) equals the record's ``key``.  The file is read
  once per subtask when the operator opens (keep it small: it is read on the task's loop).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator

import orjson

from streamlet.errors import UserFunctionError
from streamlet.graph.operators import IntervalJoinSpec, LookupJoinSpec, RegularJoinSpec, WindowJoinSpec
from streamlet.operators.base import FIRE_CHUNK, NO_OUTPUT, Batch, Operator, Output, RuntimeContext, Timestamps, concat
from streamlet.operators.codegen import CodeBuilder, call_generated, keys_function
from streamlet.state.base import StateDescriptor, StateKind
from streamlet.time.timers import TimerService
from streamlet.time.watermarks import MIN_WATERMARK
from streamlet.time.windows import SlidingWindows, TumblingWindows
from streamlet.udf import EXPRESSION_GLOBALS

_LEFT = 0
_RIGHT = 1


def _join_lambda(spec: Any, code: str) -> Callable[..., Any]:
    """The lambda ``code`` (built of the join's expressions, see :func:`_select`), compiled."""
    ns = dict(EXPRESSION_GLOBALS)
    ns["_NO"] = _NO
    return eval(compile(code, f"<join:{spec.id}>", "eval"), ns)  # noqa: S307 - the pipeline's expressions


def _select(spec: Any) -> str:
    """The output record of a pair ``l``, ``r``: the join's ``select``, or both merged."""
    return f"({spec.select or '{**l, **r}'})"


def _pair_function(spec: Any) -> Callable[[Any, Any], Any]:
    """``pair(l, r)``: the output record of a matching pair, or a sentinel when ``where`` fails."""
    if spec.where:
        return _join_lambda(spec, f"lambda l, r: {_select(spec)} if ({spec.where}) else _NO")
    return _join_lambda(spec, f"lambda l, r: {_select(spec)}")


class _NoMatch:
    __slots__ = ()


_NO = _NoMatch()


class _JoinBase(Operator):
    """Key extraction, the pair function and error naming shared by the joins."""

    #: a two-input operator: the runtime calls process (left) and process_right (right)
    INPUTS = 2

    def __init__(self, spec: Any, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)
        #: records dropped because they arrived behind the watermark
        self.num_late_records = 0

    def open(self) -> None:
        spec = self.spec
        b = CodeBuilder(f"{self.ctx.vertex_name}:{spec.id}")
        self._keys = (keys_function(b, spec.left_key, spec.id, "_lkeys"),
                      keys_function(b, spec.right_key, spec.id, "_rkeys"))
        self._pair = _pair_function(spec)

    def keys(self, side: int, records: Batch) -> list[Any]:
        return call_generated(self._keys[side], records)  # type: ignore[no-any-return]

    def pair(self, left: Any, right: Any) -> Any:
        try:
            return self._pair(left, right)
        except Exception as exc:  # noqa: BLE001 - the user's expression raised: name the node and the pair
            raise UserFunctionError(self.spec.id, {"l": left, "r": right}, exc) from exc

    def process(self, records: Batch, timestamps: Timestamps) -> Output:
        return self.process_side(_LEFT, records, timestamps)

    def process_right(self, records: Batch, timestamps: Timestamps) -> Output:
        """Records of the right input (the runtime calls this for edges with ``input == 1``)."""
        return self.process_side(_RIGHT, records, timestamps)

    def process_side(self, side: int, records: Batch, timestamps: Timestamps) -> Output:
        raise NotImplementedError

    def metrics(self) -> dict[str, int]:
        return {"numLateRecordsDropped": self.num_late_records}


class IntervalJoinOperator(_JoinBase):
    """Runs an :class:`~streamlet.graph.operators.IntervalJoinSpec` (see the module docstring)."""

    def open(self) -> None:
        super().open()
        sid = self.spec.id
        self.buffers = (self.ctx.state.state(StateDescriptor(f"{sid}/left", StateKind.MAP)),
                        self.ctx.state.state(StateDescriptor(f"{sid}/right", StateKind.MAP)))
        self.timers = TimerService(self.ctx.state, sid)
        self.lower, self.upper = self.spec.lower_ms, self.spec.upper_ms

    def process_side(self, side: int, records: Batch, timestamps: Timestamps) -> Output:
        if timestamps is None:
            raise UserFunctionError(self.spec.id, records[0] if records else None, ValueError(
                "an interval join needs event time on both inputs; set timestamp: on their sources"))
        keys = self.keys(side, records)
        wm = self.timers.current_watermark
        mine, other = self.buffers[side], self.buffers[1 - side]
        # the other side's timestamps that match t: [t + lower, t + upper] (left), [t - upper, t - lower] (right)
        lo_off, hi_off = (self.lower, self.upper) if side == _LEFT else (-self.upper, -self.lower)
        # how long a record of this side can still match a future one of the other side
        keep = self.upper if side == _LEFT else -self.lower
        out: list[Any] = []
        out_ts: list[int] = []
        pair = self.pair
        for r, k, t in zip(records, keys, timestamps):
            if t <= wm and wm != MIN_WATERMARK:
                self.num_late_records += 1
                continue
            lo, hi = t + lo_off, t + hi_off
            for ot, rows in other.entries(k).items():
                if lo <= ot <= hi:
                    ts = t if t > ot else ot
                    for o in rows:
                        res = pair(r, o) if side == _LEFT else pair(o, r)
                        if res is not _NO:
                            out.append(res)
                            out_ts.append(ts)
            if t + keep > wm:
                rows = mine.get(k, t)
                mine.put(k, t, [r] if rows is None else rows + [r])
                self.timers.register_event_time(k, side, t + keep)
        return out, (out_ts if out else None)

    def process_watermark(self, watermark: int) -> Output:
        return concat(self.process_watermark_chunks(watermark))

    def process_watermark_chunks(self, watermark: int) -> Iterator[Output]:
        n = 0
        for ts, k, side in self.timers.advance_watermark(watermark):
            n += 1
            if n > FIRE_CHUNK:
                yield NO_OUTPUT
                n = 1
            keep = self.upper if side == _LEFT else -self.lower
            self.buffers[side].remove(k, ts - keep)


class WindowJoinOperator(_JoinBase):
    """Runs a :class:`~streamlet.graph.operators.WindowJoinSpec` (see the module docstring)."""

    def open(self) -> None:
        super().open()
        spec, sid = self.spec, self.spec.id
        self.buffers = (self.ctx.state.state(StateDescriptor(f"{sid}/left", StateKind.LIST)),
                        self.ctx.state.state(StateDescriptor(f"{sid}/right", StateKind.LIST)))
        self.timers = TimerService(self.ctx.state, sid)
        if spec.window == "tumbling":
            self.assigner: Any = TumblingWindows(spec.size_ms, spec.offset_ms)
        else:
            self.assigner = SlidingWindows(spec.size_ms, spec.slide_ms, spec.offset_ms)

    def process_side(self, side: int, records: Batch, timestamps: Timestamps) -> Output:
        if timestamps is None:
            raise UserFunctionError(self.spec.id, records[0] if records else None, ValueError(
                "a window join needs event time on both inputs; set timestamp: on their sources"))
        keys = self.keys(side, records)
        wm = self.timers.current_watermark
        buf = self.buffers[side]
        windows_of = self.assigner.windows_of
        for r, k, t in zip(records, keys, timestamps):
            late = True
            for start, end in windows_of(t):
                if end - 1 <= wm and wm != MIN_WATERMARK:
                    continue
                late = False
                buf.add(k, r, start)
                self.timers.register_event_time(k, start, end - 1)
            if late:
                self.num_late_records += 1
        return NO_OUTPUT

    def process_watermark(self, watermark: int) -> Output:
        return concat(self.process_watermark_chunks(watermark))

    def process_watermark_chunks(self, watermark: int) -> Iterator[Output]:
        out: list[Any] = []
        out_ts: list[int] = []
        left, right = self.buffers
        pair = self.pair
        n = 0
        for ts, k, start in self.timers.advance_watermark(watermark):
            n += 1
            if n > FIRE_CHUNK:
                yield out, (out_ts if out else None)
                out, out_ts, n = [], [], 1
            ls, rs = left.get(k, start), right.get(k, start)
            for lrec in ls:
                for rrec in rs:
                    res = pair(lrec, rrec)
                    if res is not _NO:
                        out.append(res)
                        out_ts.append(ts)
            left.clear(k, start)
            right.clear(k, start)
        yield out, (out_ts if out else None)


class RegularJoinOperator(_JoinBase):
    """Runs a :class:`~streamlet.graph.operators.RegularJoinSpec` (see the module docstring)."""

    def open(self) -> None:
        super().open()
        sid, ttl = self.spec.id, self.spec.ttl_ms / 1000 if self.spec.ttl_ms else None
        self.buffers = (self.ctx.state.state(StateDescriptor(f"{sid}/left", StateKind.LIST, ttl)),
                        self.ctx.state.state(StateDescriptor(f"{sid}/right", StateKind.LIST, ttl)))

    def process_side(self, side: int, records: Batch, timestamps: Timestamps) -> Output:
        keys = self.keys(side, records)
        mine, other = self.buffers[side], self.buffers[1 - side]
        pair = self.pair
        out: list[Any] = []
        out_ts: list[int] = []
        timed = timestamps is not None
        tss: Iterable[Any] = timestamps if timed else [None] * len(records)
        for r, k, t in zip(records, keys, tss):
            for entry in other.get(k):
                o, ot = entry
                res = pair(r, o) if side == _LEFT else pair(o, r)
                if res is not _NO:
                    out.append(res)
                    out_ts.append(t if ot is None or (t is not None and t > ot) else ot)
            mine.add(k, [r, t])
        return out, (out_ts if out and timed and None not in out_ts else None)


class LookupJoinOperator(Operator):
    """Runs a :class:`~streamlet.graph.operators.LookupJoinSpec` (see the module docstring)."""

    def __init__(self, spec: LookupJoinSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)

    def open(self) -> None:
        spec = self.spec
        b = CodeBuilder(f"{self.ctx.vertex_name}:{spec.id}")
        self._keys = keys_function(b, spec.key, spec.id, "_keys")
        self._pair = _pair_function(spec)
        self.table = load_lookup_table(spec)
        #: the fast path: without ``where`` and with one row per key, a batch whose every key is
        #: in the table is joined by one comprehension (the select inlined), its timestamps kept
        self._single: dict[Any, Any] | None = None
        self._joined: Callable[[Batch, list[Any]], list[Any]] | None = None
        if not spec.where and all(len(rows) == 1 for rows in self.table.values()):
            self._single = {k: rows[0] for k, rows in self.table.items()}
            self._joined = _join_lambda(spec, f"lambda batch, rows: [{_select(spec)} for l, r in zip(batch, rows)]")

    def process(self, records: Batch, timestamps: Timestamps) -> Output:
        keys = call_generated(self._keys, records)
        if self._single is not None:
            try:
                # C-level lookups: a KeyError as soon as one key has no row (then record by record)
                rows = list(map(self._single.__getitem__, keys))
                out = self._joined(records, rows)  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - an unmatched key, or a select that raised: found again below
                pass
            else:
                return out, (timestamps if out else None)
        get, pair = self.table.get, self._pair
        out: list[Any] = []
        out_ts: list[Any] = []
        tss: Iterable[Any] = timestamps if timestamps is not None else [None] * len(records)
        for r, k, t in zip(records, keys, tss):
            rows = get(k)
            if not rows:
                continue
            for row in rows:
                try:
                    res = pair(r, row)
                except Exception as exc:  # noqa: BLE001 - the user's expression raised
                    raise UserFunctionError(self.spec.id, {"l": r, "r": row}, exc) from exc
                if res is not _NO:
                    out.append(res)
                    out_ts.append(t)
        return out, (out_ts if timestamps is not None and out else None)


def load_lookup_table(spec: LookupJoinSpec) -> dict[Any, list[Any]]:
    """The side input of a lookup join: ``lookup_key(row) -> [rows]`` (read once, at open)."""
    with open(spec.path, "rb") as fh:  # noqa: PTH123 - a small static file, read once per subtask
        data = fh.read()
    if spec.format == "jsonl":
        rows = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    else:
        text = data.decode("utf-8-sig").splitlines()
        reader = csv.reader(text, delimiter=spec.delimiter)
        lines = [row for row in reader if row]
        if spec.header:
            names, lines = lines[0], lines[1:]
        else:
            names = list(spec.columns)
        rows = [dict(zip(names, line)) for line in lines]
    key_of = eval(compile(f"lambda r: ({spec.lookup_key})", f"<lookup:{spec.id}>", "eval"),  # noqa: S307
                  dict(EXPRESSION_GLOBALS))
    table: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        try:
            table[key_of(row)].append(row)
        except Exception as exc:  # noqa: BLE001 - the user's expression raised on a row of the file
            raise UserFunctionError(spec.id, row, exc) from exc
    return dict(table)
