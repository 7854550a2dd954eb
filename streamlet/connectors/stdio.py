"""``print`` and ``blackhole`` sinks."""

from __future__ import annotations

import os
import sys
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import Param, validate_params


class PrintSink:
    """Writes each record as a JSON line to stdout (``prefix`` before each line).

    With parallelism > 1 lines are prefixed ``N> `` with the 1-based subtask index, as Flink's
    print sink does.  Under ``streamlet run`` on a terminal, lines go through the run's console
    so the live progress display stays below them.
    """

    PARAMS = {"prefix": Param("str", "text printed before each record", "")}

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
        text = "".join(f"{p}{x if isinstance(x, str) else d(x).decode()}\n" for x in records)
        try:
            if self._console is not None:
                self._console.write(text)
            else:
                sys.stdout.write(text)
                sys.stdout.flush()
        except BrokenPipeError:
            # the reader of stdout went away (`streamlet run ... | head`): drop further output,
            # as a closed terminal would, instead of failing the job
            self._console = None
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces the dead stdout for the process

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


class BlackholeSink:
    """Discards records (the task's metrics count them)."""

    PARAMS: dict[str, Param] = {}

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
