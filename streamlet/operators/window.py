"""The window operator: keyed (or non-keyed) window aggregates on event or processing time.

One :class:`WindowOperator` runs a :class:`~streamlet.graph.operators.WindowSpec`.  Windows are
assigned by :mod:`streamlet.time.windows`; contents are **accumulators** (never the records)
held in keyed state, a window or slice being the namespace; firing is driven by per-key timers
of a :class:`~streamlet.time.timers.TimerService` (also in keyed state), so checkpoints and
restores (at any parallelism) cover windows without code here.

Per batch (generated code, one loop): compute each record's key and window (tumbling) or slice
(sliding), fold it into a batch-local accumulator per (window, key), then merge those partial
accumulators into state with one read and one write per distinct (key, window) of the batch
(Flink's mini-batch local/global aggregation).  Records of expired windows are late: they go
to ``late_output`` (a side output) or are dropped, and are counted either way
(:attr:`WindowOperator.num_late_records`).

* **tumbling**: state ``(key, window start) -> acc``; a timer at ``end - 1`` emits and clears.
* **sliding**: state ``(key, slice start) -> acc`` with slices of ``gcd(size, slide)``; a record
  updates one slice.  A firing window merges its slices through a per-key two-stack queue
  (each slice is merged O(1) times over its life, whatever ``size / slide``): a cache derived
  from state, rebuilt from it after a restore.  A key's next window timer is registered when
  one fires, so timers are one per (key, window that has data); windows of a key that are
  already due (a watermark that jumps, the final one) fire in a row without timers (merged
  with the due timers by timestamp), and the rows of one firing leave in timestamp order.
* **session**: state ``key -> [[start, end, acc], ...]``; a record opens ``[ts, ts + gap)``,
  intersecting sessions merge (accumulators merged); one timer per session at ``end - 1``.
* **global**: state ``key -> [count, acc]``; emits and starts over every ``count`` records.

Firing is lazy and chunked: ``fire`` consumes due timers as it goes and yields output every
:data:`~streamlet.operators.base.FIRE_CHUNK` timers (``process_watermark_chunks``), so the task
lets the event loop run while a watermark fires millions of windows; the rows and their order
are those of one call.

Event time: a window fires when the watermark reaches ``end - 1``; its rows carry timestamp
``end - 1``.  ``allowed_lateness`` keeps a window's state that much longer: a late record then
re-fires the window (one updated row per key and batch); later records are late.
Processing time: records are assigned by the task clock when their batch arrives; windows fire
from processing-time callbacks, and at end of input every open window fires.

Result rows: the key field(s), ``window_start``, ``window_end`` (epoch ms; None for global
windows) and each named aggregate.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Any, Callable, Iterable, Iterator

from streamlet.errors import UserFunctionError
from streamlet.graph.operators import WindowSpec
from streamlet.operators.accumulators import AggregateCode
from streamlet.operators.base import (
    FIRE_CHUNK, Batch, Operator, Output, RuntimeContext, Timestamps, concat,
)
from streamlet.operators.codegen import CodeBuilder, call_generated, key_code
from streamlet.time.timers import TimerService
from streamlet.time.watermarks import MAX_WATERMARK, MIN_WATERMARK
from streamlet.time.windows import EVENT_TIME, SessionWindows, SlidingWindows

#: timer namespaces: a window (or session) fires / its state is cleaned up
_FIRE = 0
_CLEAN = 1


class WindowOperator(Operator):
    """Runs a :class:`~streamlet.graph.operators.WindowSpec` (see the module docstring)."""

    def __init__(self, spec: WindowSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)
        #: records that arrived for expired windows (sent to late_output, or dropped)
        self.num_late_records = 0
        self._event = spec.time == EVENT_TIME
        self._wm = MIN_WATERMARK

    def open(self) -> None:
        spec = self.spec
        self.state = self.ctx.state.value_state(f"{spec.id}/windows")
        self.timers = TimerService(self.ctx.state, spec.id, self.ctx.processing_time, self._on_processing_timers)
        b = CodeBuilder(f"{self.ctx.vertex_name}:{spec.id}")
        self.code = AggregateCode(b, spec.aggregates, spec.id)
        self.merge = self.code.merge_function()
        self.copy = self.code.copy_function()
        self._row = _row_function(spec, self.code)
        kind = {"tumbling": _Tumbling, "sliding": _Sliding, "session": _Session, "global": _Global}[spec.window]
        self.impl: _Windows = kind(self, b)
        if self.ctx.restored:
            self.impl.restore()
            self.timers.restore()

    # -- hooks ------------------------------------------------------------------------------------

    def process(self, records: Batch, timestamps: Timestamps) -> Output:
        if self._event:
            if timestamps is None:
                raise UserFunctionError(self.spec.id, records[0] if records else None, ValueError(
                    "an event-time window needs timestamps; set timestamp: on the source this node reads, "
                    "or use time: processing"))
            return self.impl.process(records, timestamps, self._wm)
        now = self.ctx.clock.time_ms()
        return self.impl.process(records, [now] * len(records), MIN_WATERMARK)

    def process_watermark(self, watermark: int) -> Output:
        return concat(self.process_watermark_chunks(watermark))

    def process_watermark_chunks(self, watermark: int) -> Iterator[Output]:
        if not self._event or watermark <= self._wm:
            return iter(())
        self._wm = watermark
        return self.impl.fire(self.timers.advance_watermark(watermark), watermark)

    def _on_processing_timers(self, timers: Iterable[tuple[int, Any, Any]], time_ms: int) -> Iterator[Output]:
        return self.impl.fire(timers, time_ms)

    def end_input(self) -> Output:
        return concat(self.end_input_chunks())

    def end_input_chunks(self) -> Iterator[Output]:
        if self._event:
            return iter(())  # the final watermark (MAX) already fired every window
        # processing time: what is open fires now (a bounded job's windows are never lost)
        return self.impl.fire(self.timers.pop_processing_until(MAX_WATERMARK), MAX_WATERMARK)

    # -- shared by the window kinds -----------------------------------------------------------------

    def register(self, key: Any, namespace: Any, ts: int) -> None:
        """A timer on this operator's time (event or processing)."""
        if self._event:
            self.timers.register_event_time(key, namespace, ts)
        else:
            self.timers.register_processing_time(key, namespace, ts)

    def delete_timer(self, key: Any, namespace: Any, ts: int) -> None:
        """Drop a timer on this operator's time, if it is registered."""
        if self._event:
            self.timers.delete_event_time(key, namespace, ts)
        else:
            self.timers.delete_processing_time(key, namespace, ts)

    def late(self, records: list[Any], timestamps: list[int]) -> None:
        """Count late records and send them to the side output (when there is one)."""
        self.num_late_records += len(records)
        if self.spec.late_output:
            self.ctx.side_output(self.spec.late_output, records, timestamps)

    def metrics(self) -> dict[str, int]:
        """Operator counters (Flink's metric names)."""
        return {"numLateRecordsDropped": self.num_late_records}


