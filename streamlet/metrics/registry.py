"""Metrics: counters, gauges and meters in groups scoped job > task > subtask > operator.

Names follow Flink's (``numRecordsIn``, ``numRecordsOut``, ``numRecordsInPerSecond``,
``numRecordsOutPerSecond``, ``busyTimeMsPerSecond``, ``idleTimeMsPerSecond``,
``backPressuredTimeMsPerSecond``) so reports, REST views and (later) Prometheus read the same
values.  The rate arithmetic lives here and only here:

* a :class:`Meter` turns a counter into a per-second rate between two :meth:`MetricGroup.sample`
  calls;
* a :class:`TimeMeter` turns accumulated seconds into "ms per second" between two samples, and
  counts a wait still in progress up to the sampling instant (a source blocked for seconds by a
  slow sink reads as backpressured *while* it waits, not only once the wait ended).

Hot paths touch only plain attributes (``counter.count += n``, ``time.total += dt``); sampling
happens on the reporter's schedule.  Time comes from the caller (``now`` in seconds, a monotonic
reading), so tests drive sampling without sleeping.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator

#: the clock busy/backpressure stopwatches read (monotonic seconds); sampling uses the same one
perf = time.perf_counter


class Counter:
    """A count that only grows (``count += n`` on the hot path)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def value(self) -> int:
        return self.count


class Gauge:
    """A value read from a function when sampled or reported."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn

    def value(self) -> Any:
        return self._fn()


class Meter:
    """Per-second rate of a :class:`Counter` over the last sample interval."""

    __slots__ = ("counter", "_last_count", "_last_time", "rate")

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._last_count = 0
        self._last_time: float | None = None
        self.rate = 0.0

    def sample(self, now: float) -> None:
        count = self.counter.count
        if self._last_time is not None and now > self._last_time:
            self.rate = (count - self._last_count) / (now - self._last_time)
        self._last_count, self._last_time = count, now

    def value(self) -> float:
        return self.rate


class TimeMeter:
    """Milliseconds per second spent in one activity (busy, idle or backpressured).

    ``total`` accumulates finished spans (seconds); :meth:`begin` / :meth:`end` bracket a span in
    progress, which :meth:`sample` counts up to ``now``.  The result is clamped to 0..1000.
    """

    __slots__ = ("total", "since", "_last_total", "_last_time", "rate")

    def __init__(self) -> None:
        self.total = 0.0
        #: perf() reading when the span in progress began, or 0.0 when none is
        self.since = 0.0
        self._last_total = 0.0
        self._last_time: float | None = None
        self.rate = 0.0

    def begin(self) -> None:
        self.since = perf()

    def end(self) -> None:
        if self.since:
            self.total += perf() - self.since
            self.since = 0.0

    def current(self, now: float) -> float:
        """Seconds spent so far, the span in progress included."""
        return self.total + (now - self.since if self.since else 0.0)

    def sample(self, now: float) -> None:
        spent = self.current(now)
        if self._last_time is not None and now > self._last_time:
            self.rate = max(0.0, min(1000.0, (spent - self._last_total) / (now - self._last_time) * 1000.0))
        self._last_total, self._last_time = spent, now

    def value(self) -> float:
        return self.rate


class Histogram:
    """The distribution of the last ``size`` values (a sliding window, as Flink's
    DescriptiveStatisticsHistogram), e.g. latency-marker latencies in ms.

    :meth:`update` is O(1) (a ring buffer); quantiles are computed only when reported.
    """

    __slots__ = ("_values", "_next", "_size", "count", "sum")

    def __init__(self, size: int = 128) -> None:
        self._values: list[float] = []
        self._next = 0
        self._size = size if size > 0 else 1
        #: values ever recorded and their sum (Prometheus summaries carry both)
        self.count = 0
        self.sum = 0.0

    def update(self, value: float) -> None:
        if len(self._values) < self._size:
            self._values.append(value)
        else:
            self._values[self._next] = value
            self._next = (self._next + 1) % self._size
        self.count += 1
        self.sum += value

    def quantiles(self, qs: tuple[float, ...] = (0.5, 0.75, 0.95, 0.98, 0.99, 0.999)) -> dict[float, float]:
        """Each quantile of the window (nearest rank); empty when nothing was recorded."""
        values = sorted(self._values)
        if not values:
            return {}
        n = len(values)
        return {q: values[min(n - 1, max(0, math.ceil(q * n) - 1))] for q in qs}

    def value(self) -> dict[str, Any]:
        return {"count": self.count, "sum": self.sum, **{str(q): v for q, v in self.quantiles().items()}}


Metric = Counter | Gauge | Meter | TimeMeter | Histogram


class MetricGroup:
    """Named metrics under a scope (labels such as ``job_id``, ``task_name``, ``subtask_index``).

    Example::

        task = MetricGroup({"job_id": jid, "task_name": "src", "subtask_index": "0"})
        n_in = task.counter("numRecordsIn"); task.meter("numRecordsInPerSecond", n_in)
        n_in.count += 512
        task.sample(perf()); task.values()["numRecordsInPerSecond"]
    """

    def __init__(self, scope: dict[str, str] | None = None, name: str = "") -> None:
        self.scope = dict(scope or {})
        #: Flink's scope name, the middle of the exported metric name: ``taskmanager_job_task`` gives
        #: ``flink_taskmanager_job_task_numRecordsIn`` (see :mod:`streamlet.metrics.reporters`)
        self.name = name
        self._metrics: dict[str, Metric] = {}
        self._children: list[MetricGroup] = []

    def _add(self, name: str, metric: Any) -> Any:
        if name in self._metrics:
            raise ValueError(f"metric {name!r} is registered twice in {self.scope}")
        self._metrics[name] = metric
        return metric

    def counter(self, name: str) -> Counter:
        return self._add(name, Counter())

    def gauge(self, name: str, fn: Callable[[], Any]) -> Gauge:
        return self._add(name, Gauge(fn))

    def meter(self, name: str, counter: Counter) -> Meter:
        return self._add(name, Meter(counter))

    def time_meter(self, name: str) -> TimeMeter:
        return self._add(name, TimeMeter())

    def group(self, **labels: str) -> MetricGroup:
        """A child group of the same scope name: this scope plus ``labels``."""
        child = MetricGroup({**self.scope, **labels}, self.name)
        self._children.append(child)
        return child

    def child(self, name: str, **labels: str) -> MetricGroup:
        """A child scope ``<this name>_<name>`` with this scope's labels plus ``labels``
        (``job_task`` under ``taskmanager``, ``operator`` under ``taskmanager_job_task``)."""
        child = MetricGroup({**self.scope, **labels}, f"{self.name}_{name}" if self.name else name)
        self._children.append(child)
        return child

    def attach(self, child: MetricGroup) -> MetricGroup:
        """Make ``child`` (a group with its own scope and name) a child of this one, so it is
        reported and removed with it; returns it."""
        self._children.append(child)
        return child

    def histogram(self, name: str, size: int = 128) -> Histogram:
        return self._add(name, Histogram(size))

    def remove(self, child: MetricGroup) -> None:
        """Drop a child group (a subtask or job that ended); unknown groups are ignored."""
        try:
            self._children.remove(child)
        except ValueError:
            pass

    def items(self) -> Iterator[tuple[str, Metric]]:
        """This group's metrics by name (children not included), without reading them."""
        return iter(self._metrics.items())

    def sample(self, now: float) -> None:
        """Advance every meter of this group and its children to ``now`` (monotonic seconds)."""
        for m in self._metrics.values():
            if isinstance(m, (Meter, TimeMeter)):
                m.sample(now)
        for c in self._children:
            c.sample(now)

    def values(self) -> dict[str, Any]:
        """This group's metrics by name (children not included)."""
        return {name: m.value() for name, m in self._metrics.items()}

    def walk(self) -> Iterator[MetricGroup]:
        """This group and every descendant."""
        yield self
        for c in self._children:
            yield from c.walk()


