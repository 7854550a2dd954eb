"""Test kit for sources: a source context on an injected clock, and a loop that drives readers."""

from __future__ import annotations

from typing import Any

from streamlet.clock import ManualClock


class TestingSourceContext:
    """The part of a source task's context a reader uses (see ``connectors.base.SourceContext``).

    ``clock`` is a :class:`~streamlet.clock.ManualClock` by default, so a test drives rate limits
    with ``clock.advance()`` instead of sleeping.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, subtask_index: int = 0, parallelism: int = 1, batch_size: int = 1024,
                 clock: Any = None, node_id: str = "source") -> None:
        self.subtask_index = subtask_index
        self.parallelism = parallelism
        self.batch_size = batch_size
        self.clock = clock or ManualClock()
        self.node_id = node_id

    def time_ms(self) -> int:
        return self.clock.time_ms()


async def read_batches(reader: Any, max_records: int | None = None) -> list[list[Any]]:
    """Drive ``reader`` as a source task does and return the batches it produced.

    Polls; on ``[]`` awaits ``wait_available``; stops at ``END_OF_INPUT`` or, with
    ``max_records``, after the batch that reaches it (a snapshot may then be taken, as the task
    takes one between batches).  A paced reader on a ManualClock needs the test to advance the
    clock from another task.  Example::

        reader = FileSource.create_reader(params, TestingSourceContext())
        await reader.open()
        reader.add_splits(FileSource.enumerate_splits(params, 1))
        first = await read_batches(reader, max_records=100)
        state = reader.snapshot_state(1)
    """
    out: list[list[Any]] = []
    seen = 0
    while max_records is None or seen < max_records:
        batch = reader.poll()
        if batch is None:
            break
        if not batch:
            await reader.wait_available()
            continue
        out.append(batch)
        seen += len(batch)
    return out


async def read_paced(reader: Any, clock: ManualClock, seconds: float, step: float = 0.01) -> list[tuple[float, int]]:
    """Drive a paced reader (``rate:``, a :class:`~streamlet.connectors.pacing.PacedReader`) for
    ``seconds`` of ``clock`` time; returns ``(clock seconds since the start, records)`` per batch.

    While the limiter holds records back the clock advances by ``step``; while the wrapped reader
    waits for I/O (a file read, a Kafka fetch) the clock stands still and the test awaits it, so
    nothing sleeps.  Stops early at ``END_OF_INPUT``.  Example::

        got = await read_paced(FileSource.create_reader(params, TestingSourceContext(clock=clock)), clock, 2.0)
    """
    out: list[tuple[float, int]] = []
    start = clock.monotonic()
    while clock.monotonic() - start <= seconds + 1e-9:
        batch = reader.poll()
        if batch is None:
            break
        if batch:
            out.append((clock.monotonic() - start, len(batch)))
        elif reader.limiter.delay() > 0:
            await clock.advance(step)
        else:
            await reader.wait_available()
    return out
