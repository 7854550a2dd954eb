"""LoopWatchdog on a real event loop: code that holds the loop in a subtask is interrupted there
and the loop goes on; a loop held outside any subtask is logged, not interrupted.

Real time (the watched thing is the physical loop): timeouts of a few hundred ms, and the tests
wait for what the watchdog does, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from streamlet.runtime.taskmanager.watchdog import LoopWatchdog, TaskInterrupted


def _spin_forever() -> None:
    while True:
        pass


def test_a_subtask_spinning_forever_is_interrupted_and_the_loop_goes_on() -> None:
    reasons: list[str] = []

    async def main() -> None:
        subtask: asyncio.Task[Any] | None = None

        def owner_of(task: asyncio.Task[Any]) -> Any:
            return reasons.append if task is subtask else None

        watchdog = LoopWatchdog(0.3, owner_of)
        ticks: list[float] = []

        async def heartbeat() -> None:  # stands for the TaskManager's heartbeats on the same loop
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        async def user_code() -> str:
            await asyncio.sleep(0)
            try:
                _spin_forever()
            except Exception:  # noqa: BLE001 - user code swallowing errors does not stop the watchdog
                return "swallowed"
            return "returned"

        watchdog.start()
        beats = asyncio.create_task(heartbeat())
        try:
            await asyncio.sleep(0.05)
            subtask = asyncio.create_task(user_code())
            started = time.monotonic()
            with pytest.raises(TaskInterrupted):
                await asyncio.wait_for(subtask, 10)
            held = time.monotonic() - started
            assert 0.3 <= held < 3.0
            # the heartbeats stopped while the loop was held, and went on after
            before = len(ticks)
            while len(ticks) < before + 3:
                await asyncio.sleep(0.02)
            gaps = [b - a for a, b in zip(ticks, ticks[1:])]
            assert max(gaps) >= 0.3
        finally:
            beats.cancel()
            watchdog.stop()
        assert watchdog.interrupts == 1
        assert len(reasons) == 1 and "held the taskmanager's event loop" in reasons[0]
        assert "_spin_forever" in reasons[0] and "task.watchdog.timeout" in reasons[0]

    asyncio.run(main())


def test_a_loop_held_outside_any_subtask_is_logged_not_interrupted(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        watchdog = LoopWatchdog(0.2, lambda task: None)
        watchdog.start()
        try:
            await asyncio.sleep(0)
            deadline = time.monotonic() + 0.8
            while time.monotonic() < deadline:  # holds the loop (not a subtask): must come back by itself
                pass
            await asyncio.sleep(0)
        finally:
            watchdog.stop()
        assert watchdog.interrupts == 0

    with caplog.at_level(logging.WARNING, logger="streamlet.runtime.taskmanager.watchdog"):
        asyncio.run(main())
    assert any("blocked for" in r.getMessage() and "outside any subtask" in r.getMessage() for r in caplog.records)


def test_an_idle_loop_is_never_interrupted() -> None:
    async def main() -> None:
        watchdog = LoopWatchdog(0.1, lambda task: (lambda reason: None))
        watchdog.start()
        try:
            for _ in range(10):
                await asyncio.sleep(0.05)  # idle in select: the ticks go on
        finally:
            watchdog.stop()
        assert watchdog.interrupts == 0

    asyncio.run(main())