class TaskIOMetrics:
    """The I/O metrics of one subtask (Flink's ``TaskIOMetricGroup``), read by every reporter.

    * ``records_in`` / ``records_out``: records read and written (once per record, however many
      edges it leaves on);
    * ``busy`` is measured directly: the task adds the time it spends in its own synchronous steps
      (reading, running the chain, partitioning); time it waits for the event loop while other
      tasks run is therefore *not* busy time;
    * ``backpressured``: waits for output space or credit, counted while in progress;
    * idle is the rest of the interval (waiting for input, or for the loop).
    """

    def __init__(self, group: MetricGroup) -> None:
        self.group = group
        self.records_in = group.counter("numRecordsIn")
        self.records_out = group.counter("numRecordsOut")
        self.records_in_rate = group.meter("numRecordsInPerSecond", self.records_in)
        self.records_out_rate = group.meter("numRecordsOutPerSecond", self.records_out)
        self.busy = group.time_meter("busyTimeMsPerSecond")
        self.backpressured = group.time_meter("backPressuredTimeMsPerSecond")
        group.gauge("idleTimeMsPerSecond", self._idle)
        #: fraction of a bounded source read (0..1), when known
        self.progress: float | None = None
        group.gauge("inputProgress", lambda: self.progress)
        #: perf() readings of the task's start and end (0.0 until then)
        self.started = 0.0
        self.ended = 0.0

    def _idle(self) -> float:
        return max(0.0, 1000.0 - self.busy.rate - self.backpressured.rate)

    def sample(self, now: float) -> None:
        self.group.sample(now)

    def report(self, now: float) -> dict[str, Any]:
        """Cumulative counts and the rates of the last sample interval, as the RPC carries them."""
        elapsed = ((self.ended or now) - self.started) if self.started else 0.0
        busy = self.busy.current(now)
        bp = self.backpressured.current(now)
        return {"records_in": self.records_in.count, "records_out": self.records_out.count,
                "records_in_per_second": self.records_in_rate.rate,
                "records_out_per_second": self.records_out_rate.rate,
                "busy_ms_per_second": self.busy.rate, "idle_ms_per_second": self._idle(),
                "backpressured_ms_per_second": self.backpressured.rate,
                "busy_ms": busy * 1000, "backpressured_ms": bp * 1000,
                "idle_ms": max(0.0, elapsed - busy - bp) * 1000, "progress": self.progress}
