"""Channels between subtasks: bounded buffers, an input gate, and the output side.

* :class:`InputChannel` is the receiving end of one channel, a buffer of at most ``capacity``
  elements.  A local producer awaits :meth:`InputChannel.put` (a full buffer suspends it: that is
  backpressure).  A remote producer's elements arrive through the data connection, which only
  sends with credit, so they never overflow; each element taken grants one credit back
  (``on_consumed``).
* :class:`InputGate` merges a subtask's input channels, fairly (round robin over channels with
  data), and can hold channels back (``block``) for barrier alignment.
* :class:`OutputChannel` is what a producer writes to: :class:`LocalOutputChannel` here, a remote
  one in :mod:`.remote`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Protocol


class InputChannel:
    """Receiving end of one channel: a bounded buffer of elements."""

    __slots__ = ("channel_id", "capacity", "input_index", "_buf", "_gate", "_space", "queued",
                 "blocked", "finished", "on_consumed", "index")

    def __init__(self, channel_id: str, capacity: int, input_index: int = 0) -> None:
        self.channel_id = channel_id
        self.capacity = capacity
        self.input_index = input_index
        self._buf: deque[Any] = deque()
        self._gate: InputGate | None = None
        self._space: asyncio.Future[None] | None = None
        self.queued = False
        self.blocked = False
        self.finished = False
        #: position in its gate (set by the gate)
        self.index = 0
        #: called after each element is taken (a remote channel grants a credit)
        self.on_consumed: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._buf)

    def has_space(self) -> bool:
        return len(self._buf) < self.capacity

    async def put(self, element: Any) -> None:
        """Append ``element``; wait while the buffer is full."""
        while len(self._buf) >= self.capacity:
            fut = self._space
            if fut is None or fut.done():
                fut = self._space = asyncio.get_running_loop().create_future()
            await fut
        self.put_nowait(element)

    def put_nowait(self, element: Any) -> None:
        """Append without waiting (remote channels: credit guarantees space)."""
        self._buf.append(element)
        gate = self._gate
        if gate is not None and not self.queued and not self.blocked:
            gate._notify(self)

    def take(self) -> Any:
        element = self._buf.popleft()
        fut = self._space
        if fut is not None and not fut.done():
            fut.set_result(None)
        if self.on_consumed is not None:
            self.on_consumed()
        return element

    def statistics(self) -> dict[str, int]:
        return {"buffered": len(self._buf), "capacity": self.capacity}


class InputGate:
    """All input channels of one subtask, read as one stream of ``(channel, element)``."""

    def __init__(self, channels: list[InputChannel]) -> None:
        self.channels = channels
        self._avail: deque[InputChannel] = deque()
        #: a future the gate resolves when a channel gets data (the task's wakeup, see :meth:`wait`)
        self._waiter: asyncio.Future[None] | None = None
        for i, ch in enumerate(channels):
            ch._gate = self
            ch.index = i
            if len(ch) and not ch.blocked:
                # a channel filled before the gate existed (a remote producer that got credit
                # early) would otherwise never be announced
                self._notify(ch)

    def _notify(self, ch: InputChannel) -> None:
        ch.queued = True
        self._avail.append(ch)
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def poll(self) -> tuple[InputChannel, Any] | None:
        """The next element of a channel with data, or None without waiting."""
        avail = self._avail
        while avail:
            ch = avail.popleft()
            if ch.blocked or not len(ch):
                ch.queued = False
                continue
            element = ch.take()
            if len(ch):
                avail.append(ch)
            else:
                ch.queued = False
            return ch, element
        return None

    def has_data(self) -> bool:
        """True when :meth:`poll` may return an element."""
        return any(not ch.blocked and len(ch) for ch in self._avail)

    async def wait(self, wakeup: asyncio.Future[None] | None = None) -> None:
        """Return once a channel has data, or once ``wakeup`` is resolved by someone else.

        The task passes its mailbox's wakeup future, so data and mailbox actions end one wait.
        """
        if self.has_data():
            return
        fut = wakeup if wakeup is not None else asyncio.get_running_loop().create_future()
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None

    async def next(self) -> tuple[InputChannel, Any]:
        """The next element, waiting for one."""
        while True:
            got = self.poll()
            if got is not None:
                return got
            await self.wait()

    def block(self, ch: InputChannel) -> None:
        """Hold ``ch`` back (its elements stay buffered; its producer backpressures)."""
        ch.blocked = True

    def unblock_all(self) -> None:
        for ch in self.channels:
            if ch.blocked:
                ch.blocked = False
                if len(ch) and not ch.queued:
                    self._notify(ch)

    def statistics(self) -> dict[str, int]:
        return {"buffered": sum(len(c) for c in self.channels),
                "capacity": sum(c.capacity for c in self.channels)}


class OutputChannel(Protocol):
    """Producer side of one channel."""

    def has_space(self) -> bool:
        """True when ``put`` would not wait."""

    async def put(self, element: Any) -> None:
        """Send ``element``; waits for space (local) or credit (remote)."""


class LocalOutputChannel:
    """Producer side of a channel whose consumer runs in the same process."""

    __slots__ = ("target", "has_space", "put")

    def __init__(self, target: InputChannel) -> None:
        self.target = target
        self.has_space = target.has_space
        self.put = target.put
