"""Drive one operator directly: batches, watermarks, processing time, snapshots and restores.

A :class:`Harness` builds the operator of a spec on a real heap state backend with a
:class:`~streamlet.clock.ManualClock`; the processing-time service is a small scheduler on that
clock (the task mailbox's job in the runtime).  Snapshots go through the state backend's real
checkpoint path (``snapshot`` + ``persist`` to a filesystem storage) and ``restore`` builds a
fresh operator (possibly for another subtask of another parallelism) from the handles.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from streamlet.api.registry import load_class
from streamlet.clock import ManualClock
from streamlet.keys import KeyGroupRange
from streamlet.operators.base import RuntimeContext, concat
from streamlet.state import create_backend
from streamlet.state.storage import open_storage


class Scheduler:
    """Processing-time callbacks on a ManualClock: :meth:`run_due` calls the ones whose time came."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.pending: list[tuple[int, Callable[[int], Any]]] = []

    def register(self, time_ms: int, callback: Callable[[int], Any]) -> None:
        self.pending.append((time_ms, callback))

    def run_due(self) -> list[tuple[list[Any], Any]]:
        outs = []
        while True:
            now = self.clock.time_ms()
            due = sorted((p for p in self.pending if p[0] <= now), key=lambda p: p[0])
            if not due:
                return outs
            for p in due:
                self.pending.remove(p)
                outs.append(concat(p[1](p[0])))  # the callback's chunks, as one output


class SideOutputs:
    """Collects ``ctx.side_output`` records per tag."""

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}
        self.timestamps: dict[str, list[Any]] = {}

    def emit(self, tag: str, records: list[Any], timestamps: Any) -> None:
        self.records.setdefault(tag, []).extend(records)
        self.timestamps.setdefault(tag, []).extend(timestamps or [None] * len(records))


class Harness:
    """One operator on subtask ``index`` of ``parallelism``; output collected in :attr:`out`."""

    def __init__(self, spec: Any, index: int = 0, parallelism: int = 1, clock: ManualClock | None = None,
                 restore: tuple[list[dict[str, Any]], Any] | None = None, max_parallelism: int = 128) -> None:
        self.spec = spec
        self.clock = clock or ManualClock()
        self.scheduler = Scheduler(self.clock)
        self.side = SideOutputs()
        kg = KeyGroupRange.for_subtask(index, parallelism, max_parallelism)
        self.backend = create_backend("heap", kg, max_parallelism, clock=self.clock, name=f"{spec.id}-{index}")
        restored = None
        if restore is not None:
            handles, storage = restore
            asyncio.run(self.backend.restore(handles, storage))
            restored = True
        self.ctx = RuntimeContext(job_name="test", vertex_name=spec.id, subtask_index=index,
                                  parallelism=parallelism, max_parallelism=max_parallelism, mode="streaming",
                                  state=self.backend, clock=self.clock, restored=bool(restored),
                                  side_outputs=self.side, processing_time=self.scheduler)
        self.op = load_class(spec.OPERATOR)(spec, self.ctx)
        self.op.initialize_state(None)
        self.op.open()
        self.out: list[Any] = []
        self.out_ts: list[Any] = []

    def _take(self, output: tuple[list[Any], Any]) -> None:
        records, ts = output
        self.out.extend(records)
        self.out_ts.extend(ts if ts is not None else [None] * len(records))

    def batch(self, records: list[Any], timestamps: list[int] | None = None) -> None:
        self._take(self.op.process(records, timestamps))

    def watermark(self, wm: int) -> None:
        self._take(self.op.process_watermark(wm))

    def advance(self, seconds: float) -> None:
        """Move processing time and run the callbacks that became due."""
        asyncio.run(self.clock.advance(seconds))
        for o in self.scheduler.run_due():
            self._take(o)

    def end(self) -> None:
        self._take(self.op.end_input())

    def snapshot(self, directory: Path, checkpoint_id: int = 1) -> tuple[dict[str, Any], Any]:
        storage = open_storage(str(directory))

        async def take() -> dict[str, Any]:
            snap = await self.backend.snapshot(checkpoint_id)
            return await snap.persist(storage)

        return asyncio.run(take()), storage