def _row_function(spec: WindowSpec, code: AggregateCode) -> Callable[[Any, Any, Any, Any], dict[str, Any]]:
    """``row(key, start, end, acc)``: the result row of one key's window."""
    b = code.b
    items: list[str] = []
    if spec.key is not None:
        names = spec.key.output_fields
        items += [f"{names[0]!r}: k"] if len(names) == 1 else [f"{n!r}: k[{j}]" for j, n in enumerate(names)]
    items += ["'window_start': s", "'window_end': e"]
    items += code.result_items("a")
    b.add(0, "def _row(k, s, e, a):")
    b.add(1, "return {" + ", ".join(items) + "}")
    b.compile("_row")
    return b.namespace["_row"]  # type: ignore[no-any-return]


def _late_threshold(wm: int, lateness: int, size: int, slide: int, end_offset: int) -> int:
    """The largest timestamp whose every window expired at watermark ``wm``.

    Window ends are ``end_offset + k * slide`` (tumbling: ``slide == size``).

    A window ``[end - size, end)`` expires once ``end - 1 + lateness <= wm``.  The last window of
    a timestamp ``t`` ends at most ``size`` after ``t``'s slice, so ``t`` is expired exactly when
    ``t < E + slide - size`` where ``E`` is the largest window end ``<= wm + 1 - lateness``.
    """
    if wm == MIN_WATERMARK:
        return MIN_WATERMARK
    x = wm + 1 - lateness
    e = x - (x - end_offset) % slide
    return e + slide - size - 1


