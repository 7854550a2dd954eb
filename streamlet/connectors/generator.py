"""``datagen`` source: rows of generated fields, modeled on Flink's datagen connector.

YAML::

    sources:
      rows:
        type: datagen
        rows: 1000              # omit for an endless stream
        rate: 500               # records/s for the whole source (optional)
        seed: 0
        fields:
          id:    {kind: sequence, start: 0}
          score: {kind: random, min: 0, max: 100}
          color: {kind: choice, values: [red, green, blue]}
          ts:    {kind: timestamp}

Splits are generator slices: split ``i`` of ``p`` produces the row indices ``i, i + p, i + 2p, ...``
(below ``rows`` when bounded), so every row index is produced exactly once whatever the
parallelism, and an endless source needs no coordination.  Random fields draw from
``random.Random(seed * 1000003 + i)``: the output is deterministic for a given seed and
parallelism.  A batch is built column by column (one comprehension per field) and zipped into
dicts, so the per-row cost is a few C-level list operations.

This module also holds :class:`RateLimiter`, the pacing shared by the generator sources.
"""

from __future__ import annotations

import difflib
import math
import random
from typing import Any, Callable, Mapping

from streamlet.connectors.base import Param, slice_splits, validate_params
from streamlet.errors import PipelineDefinitionError

#: default epoch milliseconds of row 0's ``timestamp`` field without a rate (2023-11-14T22:13:20Z)
DEFAULT_BASE_TIME = 1_700_000_000_000
_COMMON = ("type", "parallelism")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_MAX_BACKLOG = 1.0  # seconds of arrears a paced source may catch up in a burst


