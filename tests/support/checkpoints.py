"""Test helpers for checkpoints driven by hand through a TaskExecutor: a CheckpointListener that
records what tasks acknowledge, and a wait on a condition re-checked whenever an event is set."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from streamlet.runtime.taskmanager.task import TaskSnapshot


class RecordingCheckpoints:
    """A task's checkpoint listener that keeps ``(task name, snapshot)`` of every acknowledgement
    (keyed snapshots are discarded, not persisted) and fails the test on a decline."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, TaskSnapshot]] = []
        self.changed = asyncio.Event()

    def acknowledge(self, task: Any, snapshot: TaskSnapshot) -> None:
        if snapshot.keyed is not None:
            snapshot.keyed.discard()
        self.acks.append((task.name, snapshot))
        self.changed.set()

    def decline(self, task: Any, checkpoint_id: int, reason: str) -> None:
        raise AssertionError(f"{task.name} declined checkpoint {checkpoint_id}: {reason}")


async def until(cond: Callable[[], Any], event: asyncio.Event, what: str, timeout: float = 10.0) -> None:
    """Wait for ``cond()``, re-checking whenever ``event`` is set (no polling interval)."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                event.clear()
                if cond():
                    return
                await event.wait()
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None