class _Windows:
    """One window kind's state logic (the operator's hooks delegate here)."""

    def __init__(self, op: WindowOperator, b: CodeBuilder) -> None:
        self.op = op
        self.spec: WindowSpec = op.spec
        self.state = op.state
        self.get_ns = op.state.get_ns
        self.put_ns = op.state.put_ns
        self.delete_ns = op.state.delete_ns
        self.b = b
        self.lateness = self.spec.allowed_lateness_ms if op._event else 0

    def process(self, records: Batch, timestamps: list[int], wm: int) -> Output:
        raise NotImplementedError

    def fire(self, timers: Iterable[tuple[int, Any, Any]], wm: int) -> Iterator[Output]:
        """Fire due ``timers`` (consumed lazily), yielding output every :data:`FIRE_CHUNK` timers."""
        raise NotImplementedError

    def restore(self) -> None:
        """Rebuild caches derived from restored state (default: none)."""

    def _assign_function(self, bucket: str) -> Callable[..., Any]:
        """Generated ``assign(batch, tss, late_ts) -> (parts, late_records, late_timestamps)``.

        ``parts`` maps a bucket (tumbling window start / sliding slice start: the expression
        ``bucket`` over ``t``) to ``{key: partial accumulator}``; records with ``t <= late_ts``
        are returned apart.
        """
        b, nid, code = self.b, self.spec.id, self.op.code
        key = key_code(b, self.spec.key, nid) if self.spec.key is not None else "None"
        b.add(0, "def _assign(batch, tss, late_ts):")
        b.add(1, "parts = {}; late_r = []; late_t = []; lw = None; d = None")
        b.add(1, "for r, t in zip(batch, tss):")
        b.add(2, "if t <= late_ts:")
        b.add(3, "late_r.append(r); late_t.append(t); continue")
        b.add(2, f"k = {key}", nid)
        b.add(2, f"w = {bucket}")
        b.add(2, "if w != lw:")
        b.add(3, "d = parts.get(w)")
        b.add(3, "if d is None: d = parts[w] = {}")
        b.add(3, "lw = w")
        b.add(2, "a = d.get(k)", nid)  # a key that cannot be hashed (a list field) fails here
        b.add(2, "if a is None:")
        code.new_lines("a", 3)
        b.add(3, "d[k] = a")
        b.add(2, "else:")
        code.update_lines("a", 3)
        if code.scalar:
            b.add(3, "d[k] = a")
        b.add(1, "return parts, late_r, late_t")
        return b.compile("_assign")


