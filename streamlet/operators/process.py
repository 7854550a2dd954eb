"""Keyed process functions: user code with keyed state, timers and side outputs.

``process: package.module:Class`` on a keyed node runs :class:`KeyedProcessOperator`, which
creates one ``Class()`` per subtask and calls it per record (Flink's ``KeyedProcessFunction``)::

    class Detector:
        def open(self, ctx):                     # optional: obtain state handles once
            self.last = ctx.value_state("last")
            self.seen = ctx.map_state("seen")

        def process_element(self, record, ctx):  # required; return an iterable of records (or None)
            if self.last.value() is not None and record["amount"] > 10 * self.last.value():
                ctx.output("alerts", {"key": ctx.key, "amount": record["amount"]})
            self.last.update(record["amount"])
            ctx.timers.register_event_time(ctx.timestamp + 60_000)
            return [record]

        def on_timer(self, timestamp, ctx):      # optional; ctx.time_domain is "event" or "processing"
            self.last.clear()
            return []

        def close(self):                         # optional
            ...

Contract:

* ``ctx.key`` is the current record's (or timer's) key; state handles read and write the value
  of that key only (:class:`ValueHandle`, :class:`ListHandle`, :class:`MapHandle`; values are JSON
  values, they go into checkpoints); ``ttl=`` seconds expires entries (on the task clock);
* ``ctx.timestamp`` is the record's event time (None without event time) or the timer's time;
  ``ctx.current_watermark`` and ``ctx.current_processing_time`` are the operator's times;
* ``ctx.timers.register_event_time(t)`` / ``register_processing_time(t)`` set a timer for the
  current key (one per key and timestamp: registering it again does nothing), ``delete_*``
  removes it; event-time timers fire, in timestamp order, once the watermark reaches ``t``;
* what ``process_element`` and ``on_timer`` return goes to the main output, with the record's
  (or the timer's) timestamp; ``ctx.output(tag, record)`` sends to the side output ``tag``
  (declared with ``side_outputs: [tag]`` on the node);
* the function object itself must hold no state that must survive a failure: only state handles
  are checkpointed.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from streamlet.errors import UserFunctionError
from streamlet.graph.operators import ProcessSpec
from streamlet.operators.base import FIRE_CHUNK, NO_OUTPUT, Batch, Operator, Output, RuntimeContext, Timestamps, concat
from streamlet.operators.codegen import CodeBuilder, call_generated, keys_function
from streamlet.state.base import StateDescriptor, StateKind
from streamlet.time.timers import TimerService
from streamlet.udf import resolve_path

EVENT = "event"
PROCESSING = "processing"


class ValueHandle:
    """One value per key: ``value()``, ``update(v)``, ``clear()``."""

    __slots__ = ("_ctx", "_state")

    def __init__(self, ctx: ProcessContext, state: Any) -> None:
        self._ctx, self._state = ctx, state

    def value(self) -> Any:
        """The current key's value, or None."""
        return self._state.get(self._ctx.key)

    def update(self, value: Any) -> None:
        """Set the current key's value (None clears it)."""
        if value is None:
            self._state.delete(self._ctx.key)
        else:
            self._state.put(self._ctx.key, value)

    def clear(self) -> None:
        """Remove the current key's value."""
        self._state.delete(self._ctx.key)


class ListHandle:
    """A list per key: ``get()``, ``add(v)``, ``add_all(vs)``, ``update(vs)``, ``clear()``."""

    __slots__ = ("_ctx", "_state")

    def __init__(self, ctx: ProcessContext, state: Any) -> None:
        self._ctx, self._state = ctx, state

    def get(self) -> list[Any]:
        """The current key's elements (a copy)."""
        return list(self._state.get(self._ctx.key))

    def add(self, value: Any) -> None:
        self._state.add(self._ctx.key, value)

    def add_all(self, values: Iterable[Any]) -> None:
        self._state.add_all(self._ctx.key, list(values))

    def update(self, values: Iterable[Any]) -> None:
        self._state.update(self._ctx.key, list(values))

    def clear(self) -> None:
        self._state.clear(self._ctx.key)


