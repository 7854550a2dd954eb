"""Watermarks: strategies declared at a source, per-split generators, and the minimum over inputs.

A watermark ``w`` says "no record with a timestamp ``<= w`` is expected any more" (Flink's
convention): an event-time window ``[start, end)`` fires once the watermark reaches ``end - 1``.

* :class:`WatermarkStrategy` is the frozen declaration of a source's ``watermark:`` key
  (``monotonous``, or ``{max_out_of_orderness: 4s, idle_timeout: 30s}``);
* :meth:`WatermarkStrategy.create_generator` gives one :class:`WatermarkGenerator` per source
  split: the runtime feeds it each batch's timestamps and asks for its watermark periodically
  (``pipeline.auto-watermark-interval``), on the task's injected clock;
* :class:`WatermarkTracker` combines the watermarks of several inputs (a source's splits, or a
  task's input channels) as the minimum over the inputs that are not idle.

Nothing here does I/O or reads the clock itself: every method that needs the time takes
``now_ms`` from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Mapping

from streamlet.errors import PipelineDefinitionError
from streamlet.time.durations import duration_ms, format_ms

#: the watermark before any record (Flink's ``Long.MIN_VALUE``)
MIN_WATERMARK: Final = -(2 ** 63)
#: the final watermark, sent at end of input: every event-time window and timer fires
MAX_WATERMARK: Final = 2 ** 63 - 1


class _Idle:
    """Type of :data:`IDLE` (a singleton, falsy so ``if wm is IDLE`` reads naturally)."""

    _instance: _Idle | None = None

    def __new__(cls) -> _Idle:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "IDLE"

    def __reduce__(self) -> str:
        return "IDLE"


#: what :meth:`WatermarkGenerator.current` returns for a split idle longer than its timeout
IDLE: Final = _Idle()

_STRATEGY_KEYS = ("max_out_of_orderness", "idle_timeout")


@dataclass(frozen=True)
class WatermarkStrategy:
    """How a source derives watermarks from the timestamps of each of its splits.

    ``max_out_of_orderness_ms`` is the bounded lateness ``L``: a split's watermark is
    ``max timestamp seen - L - 1`` (``L = 0`` is ``monotonous``, timestamps that never decrease).
    ``idle_timeout_ms``, when set, marks a split idle once it produced no record for that long
    (on the task's clock), so the source's watermark is the minimum over its other splits.

    Example::

        strategy = WatermarkStrategy.parse({"max_out_of_orderness": "4s"}, "q.yaml: sources.bids.watermark")
        gen = strategy.create_generator()
        gen.on_batch([10_000, 9_000], now_ms=0)
        assert gen.current(now_ms=0) == 10_000 - 4_000 - 1
    """

    max_out_of_orderness_ms: int = 0
    idle_timeout_ms: int | None = None

    @classmethod
    def parse(cls, value: Any, where: str) -> WatermarkStrategy:
        """The strategy of a YAML ``watermark:`` value; errors name ``where`` and the key."""
        if value == "monotonous":
            return cls(0, None)
        if isinstance(value, Mapping):
            for key in value:
                if key not in _STRATEGY_KEYS:
                    raise PipelineDefinitionError(
                        f"unknown key {key!r}; allowed keys: {', '.join(_STRATEGY_KEYS)}", f"{where}.{key}")
            lag = duration_ms(value.get("max_out_of_orderness", 0), f"{where}.max_out_of_orderness")
            idle = None
            if value.get("idle_timeout") is not None:
                idle = duration_ms(value["idle_timeout"], f"{where}.idle_timeout", allow_zero=False)
            return cls(lag, idle)
        raise PipelineDefinitionError(
            f"expected monotonous or a map like {{max_out_of_orderness: 4s, idle_timeout: 30s}}, got {value!r}",
            where)

    def to_spec(self) -> dict[str, Any]:
        """JSON form carried by the JobGraph (:meth:`from_spec` reads it back)."""
        return {"max_out_of_orderness_ms": self.max_out_of_orderness_ms, "idle_timeout_ms": self.idle_timeout_ms}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> WatermarkStrategy:
        """The strategy of a :meth:`to_spec` dict."""
        return cls(int(spec["max_out_of_orderness_ms"]), spec.get("idle_timeout_ms"))

    def describe(self) -> str:
        """One line for plans: ``bounded 4s, idle after 30s``."""
        text = "monotonous" if self.max_out_of_orderness_ms == 0 else f"bounded {format_ms(self.max_out_of_orderness_ms)}"
        if self.idle_timeout_ms is not None:
            text += f", idle after {format_ms(self.idle_timeout_ms)}"
        return text

    def create_generator(self) -> WatermarkGenerator:
        """A fresh generator for one split (its watermark starts at :data:`MIN_WATERMARK`)."""
        return WatermarkGenerator(self.max_out_of_orderness_ms, self.idle_timeout_ms)


class WatermarkGenerator:
    """The watermark of one source split (bounded out-of-orderness, optional idleness).

    Called by the source task only: :meth:`on_batch` for every batch the split produced (after
    its timestamps were extracted), :meth:`current` when the task emits watermarks. Not
    thread-safe (one task owns it). Its state is not checkpointed: after a restore the watermark
    starts over from the replayed records, as in Flink.
    """

    __slots__ = ("_lag", "_idle_ms", "_max_ts", "_last_active")

    def __init__(self, max_out_of_orderness_ms: int = 0, idle_timeout_ms: int | None = None) -> None:
        self._lag = max_out_of_orderness_ms
        self._idle_ms = idle_timeout_ms
        self._max_ts = MIN_WATERMARK + max_out_of_orderness_ms + 1
        #: clock time of the last record (None: none yet, idleness counted from the first query)
        self._last_active: int | None = None

    def on_batch(self, timestamps: list[int], now_ms: int) -> None:
        """Record the timestamps of one batch from this split; a non-empty batch makes it active."""
        if timestamps:
            m = max(timestamps)
            if m > self._max_ts:
                self._max_ts = m
            self._last_active = now_ms

    def current(self, now_ms: int) -> int | _Idle:
        """The split's watermark, or :data:`IDLE` once ``idle_timeout`` passed since its last record.

        The watermark never decreases. A split that never produced a record is idle
        ``idle_timeout`` after the first call (as Flink's ``WatermarksWithIdleness``).
        """
        if self._idle_ms is not None:
            if self._last_active is None:
                self._last_active = now_ms
            elif now_ms - self._last_active >= self._idle_ms:
                return IDLE
        return self._max_ts - self._lag - 1


class WatermarkTracker:
    """The combined watermark of several inputs: the minimum over the active ones.

    Used by a source task over its splits and by every task over its input channels. Inputs are
    numbered ``0 .. n_inputs - 1`` (:meth:`add_input` adds one, e.g. a split assigned later).

    * each input's watermark only moves forward (a lower value than it already had is ignored);
    * an idle input is left out of the minimum; when every input is idle the combined watermark
      holds and :attr:`idle` is True (the task then tells its consumers it is idle);
    * an input that becomes active again behind the combined watermark is left out until it
      catches up, so the combined watermark never moves back (Flink's ``StatusWatermarkValve``);
      records it sends meanwhile may be late downstream;
    * :meth:`update` and :meth:`set_idle` return the new combined watermark when it advanced,
      else None, so the caller forwards exactly the advances.

    Example::

        t = WatermarkTracker(2)
        assert t.update(0, 100) is None      # input 1 is still at MIN_WATERMARK
        assert t.update(1, 50) == 50
        assert t.set_idle(1, True) == 100    # input 1 left out of the minimum
    """

    __slots__ = ("_wms", "_idle", "_aligned", "current")

    def __init__(self, n_inputs: int = 0) -> None:
        self._wms: list[int] = [MIN_WATERMARK] * n_inputs
        self._idle: list[bool] = [False] * n_inputs
        self._aligned: list[bool] = [True] * n_inputs
        #: the combined watermark last returned (MIN_WATERMARK before any)
        self.current: int = MIN_WATERMARK

    def __len__(self) -> int:
        return len(self._wms)

    def add_input(self) -> int:
        """Add an input (at :data:`MIN_WATERMARK`, active, not yet aligned); return its index.

        It joins the minimum once its watermark reaches the combined one, so adding a split to
        a running source never moves the source's watermark back.
        """
        self._wms.append(MIN_WATERMARK)
        self._idle.append(False)
        self._aligned.append(self.current == MIN_WATERMARK)
        return len(self._wms) - 1

    @property
    def idle(self) -> bool:
        """True when there are inputs and every one of them is idle."""
        return bool(self._idle) and all(self._idle)

    def is_idle(self, index: int) -> bool:
        """Whether input ``index`` is idle."""
        return self._idle[index]

    def watermark_of(self, index: int) -> int:
        """The last watermark of input ``index``."""
        return self._wms[index]

    def update(self, index: int, watermark: int) -> int | None:
        """Input ``index`` reached ``watermark`` (it is active from now on, if it was idle)."""
        if watermark > self._wms[index]:
            self._wms[index] = watermark
        if self._idle[index]:
            self._idle[index] = False
            self._aligned[index] = self._wms[index] >= self.current
        elif not self._aligned[index] and self._wms[index] >= self.current:
            self._aligned[index] = True
        return self._advance()

    def set_idle(self, index: int, idle: bool) -> int | None:
        """Mark input ``index`` idle (left out of the minimum) or active again."""
        if self._idle[index] == idle:
            return None
        self._idle[index] = idle
        if not idle:
            self._aligned[index] = self._wms[index] >= self.current
        return self._advance()

    def _advance(self) -> int | None:
        low: int | None = None
        for wm, idle, aligned in zip(self._wms, self._idle, self._aligned):
            if not idle and aligned and (low is None or wm < low):
                low = wm
        if low is not None and low > self.current:
            self.current = low
            for i, wm in enumerate(self._wms):
                if not self._aligned[i] and wm >= low:
                    self._aligned[i] = True
            return low
        return None
