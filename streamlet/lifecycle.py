"""One lifecycle for long-lived services: children started in order and stopped in reverse,
background tasks owned, and cleanup that always completes.

::

    start(a) -> spawn(loop) -> start(b) ... run ... stop(b), end(loop), stop(a)
                                                    (each step runs even when an earlier one raised)

Example::

    async with Lifecycle("jobmanager") as lc:
        await lc.start("rest", runner.setup(), runner.cleanup)   # stopped after everything below
        lc.spawn(monitor.run(), "heartbeat monitor")             # cancelled and awaited in its turn
        await lc.run_until(stopping)                             # returns early if a task crashed

A child's ``stop`` is registered only once its start succeeded.  When several stops raise, the
first error is raised after all ran; the others are logged.  A background task that ends with an
exception ends :meth:`Lifecycle.run_until` and that exception is raised on exit (a crash of a
service's loop must not go unnoticed); one that ends normally (or is cancelled) is just removed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

logger = logging.getLogger(__name__)

Stop = Callable[[], "Awaitable[Any] | Any"]


class Lifecycle:
    """See the module docstring."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stops: list[tuple[str, Stop]] = []
        self._tasks: list[asyncio.Task[Any]] = []  # owned; each has its entry in _stops
        self._crashed = asyncio.Event()
        self._crash: BaseException | None = None

    async def __aenter__(self) -> Lifecycle:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose(raise_errors=exc[0] is None)

    async def start(self, name: str, start: Awaitable[Any] | None, stop: Stop | None) -> Any:
        """Await ``start``; on success remember ``stop`` to run at the end (in reverse order)."""
        result = await start if start is not None else None
        if stop is not None:
            self._stops.append((name, stop))
        return result

    def on_stop(self, name: str, stop: Stop) -> None:
        """Run ``stop`` at the end (after the children started later stopped)."""
        self._stops.append((name, stop))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, stop: Callable[[], Any] | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task owned by this lifecycle.

        At the end, in its place in the reverse order, the task is cancelled and awaited; with
        ``stop``, ``stop()`` is called instead and the task is awaited to end by itself.
        """
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}: {name}")
        self._tasks.append(task)
        task.add_done_callback(self._task_done)

        async def end() -> None:
            if stop is not None and not task.done():
                stop()
            else:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # noqa: BLE001 - a crash was reported by run_until already
                if exc is not self._crash:
                    raise

        self._stops.append((name, end))
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._crash is None:
            logger.error("%s: %s crashed: %s: %s", self.name, task.get_name(), type(exc).__name__, exc)
            self._crash = exc
            self._crashed.set()

    async def run_until(self, event: asyncio.Event) -> None:
        """Wait for ``event``, or until a background task crashed (then raise its error)."""
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._crashed.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if self._crash is not None:
            raise self._crash

    async def aclose(self, raise_errors: bool = True) -> None:
        """Stop children and background tasks in reverse order of their start, collecting errors."""
        errors: list[BaseException] = []
        stops, self._stops = self._stops, []
        for name, stop in reversed(stops):
            try:
                result = stop()
                if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                    await result
            except Exception as exc:  # noqa: BLE001 - collected: the others still run
                logger.warning("%s: stopping %s failed: %s: %s", self.name, name, type(exc).__name__, exc)
                errors.append(exc)
        if errors and raise_errors:
            raise errors[0]