class _Tumbling(_Windows):
    """State ``(key, start) -> acc``; timer ``(key, start)`` at ``end - 1`` (see the module docstring)."""

    def __init__(self, op: WindowOperator, b: CodeBuilder) -> None:
        super().__init__(op, b)
        self.size, self.offset = self.spec.size_ms, self.spec.offset_ms
        off = f" - {self.offset}" if self.offset else ""
        self.assign = self._assign_function(f"t - (t{off}) % {self.size}")

    def process(self, records: Batch, timestamps: list[int], wm: int) -> Output:
        late_ts = _late_threshold(wm, self.lateness, self.size, self.size, self.offset)
        parts, late_r, late_t = call_generated(self.assign, records, timestamps, late_ts)
        if late_r:
            self.op.late(late_r, late_t)
        get, put, merge, size, register = self.get_ns, self.put_ns, self.op.merge, self.size, self.op.register
        rows: list[Any] = []
        row_ts: list[int] = []
        for w, d in parts.items():
            last = w + size - 1
            fired = last <= wm
            for k, p in d.items():
                s = get(k, w)
                if s is None:
                    s = p
                    register(k, _CLEAN if fired else _FIRE, last + self.lateness if fired else last)
                else:
                    s = merge(s, p)
                put(k, w, s)
                if fired:  # a late record within allowed lateness: fire the window again
                    rows.append(self.op._row(k, w, w + size, s))
                    row_ts.append(last)
        return rows, (row_ts if rows else None)

    def fire(self, timers: Iterable[tuple[int, Any, Any]], wm: int) -> Iterator[Output]:
        rows: list[Any] = []
        row_ts: list[int] = []
        get, delete, size, row = self.get_ns, self.delete_ns, self.size, self.op._row
        lateness = self.lateness
        n = 0
        for ts, k, ns in timers:
            n += 1
            if n > FIRE_CHUNK:
                yield rows, (row_ts if rows else None)
                rows, row_ts, n = [], [], 1
            if ns == _CLEAN:
                delete(k, ts - lateness - size + 1)
                continue
            w = ts - size + 1
            acc = get(k, w)
            if acc is not None:
                rows.append(row(k, w, w + size, acc))
                row_ts.append(ts)
            if lateness:
                self.op.register(k, _CLEAN, ts + lateness)
            else:
                delete(k, w)
        yield rows, (row_ts if rows else None)


class _KeySlices:
    """A key's sliding-window slices: pending ones, then a two-stack FIFO of merged ones.

    ``pending`` holds slice starts (ascending) not yet in the FIFO.  The FIFO is ``front``
    (oldest last; each entry carries the merge of itself and every newer front entry) followed
    by ``back`` (oldest first) whose merge is ``back_agg``.
    """

    __slots__ = ("pending", "front", "back", "back_agg")

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.front: list[tuple[int, Any]] = []
        self.back: list[tuple[int, Any]] = []
        self.back_agg: Any = None

    def newest(self) -> int | None:
        if self.back:
            return self.back[-1][0]
        if self.front:
            return self.front[0][0]
        return None

    def reset(self) -> None:
        """Forget merged aggregates (a slice changed after it was merged): all slices pending again."""
        starts = [s for s, _ in reversed(self.front)] + [s for s, _ in self.back]
        self.pending = sorted(set(starts).union(self.pending))
        self.front, self.back, self.back_agg = [], [], None