class MapHandle:
    """A map per key: ``get(k)``, ``put(k, v)``, ``contains(k)``, ``remove(k)``, ``items()``, ``clear()``."""

    __slots__ = ("_ctx", "_state")

    def __init__(self, ctx: ProcessContext, state: Any) -> None:
        self._ctx, self._state = ctx, state

    def get(self, user_key: Any, default: Any = None) -> Any:
        v = self._state.get(self._ctx.key, user_key)
        return default if v is None else v

    def put(self, user_key: Any, value: Any) -> None:
        self._state.put(self._ctx.key, user_key, value)

    def contains(self, user_key: Any) -> bool:
        return bool(self._state.contains(self._ctx.key, user_key))

    def remove(self, user_key: Any) -> None:
        self._state.remove(self._ctx.key, user_key)

    def items(self) -> list[tuple[Any, Any]]:
        """The current key's entries (a copy)."""
        return list(self._state.entries(self._ctx.key).items())

    def keys(self) -> list[Any]:
        return list(self._state.entries(self._ctx.key))

    def clear(self) -> None:
        self._state.clear(self._ctx.key)


class TimerHandle:
    """``ctx.timers``: timers of the current key."""

    __slots__ = ("_ctx", "_service")

    def __init__(self, ctx: ProcessContext, service: TimerService) -> None:
        self._ctx, self._service = ctx, service

    def register_event_time(self, timestamp: int) -> None:
        self._service.register_event_time(self._ctx.key, None, int(timestamp))

    def register_processing_time(self, timestamp: int) -> None:
        self._service.register_processing_time(self._ctx.key, None, int(timestamp))

    def delete_event_time(self, timestamp: int) -> None:
        self._service.delete_event_time(self._ctx.key, None, int(timestamp))

    def delete_processing_time(self, timestamp: int) -> None:
        self._service.delete_processing_time(self._ctx.key, None, int(timestamp))


class ProcessContext:
    """What a process function gets as ``ctx`` (see the module docstring)."""

    def __init__(self, op: KeyedProcessOperator) -> None:
        self._op = op
        #: the current key
        self.key: Any = None
        #: the current record's event time (or the firing timer's time); None without event time
        self.timestamp: int | None = None
        #: for ``on_timer``: ``"event"`` or ``"processing"``
        self.time_domain: str | None = None
        self.timers = TimerHandle(self, op.timers)
        self._side: dict[str, tuple[list[Any], list[Any]]] = {}

    @property
    def current_watermark(self) -> int:
        """The operator's event time (the last watermark; a very small number before any)."""
        return self._op.timers.current_watermark

    @property
    def current_processing_time(self) -> int:
        """The task clock's time in epoch milliseconds."""
        return self._op.ctx.clock.time_ms()

    def _descriptor(self, name: str, kind: StateKind, ttl: float | None) -> Any:
        return self._op.ctx.state.state(StateDescriptor(f"{self._op.spec.id}/{name}", kind, ttl))

    def value_state(self, name: str, ttl: float | None = None) -> ValueHandle:
        """The value state ``name`` of this node (call in ``open``)."""
        return ValueHandle(self, self._descriptor(name, StateKind.VALUE, ttl))

    def list_state(self, name: str, ttl: float | None = None) -> ListHandle:
        """The list state ``name`` of this node (call in ``open``)."""
        return ListHandle(self, self._descriptor(name, StateKind.LIST, ttl))

    def map_state(self, name: str, ttl: float | None = None) -> MapHandle:
        """The map state ``name`` of this node (call in ``open``)."""
        return MapHandle(self, self._descriptor(name, StateKind.MAP, ttl))

    def output(self, tag: str, record: Any) -> None:
        """Send ``record`` to the side output ``tag`` (with the current timestamp)."""
        if tag not in self._op.spec.side_outputs:
            raise ValueError(f"side output {tag!r} is not declared; add it to side_outputs: of node "
                             f"{self._op.spec.id!r} (declared: {list(self._op.spec.side_outputs)})")
        recs, tss = self._side.setdefault(tag, ([], []))
        recs.append(record)
        tss.append(self.timestamp)

    def _flush_side(self) -> None:
        for tag, (recs, tss) in self._side.items():
            if recs:
                self._op.ctx.side_output(tag, recs, tss if all(t is not None for t in tss) else None)
        self._side.clear()


