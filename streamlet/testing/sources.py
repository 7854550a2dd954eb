"""Test kit for sources: a source context on an injected clock, and a helper that drains readers."""

from __future__ import annotations

from typing import Any

from streamlet.clock import ManualClock


class TestingSourceContext:
    """The part of a source task's context a reader uses (see ``connectors.base.SourceContext``).

    ``idle_sleep`` only waits on ``clock`` (a :class:`~streamlet.clock.ManualClock` by default),
    so a test drives rate limits with ``clock.advance()`` instead of sleeping.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, subtask_index: int = 0, parallelism: int = 1, batch_size: int = 1024,
                 clock: Any = None, node_id: str = "source") -> None:
        self.subtask_index = subtask_index
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.clock = clock or ManualClock()
        self.node_id = node_id

    async def idle_sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    def time_ms(self) -> int:
        return self.clock.time_ms()