class _Sliding(_Windows):
    """State ``(key, slice start) -> acc``; timers ``(key, _FIRE)`` at each window's ``end - 1``."""

    def __init__(self, op: WindowOperator, b: CodeBuilder) -> None:
        super().__init__(op, b)
        spec = self.spec
        self.w = SlidingWindows(spec.size_ms, spec.slide_ms, spec.offset_ms)
        self.size, self.slide, self.offset, self.g = spec.size_ms, spec.slide_ms, spec.offset_ms, self.w.slice
        off = f" - {self.offset}" if self.offset else ""
        self.assign = self._assign_function(f"t - (t{off}) % {self.g}")
        self.keys: dict[Any, _KeySlices] = {}

    def restore(self) -> None:
        for ns in list(self.state.namespaces()):
            if ns is None:
                continue
            for k, _ in self.state.items(ns):
                self._slices(k).pending.append(ns)
        for c in self.keys.values():
            c.pending.sort()

    def _slices(self, k: Any) -> _KeySlices:
        c = self.keys.get(k)
        if c is None:
            c = self.keys[k] = _KeySlices()
        return c

    def process(self, records: Batch, timestamps: list[int], wm: int) -> Output:
        late_ts = _late_threshold(wm, self.lateness, self.size, self.slide, self.offset + self.size)
        parts, late_r, late_t = call_generated(self.assign, records, timestamps, late_ts)
        if late_r:
            self.op.late(late_r, late_t)
        get, put, merge, register, w = self.get_ns, self.put_ns, self.op.merge, self.op.register, self.w
        rows: list[Any] = []
        row_ts: list[int] = []
        for s, d in parts.items():
            first_end = w.first_window_end(s)
            behind = first_end - 1 <= wm  # some window of this slice already fired: late records
            for k, p in d.items():
                acc = get(k, s)
                c = self._slices(k)
                if acc is None:
                    acc = p
                    bisect.insort(c.pending, s)
                    if self.lateness:
                        register(k, (_CLEAN, s), w.last_window_end(s) - 1 + self.lateness)
                    if not behind:
                        register(k, _FIRE, first_end - 1)
                else:
                    acc = merge(acc, p)
                put(k, s, acc)
                if not behind:
                    continue
                # late but not expired: later windows still take it, fired ones re-fire (lateness)
                c.reset()
                for end in w.window_ends_of_slice(s):
                    if end - 1 > wm:
                        register(k, _FIRE, end - 1)
                        break
                    if end - 1 + self.lateness > wm:
                        res = self._direct(k, end)
                        if res is not None:
                            rows.append(self.op._row(k, end - self.size, end, res))
                            row_ts.append(end - 1)
        return rows, (row_ts if rows else None)

    def _direct(self, k: Any, end: int) -> Any:
        """The window ending at ``end`` merged slice by slice (the rare late path)."""
        res = None
        for s in self.w.slices_of_window(end):
            acc = self.get_ns(k, s)
            if acc is not None:
                res = self.op.copy(acc) if res is None else self.op.merge(res, acc)
        return res

    def fire(self, timers: Iterable[tuple[int, Any, Any]], wm: int) -> Iterator[Output]:
        # A key's windows due at ``wm`` fire one after the other without a timer each (a watermark
        # far ahead, e.g. the final one, fires size / slide windows per key): the key's next due
        # window waits in ``runs`` (ts, origin, key), merged with the timers by timestamp, so rows
        # leave in timestamp order.  On equal timestamps, windows go by the order in which their
        # key's run began (``origin``, the number of the timer that began it), before timers not
        # yet taken: the order of firing each run to its end and stably sorting the rows by time.
        # ``runs`` is a min-queue of (ts, origin) kept as buckets per timestamp (a watermark far
        # ahead puts every key of the task at a few timestamps): see :class:`_Runs`.
        rows: list[Any] = []
        row_ts: list[int] = []
        row, size, register = self.op._row, self.size, self.op.register
        delete_timer = self.op.delete_timer
        runs = _Runs()
        timers = iter(timers)
        head = next(timers, None)
        #: keys whose run reached the timestamp of ``head``: their timer at it may already have left the
        #: timer queue with ``head`` (deleting it was a no-op), so it is skipped when it comes
        ran_at_head: set[Any] = set()
        ran_ts = None
        taken = 0
        n = 0
        while head is not None or runs:
            n += 1
            if n > FIRE_CHUNK:
                yield rows, (row_ts if rows else None)
                rows, row_ts, n = [], [], 1
            if runs and (head is None or runs.first() <= head[0]):
                ts, origin, k = runs.pop()
            else:
                assert head is not None
                ts, k, ns = head
                head = next(timers, None)
                if ns != _FIRE:  # (_CLEAN, slice start): every window of the slice is past its lateness
                    self.delete_ns(k, ns[1])
                    c = self.keys.get(k)
                    if c is not None and ns[1] in c.pending:
                        c.pending.remove(ns[1])
                    continue
                if ts == ran_ts and k in ran_at_head:
                    continue  # this window fired in the key's run
                origin = taken
                taken += 1
            end = ts + 1
            res, nxt = self._window(k, end, wm)
            if res is not None:
                rows.append(row(k, end - size, end, res))
                row_ts.append(ts)
            if nxt is None:
                continue
            if nxt - 1 > wm:
                register(k, _FIRE, nxt - 1)
                continue
            delete_timer(k, _FIRE, nxt - 1)  # process() may have registered it for a new slice
            if head is not None and nxt - 1 == head[0]:
                if ran_ts != head[0]:
                    ran_ts, ran_at_head = head[0], set()
                ran_at_head.add(k)
            runs.push(nxt - 1, origin, k)
        yield rows, (row_ts if rows else None)

    def _window(self, k: Any, end: int, wm: int) -> tuple[Any, int | None]:
        """Fire window ``[end - size, end)`` of key ``k``: its slices merged (None: no data), and
        the end of the key's next window with data (None: none; the caller schedules it)."""
        c = self.keys.get(k)
        if c is None:
            return None, None
        merge, copy, get = self.op.merge, self.op.copy, self.get_ns
        # 1. slices that entered the window move to the FIFO's back
        while c.pending and c.pending[0] < end:
            s = c.pending.pop(0)
            acc = get(k, s)
            if acc is None:
                continue
            c.back.append((s, acc))
            c.back_agg = copy(acc) if c.back_agg is None else merge(c.back_agg, acc)
        # 2. slices that left it go from the FIFO's front (the back is flipped when it runs out)
        lo = end - self.size
        while True:
            if not c.front:
                if not c.back:
                    break
                suffix = None
                for s, acc in reversed(c.back):
                    suffix = copy(acc) if suffix is None else merge(copy(acc), suffix)
                    c.front.append((s, suffix))
                c.back, c.back_agg = [], None
            s = c.front[-1][0]
            if s >= lo:
                break
            c.front.pop()
            if not self.lateness:
                self.delete_ns(k, s)
        # 3. the window's result: front (older) merged with back (newer)
        if c.front:
            res = copy(c.front[-1][1])
            if c.back_agg is not None:
                res = merge(res, c.back_agg)
        elif c.back_agg is not None:
            res = copy(c.back_agg)
        else:
            res = None
        # 4. the key's next window with data
        nxt = end + self.slide
        newest = c.newest()
        if newest is not None and newest >= nxt - self.size:
            return res, nxt
        # no merged slice is in a later window: they are done (with lateness, their clean timers drop them)
        if not self.lateness:
            for s, _ in c.front:
                self.delete_ns(k, s)
            for s, _ in c.back:
                self.delete_ns(k, s)
        c.front, c.back, c.back_agg = [], [], None
        if c.pending:
            return res, max(self.w.first_window_end(c.pending[0]), nxt)
        del self.keys[k]
        return res, None


