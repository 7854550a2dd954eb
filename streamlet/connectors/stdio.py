"""``print`` and ``blackhole`` sinks.

The print sink never writes to stdout on the event loop: a pipe nobody reads (or a terminal
paused with Ctrl-S) would block the whole TaskManager, heartbeats included.  Its writes go to one
daemon thread per process (:class:`_StdoutThread`), in order; a stalled stdout then only
backpressures the print subtasks, which stay cancellable.
"""

from __future__ import annotations

import asyncio
import io
import os
import queue
import sys
import threading
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import Param, SinkWriterBase, not_json, validate_params


def _resolve(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():  # the writing task was cancelled meanwhile
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


class _StdoutThread:
    """Writes texts to the process's stdout from one daemon thread, first come first written.

    Its queue holds at most one text per print subtask (each awaits its write before the next),
    so it needs no bound of its own.  A daemon thread blocked on a full pipe does not keep the
    process from exiting; it writes with ``os.write`` on the descriptor, so it never holds the
    lock of Python's stdout buffer that interpreter shutdown needs.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[None], bytes]] = \
            queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def write(self, data: bytes) -> asyncio.Future[None]:
        """A future done once ``data`` is written (or dropped, when stdout was closed)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="streamlet-stdout", daemon=True)
                self._thread.start()
        self._queue.put((loop, fut, data))
        return fut

    def _run(self) -> None:
        while True:
            loop, fut, data = self._queue.get()
            error: BaseException | None = None
            try:
                _write_stdout(data)
            except BrokenPipeError:
                # the reader went away (`streamlet run ... | head`): drop further output, as a closed
                # terminal would, instead of failing the job
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the dead stdout for the process
            except Exception as exc:  # noqa: BLE001 - handed to the writing task
                error = exc
            try:
                loop.call_soon_threadsafe(_resolve, fut, error)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for this write any more


def _write_stdout(data: bytes) -> None:
    out = sys.stdout
    try:
        fd = out.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        fd = None  # a replaced stdout (e.g. a test's capture): write through it
    if fd is None:
        out.write(data.decode("utf-8", "replace"))
        out.flush()
        return
    out.flush()  # whatever else went through Python's buffer comes first
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_STDOUT = _StdoutThread()


class PrintSink(SinkWriterBase):
    """Writes each record as a JSON line to stdout (``prefix`` before each line).

    With parallelism > 1 lines are prefixed ``N> `` with the 1-based subtask index, as Flink's
    print sink does.  Under ``streamlet run`` on a terminal, lines go through the run's console
    so the live progress display stays below them.
    """

    PARAMS = {"prefix": Param("str", "text printed before each record", "")}
    GUARANTEE = "none"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> PrintSink:
        return cls(params, ctx)

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        prefix = params.get("prefix") or ""
        if ctx.parallelism > 1:
            prefix = f"{prefix}{ctx.subtask_index + 1}> "
        self._prefix = prefix
        self._console = getattr(ctx, "console", None)

    async def write(self, records: list[Any]) -> None:
        d = orjson.dumps
        p = self._prefix
        try:
            text = "".join(f"{p}{x if isinstance(x, str) else d(x).decode()}\n" for x in records)
        except TypeError as exc:  # orjson: a value JSON has no form for
            raise not_json(records, exc) from exc
        if self._console is not None:
            try:
                self._console.write(text)  # the live terminal display of `streamlet run`
            except BrokenPipeError:
                self._console = None
            return
        await _STDOUT.write(text.encode())

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


class BlackholeSink(SinkWriterBase):
    """Discards records (the task's metrics count them)."""

    PARAMS: dict[str, Param] = {}
    GUARANTEE = "exactly_once"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> BlackholeSink:
        return cls()

    async def write(self, records: list[Any]) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None

