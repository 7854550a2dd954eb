"""The control plane inside a task: a mailbox of actions and the task's timers.

Flink's mailbox model, on asyncio: the TaskExecutor (trigger a checkpoint at a source, "checkpoint
n is complete") and the task's own timers (processing-time callbacks, periodic watermarks, the
buffer timeout) put *actions* into the task's :class:`Mailbox`.  The task serves them between
batches and whenever it waits for input (a source waiting for its reader, a task waiting for a
channel), so an action never waits for the next record, and never runs concurrently with the
processing of a batch: an operator sees mailbox actions strictly between its ``process`` calls.

The task waits with one future (:meth:`Mailbox.wakeup`) that its input side resolves too, so a
wait costs no task creation.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from typing import Any, Awaitable, Callable

from streamlet.clock import Clock

logger = logging.getLogger(__name__)

Action = Callable[[], "Awaitable[None] | None"]
#: actions queue up only from the JobManager (a few per checkpoint) and from timers (one per due
#: deadline); more than this means a bug, not load
MAILBOX_CAPACITY = 10_000


class MailboxFullError(RuntimeError):
    """More actions are waiting than :data:`MAILBOX_CAPACITY`."""


class Mailbox:
    """Actions for one task, served in order by the task itself."""

    __slots__ = ("_actions", "_waiter", "name")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._actions: deque[Action] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __bool__(self) -> bool:
        return bool(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def put(self, action: Action) -> None:
        """Queue ``action`` (called from the event loop; never blocks) and wake the task."""
        if len(self._actions) >= MAILBOX_CAPACITY:
            raise MailboxFullError(f"mailbox of task {self.name!r} holds {len(self._actions)} actions; "
                                   "the task is stuck or a caller floods it")
        self._actions.append(action)
        self.wake()

    def wake(self) -> None:
        """Resolve the task's current wait, if it waits (also used by its input side)."""
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def wakeup(self) -> asyncio.Future[None]:
        """A future resolved by the next :meth:`put` or :meth:`wake`; already done when actions wait."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = fut
        if self._actions:
            fut.set_result(None)
        return fut

    async def serve(self) -> None:
        """Run every queued action, in order (actions queued meanwhile run too)."""
        actions = self._actions
        while actions:
            result = actions.popleft()()
            if result is not None:
                await result


class TaskTimers:
    """Deadlines on the task's clock (``clock.time_ms()``) whose callbacks run as mailbox actions.

    One sleeper task, owned here, waits for the earliest deadline; :meth:`close` cancels it.
    ``every(interval, fn)`` repeats ``fn`` every ``interval`` seconds until cancelled.
    """

    def __init__(self, clock: Clock, mailbox: Mailbox) -> None:
        self.clock = clock
        self.mailbox = mailbox
        self._heap: list[tuple[int, int, Action]] = []
        self._seq = itertools.count()
        self._sleeper: asyncio.Task[None] | None = None
        self._sleeping_until: int | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, time_ms: int, action: Action) -> None:
        """Run ``action`` as a mailbox action once ``clock.time_ms() >= time_ms``."""
        if self._closed:
            return
        heapq.heappush(self._heap, (time_ms, next(self._seq), action))
        if self._sleeping_until is None or time_ms < self._sleeping_until:
            self._arm()

    def every(self, interval: float, action: Callable[[], Any]) -> Callable[[], None]:
        """Run ``action`` every ``interval`` seconds (as mailbox actions); returns a cancel function."""
        step = max(1, int(interval * 1000))
        cancelled = False

        def fire() -> Any:
            if cancelled:
                return None
            self.at(self.clock.time_ms() + step, fire)
            return action()

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True

        self.at(self.clock.time_ms() + step, fire)
        return cancel

    def _arm(self) -> None:
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.cancel()
        if not self._heap:
            self._sleeper, self._sleeping_until = None, None
            return
        self._sleeping_until = self._heap[0][0]
        self._sleeper = asyncio.get_running_loop().create_task(self._sleep(self._sleeping_until),
                                                               name=f"timers {self.mailbox.name}")

    async def _sleep(self, until_ms: int) -> None:
        try:
            delay = (until_ms - self.clock.time_ms()) / 1000
            if delay > 0:
                await self.clock.sleep(delay)
        except asyncio.CancelledError:
            return
        self._sleeper, self._sleeping_until = None, None
        now = self.clock.time_ms()
        while self._heap and self._heap[0][0] <= now:
            _, _, action = heapq.heappop(self._heap)
            self.mailbox.put(action)
        if self._heap:
            self._arm()

    async def close(self) -> None:
        """Cancel the sleeper and drop every deadline (the task ended)."""
        self._closed = True
        self._heap.clear()
        sleeper, self._sleeper = self._sleeper, None
        if sleeper is not None and not sleeper.done():
            sleeper.cancel()
            try:
                await sleeper
            except asyncio.CancelledError:
                pass