class _Runs:
    """A min-queue of ``(ts, origin, key)`` by ``(ts, origin)`` (origins are unique), for
    :meth:`_Sliding.fire`: a list per timestamp, appended to (in origin order, nearly always)
    and read from its front; a heap holds only the distinct timestamps.  Pops give what a heap
    of the tuples would: the least ``(ts, origin)`` among the entries present."""

    __slots__ = ("_buckets", "_ts", "_pos", "_unsorted", "_n")

    def __init__(self) -> None:
        self._buckets: dict[int, list[tuple[int, Any]]] = {}
        self._ts: list[int] = []  # heap of the timestamps with entries left
        self._pos: dict[int, int] = {}  # entries already taken from a bucket's front
        self._unsorted: set[int] = set()  # buckets whose untaken part may be out of origin order
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def push(self, ts: int, origin: int, key: Any) -> None:
        b = self._buckets.get(ts)
        if b is None:
            self._buckets[ts] = [(origin, key)]
            heapq.heappush(self._ts, ts)
        else:
            if origin < b[-1][0]:
                self._unsorted.add(ts)
            b.append((origin, key))
        self._n += 1

    def first(self) -> int:
        """The least timestamp (the queue is not empty)."""
        return self._ts[0]

    def pop(self) -> tuple[int, int, Any]:
        ts = self._ts[0]
        b = self._buckets[ts]
        i = self._pos.get(ts, 0)
        if ts in self._unsorted:
            self._unsorted.discard(ts)
            b[i:] = sorted(b[i:], key=_first)
        origin, key = b[i]
        self._n -= 1
        if i + 1 == len(b):
            del self._buckets[ts]
            self._pos.pop(ts, None)
            heapq.heappop(self._ts)
        else:
            self._pos[ts] = i + 1
        return ts, origin, key


def _first(entry: tuple[int, Any]) -> int:
    return entry[0]


