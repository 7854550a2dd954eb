"""Connector contracts: sources (split into parallel splits) and sinks.

A connector class declares its YAML keys in ``PARAMS`` (checked by :func:`validate_params`), and
is named from YAML by ``type:`` through :mod:`streamlet.api.registry`.

Source life cycle, per job:

1. ``validate(params, where, base_dir)`` (client side) checks and normalizes the keys, e.g.
   makes paths absolute and checks that input files exist;
2. ``enumerate_splits(params, parallelism)`` (JobManager side) lists the splits; split ``i`` goes
   to subtask ``i % parallelism``;
3. on each subtask, ``create_reader(params, splits, ctx)`` returns a :class:`SourceReader`.

Sink life cycle: ``validate`` then, per subtask, ``create_writer(params, ctx)``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from streamlet.errors import PipelineDefinitionError

_TYPES = {
    "str": (str,), "int": (int,), "number": (int, float), "bool": (bool,), "map": (dict,),
    "list": (list,), "str|list": (str, list), "any": (object,),
}


@dataclass(frozen=True)
class Param:
    """One YAML key of a connector."""

    type: str
    doc: str
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()


def validate_params(params: Mapping[str, Any], spec: Mapping[str, Param], where: str,
                    common: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``params`` against ``spec``; return them with defaults filled in.

    ``common`` lists keys handled elsewhere (``type``, ``input``, ``parallelism``) that are
    skipped here.  Errors name the key, the allowed keys or values, and a close match.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in common:
            continue
        p = spec.get(key)
        if p is None:
            allowed = sorted(list(spec) + list(common))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PipelineDefinitionError(
                f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}", f"{where}.{key}")
        types = _TYPES[p.type]
        if (not isinstance(value, types)) or (isinstance(value, bool) and bool not in types
                                               and p.type != "any"):
            raise PipelineDefinitionError(
                f"expected {p.type}, got {type(value).__name__} {value!r}", f"{where}.{key}")
        if p.choices and value not in p.choices:
            raise PipelineDefinitionError(
                f"{value!r} is not one of {', '.join(map(repr, p.choices))}", f"{where}.{key}")
        out[key] = value
    for key, p in spec.items():
        if key not in out:
            if p.required:
                raise PipelineDefinitionError(f"missing required key {key!r} ({p.doc})", where)
            out[key] = p.default
    return out


def slice_splits(parallelism: int) -> list[dict[str, Any]]:
    """One generator slice per subtask: split ``i`` of ``p`` makes items ``i, i + p, i + 2p, ...``."""
    return [{"index": i, "count": parallelism} for i in range(parallelism)]


class SourceContext(Protocol):
    """What a running source reader may use from its task."""

    subtask_index: int
    parallelism: int

    async def idle_sleep(self, seconds: float) -> None:
        """Flush buffered output, then wait ``seconds`` on the task's clock."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds of the task's clock."""


class SourceReader(Protocol):
    """Reads one subtask's splits, batch by batch."""

    async def read(self) -> list[Any] | None:
        """The next batch of raw elements, or None once every split is exhausted."""

    def decode_stage(self) -> tuple[str, dict[str, Any]] | None:
        """An optional ``(expression over r, globals)`` turning raw elements into records.

        It is fused into the chain's first function, so decoding costs no extra pass.
        """

    def progress(self) -> float | None:
        """Fraction of a bounded input read (0..1), or None when unknown/unbounded."""

    async def close(self) -> None:
        """Release files and connections."""


class SinkWriter(Protocol):
    """Writes one subtask's output."""

    async def write(self, records: list[Any]) -> None:
        """Write a batch; may wait (backpressure)."""

    async def finish(self) -> None:
        """End of input: flush everything."""

    async def close(self) -> None:
        """Release resources (also after a failure)."""
