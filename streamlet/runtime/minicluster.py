"""Entry points that run a job on this machine: the embedded mini-cluster of ``streamlet run``.

``run_local`` runs every subtask in this process (the default).  uvloop is installed here, at
the process entry, and nowhere in library code.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from streamlet.config import Configuration
from streamlet.graph.job_graph import JobGraph
from streamlet.runtime.local import JobResult, LocalExecutor, Progress


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop when uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_local(graph: JobGraph, config: Configuration, on_progress: Callable[[Progress], None] | None = None,
              console: Any = None, progress_interval: float | None = None) -> JobResult:
    """Run ``graph`` in this process on a uvloop event loop until it ends."""
    executor = LocalExecutor(
        graph, queue_capacity=config["taskmanager.network.queue-capacity"], console=console,
        on_progress=on_progress,
        progress_interval=progress_interval if progress_interval is not None else config["execution.progress-interval"])
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(executor.run())