class _Session(_Windows):
    """State ``key -> [[start, end, acc], ...]`` (sorted); timer ``(key, _FIRE)`` at each ``end - 1``."""

    def __init__(self, op: WindowOperator, b: CodeBuilder) -> None:
        super().__init__(op, b)
        self.gap = self.spec.gap_ms
        self.sessions = SessionWindows(self.gap)
        self.get, self.put, self.delete = op.state.get, op.state.put, op.state.delete
        self.assign = self._session_function()

    def _session_function(self) -> Callable[..., Any]:
        """Generated ``assign(batch, tss, late_ts) -> (local sessions per key, late records)``."""
        b, nid, code, gap = self.b, self.spec.id, self.op.code, self.gap
        key = key_code(b, self.spec.key, nid) if self.spec.key is not None else "None"
        insert = b.bind("insert", self._insert_local)
        b.add(0, "def _sessions(batch, tss, late_ts):")
        b.add(1, "local = {}; late_r = []; late_t = []")
        b.add(1, "for r, t in zip(batch, tss):")
        b.add(2, f"k = {key}", nid)
        b.add(2, "if t <= late_ts:")  # maybe late: decided against the stored sessions later
        b.add(3, "late_r.append((k, r)); late_t.append(t); continue")
        b.add(2, "ss = local.get(k)", nid)
        b.add(2, "if ss is not None:")
        b.add(3, "last = ss[-1]")
        b.add(3, f"if last[0] <= t + {gap} and t <= last[1]:")
        b.add(4, "if t < last[0]: last[0] = t")
        b.add(4, f"if t + {gap} > last[1]: last[1] = t + {gap}")
        b.add(4, "a = last[2]")
        code.update_lines("a", 4)
        b.add(4, "last[2] = a")
        b.add(4, "continue")
        code.new_lines("a", 2)
        b.add(2, "if ss is None:")
        b.add(3, f"local[k] = [[t, t + {gap}, a]]")
        b.add(2, "else:")
        b.add(3, f"{insert}(ss, t, t + {gap}, a)")
        b.add(1, "return local, late_r, late_t")
        return b.compile("_sessions")

    def _insert_local(self, sessions: list[list[Any]], start: int, end: int, acc: Any) -> list[Any]:
        """Merge ``[start, end) acc`` into a sorted list of disjoint sessions; return the result."""
        (lo, hi), absorbed = self.sessions.merge([(s[0], s[1]) for s in sessions], start, end)
        merged_acc = None
        pieces = sorted([sessions[i] for i in absorbed] + [[start, end, acc]], key=lambda x: x[0])
        for piece in pieces:
            merged_acc = piece[2] if merged_acc is None else self.op.merge(merged_acc, piece[2])
        for i in reversed(absorbed):
            del sessions[i]
        new = [lo, hi, merged_acc]
        bisect.insort(sessions, new, key=lambda x: x[0])
        return new

    def process(self, records: Batch, timestamps: list[int], wm: int) -> Output:
        # a record whose own session [t, t + gap) expired can still join a live session
        late_ts = MIN_WATERMARK if wm == MIN_WATERMARK else wm + 1 - self.gap - self.lateness
        local, maybe_late, maybe_late_t = call_generated(self.assign, records, timestamps, late_ts)
        rows: list[Any] = []
        row_ts: list[int] = []
        for k, sessions in local.items():
            stored = self._stored(k)
            for s in sessions:
                self._add(k, stored, s[0], s[1], s[2], wm, rows, row_ts)
            self.put(k, stored)
        late_r, late_t = [], []
        for (k, r), t in zip(maybe_late, maybe_late_t):
            stored = self._stored(k)
            live = [s for s in stored if s[1] - 1 + self.lateness > wm
                    and SessionWindows.intersects(s[0], s[1], t, t + self.gap)]
            if not live:
                late_r.append(r)
                late_t.append(t)
                continue
            single = call_generated(self.assign, [r], [t], MIN_WATERMARK)[0][k][0]
            self._add(k, stored, single[0], single[1], single[2], wm, rows, row_ts)
            self.put(k, stored)
        if late_r:
            self.op.late(late_r, late_t)
        return rows, (row_ts if rows else None)

    def _stored(self, k: Any) -> list[list[Any]]:
        stored = self.get(k)
        return [] if stored is None else stored

    def _add(self, k: Any, stored: list[list[Any]], start: int, end: int, acc: Any, wm: int,
             rows: list[Any], row_ts: list[int]) -> None:
        old = [(s[0], s[1]) for s in stored if SessionWindows.intersects(s[0], s[1], start, end)]
        new = self._insert_local(stored, start, end, acc)
        for _, e in old:
            if e != new[1]:
                self._unregister(k, e)
        if new[1] - 1 <= wm:  # merged into a session that already fired: fire it again
            rows.append(self.op._row(k, new[0], new[1], new[2]))
            row_ts.append(new[1] - 1)
            self.op.register(k, _CLEAN, new[1] - 1 + self.lateness)
        else:
            self.op.register(k, _FIRE, new[1] - 1)

    def _unregister(self, k: Any, end: int) -> None:
        t = self.op.timers
        if self.op._event:
            t.delete_event_time(k, _FIRE, end - 1)
            t.delete_event_time(k, _CLEAN, end - 1 + self.lateness)
        else:
            t.delete_processing_time(k, _FIRE, end - 1)

    def fire(self, timers: Iterable[tuple[int, Any, Any]], wm: int) -> Iterator[Output]:
        rows: list[Any] = []
        row_ts: list[int] = []
        n = 0
        for ts, k, ns in timers:
            n += 1
            if n > FIRE_CHUNK:
                yield rows, (row_ts if rows else None)
                rows, row_ts, n = [], [], 1
            stored = self._stored(k)
            if ns == _CLEAN:
                end = ts - self.lateness + 1
                stored = [s for s in stored if s[1] != end]
            else:
                end = ts + 1
                for s in stored:
                    if s[1] == end:
                        rows.append(self.op._row(k, s[0], s[1], s[2]))
                        row_ts.append(ts)
                if self.lateness:
                    self.op.register(k, _CLEAN, ts + self.lateness)
                else:
                    stored = [s for s in stored if s[1] != end]
            if stored:
                self.put(k, stored)
            else:
                self.delete(k)
        yield rows, (row_ts if rows else None)