class RateLimiter:
    """Paces one subtask to ``rate`` units per second on an injected clock.

    Unit ``k`` (0-based) is due at ``t0 + k / rate``; :meth:`acquire` waits until the first unit
    of the next chunk is due.  Chunks are about 10 ms worth of units (:attr:`chunk`), so records
    leave the source at most ~10 ms early and latency stays low at small rates.  A subtask that
    fell behind (e.g. under backpressure) catches up at most one second's worth in a burst, as
    Guava's limiter caps stored permits; older arrears are forgiven.
    """

    def __init__(self, rate: float, ctx: Any, max_chunk: int) -> None:
        self.rate = float(rate)
        self._ctx = ctx
        self._clock = ctx.clock
        self._t0: float | None = None
        self._sent = 0
        #: units released per :meth:`acquire` (about 10 ms worth, at least 1)
        self.chunk = max(1, min(max_chunk, math.ceil(self.rate / 100)))

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` more units may go out; the caller then emits them."""
        now = self._clock.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._sent / self.rate
        if now - due > _MAX_BACKLOG:
            self._t0 = now - _MAX_BACKLOG - self._sent / self.rate
            due = now - _MAX_BACKLOG
        if due - now > 1e-9:  # below a nanosecond is float noise, not a reason to sleep
            await self._ctx.idle_sleep(due - now)
        self._sent += n


# ---------------------------------------------------------------------------------------------
# field generators: each builds one column for a list of row indices


def _sequence(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    start, step = spec["start"], spec["step"]
    return lambda rng, rows, now: [start + i * step for i in rows]


def _random(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    lo, hi = spec["min"], spec["max"]
    if isinstance(lo, int) and isinstance(hi, int):
        span = hi - lo + 1

        # int(random() * span) is ~8x cheaper than randint and exact for spans below 2**53
        def column(rng: random.Random, rows: list[int], now: int | None) -> list[Any]:
            r = rng.random
            return [lo + int(r() * span) for _ in rows]
        return column
    width = hi - lo

    def fcolumn(rng: random.Random, rows: list[int], now: int | None) -> list[Any]:
        r = rng.random
        return [lo + r() * width for _ in rows]
    return fcolumn


def _choice(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    values = list(spec["values"])
    n = len(values)
    return lambda rng, rows, now: [values[int(rng.random() * n)] for _ in rows]


def _timestamp(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    base = params["base_time"]
    if params["rate"] is not None:
        # paced rows carry the time they are made; ``now`` is read once per batch
        return lambda rng, rows, now: [now] * len(rows)
    return lambda rng, rows, now: [base + i for i in rows]


def _constant(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    value = spec["value"]
    return lambda rng, rows, now: [value] * len(rows)


def _string(spec: Mapping[str, Any], params: Mapping[str, Any]) -> Callable[..., list[Any]]:
    length = spec["length"]
    return lambda rng, rows, now: ["".join(rng.choices(_LETTERS, k=length)) for _ in rows]


#: kind -> (keys with their Param, column factory)
FIELD_KINDS: dict[str, tuple[dict[str, Param], Callable[..., Callable[..., list[Any]]]]] = {
    "sequence": ({"start": Param("int", "first value", 0), "step": Param("int", "increment per row", 1)},
                 _sequence),
    "random": ({"min": Param("number", "smallest value (inclusive)", 0),
                "max": Param("number", "largest value (inclusive for ints); a float bound makes floats", 100)},
               _random),
    "choice": ({"values": Param("list", "the values to pick from, uniformly", required=True)}, _choice),
    "timestamp": ({}, _timestamp),
    "constant": ({"value": Param("any", "the value of every row", required=True)}, _constant),
    "string": ({"length": Param("int", "number of random lowercase letters", 10)}, _string),
}


def _validate_field(name: Any, spec: Any, where: str) -> dict[str, Any]:
    w = f"{where}.fields.{name}"
    if not isinstance(name, str) or not name:
        raise PipelineDefinitionError(f"field names must be non-empty strings, got {name!r}", f"{where}.fields")
    if not isinstance(spec, dict):
        raise PipelineDefinitionError(
            f"expected a map like {{kind: random, min: 0, max: 9}}, got {spec!r}; kinds: {', '.join(FIELD_KINDS)}", w)
    if "kind" not in spec:
        raise PipelineDefinitionError(f"missing key 'kind' (one of {', '.join(FIELD_KINDS)})", w)
    kind = spec["kind"]
    if kind not in FIELD_KINDS:
        close = difflib.get_close_matches(str(kind), list(FIELD_KINDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PipelineDefinitionError(f"unknown field kind {kind!r}; {hint}allowed: {', '.join(FIELD_KINDS)}",
                                      f"{w}.kind")
    keys, _ = FIELD_KINDS[kind]
    out = validate_params(spec, keys, w, ("kind",))
    out["kind"] = kind
    if kind == "random" and out["min"] > out["max"]:
        raise PipelineDefinitionError(f"min {out['min']!r} is greater than max {out['max']!r}; swap them", f"{w}.min")
    if kind == "choice" and not out["values"]:
        raise PipelineDefinitionError("values is empty; list at least one value", f"{w}.values")
    if kind == "string" and out["length"] < 0:
        raise PipelineDefinitionError(f"length must be >= 0, got {out['length']!r}", f"{w}.length")
    return out


def _positive(out: Mapping[str, Any], key: str, where: str) -> None:
    value = out[key]
    if value is not None and value <= 0:
        raise PipelineDefinitionError(f"expected a positive number, got {value!r}", f"{where}.{key}")


class DatagenSource:
    """Generated rows (``type: datagen``); bounded with ``rows:``, endless without.

    See the module docstring for the YAML keys and field kinds.  Example::

        params = DatagenSource.validate({"rows": 3, "fields": {"id": {"kind": "sequence"}}}, "sources.s", ".")
        DatagenSource.enumerate_splits(params, 2)   # [{'index': 0, 'count': 2}, {'index': 1, 'count': 2}]
    """

    PARAMS = {
        "rows": Param("int", "number of rows for the whole source (omit for an endless stream)"),
        "rate": Param("number", "rows per second for the whole source, divided over subtasks (omit: as fast "
                                "as possible)"),
        "seed": Param("int", "seed of the random fields", 0),
        "base_time": Param("int", "epoch ms of row 0's timestamp fields when there is no rate", DEFAULT_BASE_TIME),
        "fields": Param("map", "field name -> {kind: sequence|random|choice|timestamp|constant|string, ...}",
                        required=True),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check the keys and every field spec; errors name ``<where>.fields.<name>.<key>``."""
        out = validate_params(params, cls.PARAMS, where, _COMMON)
        if out["rows"] is not None and out["rows"] < 0:
            raise PipelineDefinitionError(f"expected rows >= 0, got {out['rows']!r}", f"{where}.rows")
        _positive(out, "rate", where)
        if not out["fields"]:
            raise PipelineDefinitionError("fields is empty; declare at least one, e.g. {id: {kind: sequence}}",
                                          f"{where}.fields")
        out["fields"] = {name: _validate_field(name, spec, where) for name, spec in out["fields"].items()}
        return out

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        """Bounded exactly when ``rows`` is set."""
        return params["rows"] is not None

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        """One generator slice per subtask: split ``i`` makes row indices ``i, i + p, ...``."""
        return slice_splits(parallelism)

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], splits: list[dict[str, Any]], ctx: Any) -> DatagenReader:
        """The reader of one subtask's slices."""
        return DatagenReader(params, splits, ctx)


class DatagenReader:
    """Makes the rows of one subtask's slices, a batch at a time (slices take turns)."""

    def __init__(self, params: Mapping[str, Any], splits: list[dict[str, Any]], ctx: Any) -> None:
        self._ctx = ctx
        self._limit: int | None = params["rows"]
        self._names = list(params["fields"])
        self._columns = [FIELD_KINDS[f["kind"]][1](f, params) for f in params["fields"].values()]
        self._splits = [dict(s) for s in splits]
        seed = params["seed"]
        self._rngs = [random.Random(seed * 1000003 + s["index"]) for s in splits]
        self._next = [s["index"] for s in splits]  # next row index per slice
        self._live = list(range(len(splits)))  # slices not yet exhausted
        self._turn = 0
        batch_size = getattr(ctx, "batch_size", 1024)
        self._limiter = None
        if params["rate"] is not None and splits:
            # each slice is 1/count of the source: this reader's share is the sum over its slices
            share = sum(1 / s["count"] for s in splits)
            self._limiter = RateLimiter(params["rate"] * share, ctx, batch_size)
            batch_size = self._limiter.chunk
        self._batch_size = batch_size
        self._total = sum(self._rows_in(s) for s in splits) if self._limit is not None else None
        self._emitted = 0

    def _rows_in(self, split: Mapping[str, Any]) -> int:
        assert self._limit is not None
        i, p = split["index"], split["count"]
        return max(0, (self._limit - i + p - 1) // p)

    def decode_stage(self) -> None:
        """Rows are made as dicts already: no decoding."""
        return None

    def progress(self) -> float | None:
        """Fraction of this subtask's rows made, or None when endless."""
        if self._total is None:
            return None
        return 1.0 if self._total == 0 else self._emitted / self._total

    def _make(self, n: int) -> list[dict[str, Any]] | None:
        # several slices take turns batch by batch, so an endless slice never starves the others
        while self._live:
            k = self._live[self._turn % len(self._live)]
            first, step = self._next[k], self._splits[k]["count"]
            stop = first + n * step
            if self._limit is not None:
                stop = min(stop, self._limit)
            rows = list(range(first, stop, step))
            if not rows:
                self._live.remove(k)
                continue
            self._turn += 1
            self._next[k] = rows[-1] + step
            rng = self._rngs[k]
            now = self._ctx.time_ms() if self._limiter is not None else None
            cols = [col(rng, rows, now) for col in self._columns]
            names = self._names
            if len(names) == 1:
                name = names[0]
                return [{name: v} for v in cols[0]]
            return [dict(zip(names, values)) for values in zip(*cols)]
        return None

    async def read(self) -> list[dict[str, Any]] | None:
        """The next batch of rows (about ``batch_size``; ~10 ms worth when paced), None at the end."""
        n = self._batch_size
        if self._total is not None and self._emitted >= self._total:
            return None
        if self._limiter is not None:
            await self._limiter.acquire(n)
        batch = self._make(n)
        if batch is not None:
            self._emitted += len(batch)
        return batch

    async def close(self) -> None:
        """Nothing to release."""
        return None