class KeyedProcessOperator(Operator):
    """Runs a :class:`~streamlet.graph.operators.ProcessSpec` (see the module docstring)."""

    def __init__(self, spec: ProcessSpec, ctx: RuntimeContext) -> None:
        super().__init__(spec, ctx)
        self.node_ids = (spec.id,)

    def open(self) -> None:
        spec = self.spec
        self.timers = TimerService(self.ctx.state, spec.id, self.ctx.processing_time, self._on_processing_timers)
        cls = resolve_path(spec.path)
        self.fn = cls()
        if not callable(getattr(self.fn, "process_element", None)):
            raise UserFunctionError(spec.id, None, TypeError(
                f"{spec.path} has no process_element(record, ctx) method; a process function class defines "
                "process_element and optionally open, on_timer and close"))
        self.pctx = ProcessContext(self)
        b = CodeBuilder(f"{self.ctx.vertex_name}:{spec.id}")
        self._keys = keys_function(b, spec.key, spec.id)
        self._on_timer = getattr(self.fn, "on_timer", None)
        opener = getattr(self.fn, "open", None)
        if opener is not None:
            self._call(opener, None, self.pctx)
        if self.ctx.restored:
            self.timers.restore()

    def _call(self, fn: Any, record: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except UserFunctionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code raised: name the node and the record
            raise UserFunctionError(self.spec.id, record, exc) from exc

    def process(self, records: Batch, timestamps: Timestamps) -> Output:
        keys = call_generated(self._keys, records)
        ctx = self.pctx
        ctx.time_domain = None
        fn = self.fn.process_element
        out: list[Any] = []
        out_ts: list[Any] = []
        tss = timestamps if timestamps is not None else [None] * len(records)
        for r, k, t in zip(records, keys, tss):
            ctx.key = k
            ctx.timestamp = t
            try:
                res = fn(r, ctx)
            except Exception as exc:  # noqa: BLE001 - the user's code raised: name the node and the record
                raise UserFunctionError(self.spec.id, r, exc) from exc
            if res is not None:
                n = len(out)
                out.extend(res)
                out_ts.extend([t] * (len(out) - n))
        ctx._flush_side()
        return out, (out_ts if timestamps is not None and out else None)

    def _fire(self, timers: Iterable[tuple[int, Any, Any]], domain: str) -> Iterator[Output]:
        """Call ``on_timer`` per due timer (consumed lazily), yielding every :data:`FIRE_CHUNK` timers."""
        if self._on_timer is None:
            n = 0
            for _ in timers:
                n += 1
                if n == FIRE_CHUNK:
                    yield NO_OUTPUT
                    n = 0
            return
        ctx = self.pctx
        # processing-time timers have no event time (Flink erases the timestamp)
        timed = domain == EVENT
        out: list[Any] = []
        out_ts: list[int] = []
        fired = 0
        for ts, k, _ in timers:
            fired += 1
            if fired > FIRE_CHUNK:
                ctx._flush_side()
                ctx.time_domain = None
                yield out, (out_ts if out and timed else None)
                out, out_ts, fired = [], [], 1
            ctx.key, ctx.timestamp, ctx.time_domain = k, ts, domain
            res = self._call(self._on_timer, {"timer": ts, "key": k}, ts, ctx)
            if res is not None:
                n = len(out)
                out.extend(res)
                out_ts.extend([ts] * (len(out) - n))
        ctx._flush_side()
        ctx.time_domain = None
        yield out, (out_ts if out and timed else None)

    def process_watermark(self, watermark: int) -> Output:
        return concat(self.process_watermark_chunks(watermark))

    def process_watermark_chunks(self, watermark: int) -> Iterator[Output]:
        if watermark <= self.timers.current_watermark:
            return iter(())
        return self._fire(self.timers.advance_watermark(watermark), EVENT)

    def _on_processing_timers(self, timers: Iterable[tuple[int, Any, Any]], time_ms: int) -> Iterator[Output]:
        return self._fire(timers, PROCESSING)

    def close(self) -> None:
        closer = getattr(getattr(self, "fn", None), "close", None)
        if closer is not None:
            self._call(closer, None)