class _Global(_Windows):
    """State ``key -> [count, acc]``; emits and starts over at ``count`` records (no timers)."""

    def __init__(self, op: WindowOperator, b: CodeBuilder) -> None:
        super().__init__(op, b)
        code, nid = op.code, self.spec.id
        key = key_code(b, self.spec.key, nid) if self.spec.key is not None else "None"
        get, put = b.bind("get", op.state.get), b.bind("put", op.state.put)
        delete, row = b.bind("delete", op.state.delete), b.bind("row", op._row)
        b.add(0, "def _count(batch, tss):")
        b.add(1, "out = []; out_t = []")
        b.add(1, "for r, t in zip(batch, tss):")
        b.add(2, f"k = {key}", nid)
        b.add(2, f"c = {get}(k)", nid)
        b.add(2, "if c is None:")
        code.new_lines("a", 3)
        b.add(3, "c = [1, a]")
        b.add(2, "else:")
        b.add(3, "a = c[1]")
        code.update_lines("a", 3)
        b.add(3, "c[0] += 1; c[1] = a")
        b.add(2, f"if c[0] >= {self.spec.count}:")
        b.add(3, f"out.append({row}(k, None, None, c[1])); out_t.append(t); {delete}(k)")
        b.add(2, "else:")
        b.add(3, f"{put}(k, c)")
        b.add(1, "return out, out_t")
        self.count_fn = b.compile("_count")

    def process(self, records: Batch, timestamps: list[int], wm: int) -> Output:
        out, out_t = call_generated(self.count_fn, records, timestamps)
        return out, (out_t if out and self.op._event else None)

    def fire(self, timers: Iterable[tuple[int, Any, Any]], wm: int) -> Iterator[Output]:
        return iter(())
