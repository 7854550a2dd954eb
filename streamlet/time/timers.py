"""Per-operator timer services: event-time and processing-time timers per key, in keyed state.

A :class:`TimerService` keeps two timer queues of the subtask's keyed state backend
(:meth:`~streamlet.state.base.KeyedStateBackend.timer_queue`), so timers are checkpointed,
restored and redistributed by key group with the rest of the operator's state:

* a timer is ``(timestamp, key, namespace)``, registered at most once (registering the same
  one again is a no-op) and deleted by the same triple;
* event-time timers fire when the operator's watermark reaches their timestamp
  (:meth:`TimerService.advance_watermark`), in timestamp order; timers that firing registers at
  or below the watermark fire in the same call;
* processing-time timers fire when the task's clock reaches their timestamp: the service keeps
  exactly one callback registered with the task's processing-time service (``ctx.processing_time``,
  served by the task mailbox, never concurrently with a batch) for the earliest timer, and
  calls the operator's handler with every due timer; the handler returns its output as chunks
  (at most ``FIRE_CHUNK`` fired timers each), so a clock tick that fires a million timers never
  holds the event loop for the whole firing.

Called by operators only (window, process function, joins), from their hooks. The service
never reads the clock itself: the processing-time service decides when a callback runs.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Iterator, Protocol

from streamlet.time.watermarks import MIN_WATERMARK

Timer = tuple[int, Hashable, Hashable]
#: what an operator's handler returns: an output batch and its timestamps
Output = tuple[list[Any], "list[int] | None"]


class ProcessingTimeScheduler(Protocol):
    """The task's processing-time service (``RuntimeContext.processing_time``)."""

    def register(self, time_ms: int, callback: Callable[[int], Iterable[Output]]) -> None:
        """Call ``callback(time_ms)`` once the task's clock reached ``time_ms``; it returns its
        output in chunks, consumed one by one."""


class TimerService:
    """Event-time and processing-time timers of one operator on one subtask.

    ``backend`` is the subtask's keyed state backend, ``name`` the operator's node id (the queues
    are ``<name>/event`` and ``<name>/processing``), ``scheduler`` the task's processing-time
    service (None when the operator uses no processing-time timers) and
    ``on_processing_timers(timers, time_ms)`` the operator's handler of due processing-time
    timers (an iterator it consumes lazily), which returns its output as an iterator of chunks
    that the scheduler passes on one by one.  Example::

        timers = TimerService(ctx.state, "counts", ctx.processing_time, self._on_proc)
        timers.register_event_time("k1", None, 9_999)
        for ts, key, ns in timers.advance_watermark(10_000):
            ...  # fire
    """

    def __init__(self, backend: Any, name: str, scheduler: ProcessingTimeScheduler | None = None,
                 on_processing_timers: Callable[[Iterator[Timer], int], Iterable[Output]] | None = None) -> None:
        self.event = backend.timer_queue(f"{name}/event")
        self.processing = backend.timer_queue(f"{name}/processing")
        self._scheduler = scheduler
        self._handler = on_processing_timers
        #: the time of the one callback registered with the scheduler (None: none pending)
        self._scheduled: int | None = None
        #: the last watermark passed to :meth:`advance_watermark`
        self.current_watermark: int = MIN_WATERMARK

    # -- event time -------------------------------------------------------------------------------

    def register_event_time(self, key: Hashable, namespace: Hashable, timestamp: int) -> bool:
        """Register an event-time timer; False when it was registered already."""
        return self.event.add(key, namespace, timestamp)

    def delete_event_time(self, key: Hashable, namespace: Hashable, timestamp: int) -> bool:
        """Delete an event-time timer; False when it was not registered."""
        return self.event.delete(key, namespace, timestamp)

    def advance_watermark(self, watermark: int) -> Iterator[Timer]:
        """Every event-time timer with a timestamp ``<= watermark``, in timestamp order.

        Each timer is removed before it is yielded; timers registered meanwhile at or below the
        watermark are yielded too (a process function that registers "now" fires it at once).
        """
        if watermark > self.current_watermark:
            self.current_watermark = watermark
        queue = self.event
        while True:
            # one timestamp at a time, so timers registered while firing keep timestamp order
            head = queue.peek()
            if head is None or head[0] > watermark:
                return
            yield from queue.pop_until(head[0])

    # -- processing time --------------------------------------------------------------------------

    def register_processing_time(self, key: Hashable, namespace: Hashable, timestamp: int) -> bool:
        """Register a processing-time timer (fires once the task's clock reaches ``timestamp``)."""
        if not self.processing.add(key, namespace, timestamp):
            return False
        self._schedule(timestamp)
        return True

    def delete_processing_time(self, key: Hashable, namespace: Hashable, timestamp: int) -> bool:
        """Delete a processing-time timer; False when it was not registered."""
        return self.processing.delete(key, namespace, timestamp)

    def restore(self) -> None:
        """Schedule the earliest restored processing-time timer (call once state was restored).

        Timers whose time already passed fire at the scheduler's first opportunity.
        """
        head = self.processing.peek()
        if head is not None:
            self._schedule(head[0])

    def pop_processing_until(self, time_ms: int) -> Iterator[Timer]:
        """The processing-time timers due at ``time_ms``, removed as they are yielded, in order.

        Like :meth:`advance_watermark`, timers registered meanwhile at or below ``time_ms`` are
        yielded too (end of input uses it with the largest time: everything fires).
        """
        queue = self.processing
        while True:
            head = queue.peek()
            if head is None or head[0] > time_ms:
                return
            yield from queue.pop_until(head[0])

    def _schedule(self, timestamp: int) -> None:
        if self._scheduler is None:
            raise RuntimeError("this operator registered a processing-time timer but its task has no "
                               "processing-time service")
        if self._scheduled is None or timestamp < self._scheduled:
            self._scheduled = timestamp
            self._scheduler.register(timestamp, self._fire)

    def _fire(self, time_ms: int) -> Iterator[Output]:
        """The scheduler's callback: the handler's chunks for the timers due at ``time_ms``, then
        the next earliest timer is scheduled (once the last chunk was taken)."""
        if self._scheduled is not None and time_ms < self._scheduled:
            return  # an earlier callback superseded by nothing: a stale one
        self._scheduled = None
        if self._handler is not None:
            yield from self._handler(self.pop_processing_until(time_ms), time_ms)
        else:
            for _ in self.pop_processing_until(time_ms):
                pass
        head = self.processing.peek()
        if head is not None:
            self._schedule(head[0])
