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
parallelism, and an endless source needs no coordination.  A slice makes its rows in blocks of
:data:`ROWS_PER_BLOCK`, each drawn from its own ``random.Random`` seeded by (seed, slice,
parallelism, block): the output is deterministic for a given seed and parallelism, whatever the
batch size, and a restored reader remakes the block it stopped in.  A block is built column by
column (one comprehension per field) and zipped into dicts, so the per-row cost is a few C-level
list operations.

Pacing (``rate:``) uses :class:`~streamlet.connectors.pacing.RateLimiter`.
"""

from __future__ import annotations

import difflib
import math
import random
from typing import Any, Callable, Mapping

from streamlet.connectors.base import Param, slice_splits, validate_params
from streamlet.connectors.pacing import RateLimiter
from streamlet.errors import PipelineDefinitionError

#: default epoch milliseconds of row 0's ``timestamp`` field without a rate (2023-11-14T22:13:20Z)
DEFAULT_BASE_TIME = 1_700_000_000_000
_COMMON = ("type", "parallelism")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


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
        # paced rows carry the time they leave the source: the reader stamps them then
        return lambda rng, rows, now: [None] * len(rows)
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
    if value is not None and not (0 < value < math.inf):  # nan and inf too: a limiter cannot pace by them
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
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> DatagenReader:
        """The reader of one subtask (its slices come with ``add_splits``)."""
        return DatagenReader(params, ctx)


#: rows of a slice made at once with one RNG: values do not depend on batch sizes or restores
ROWS_PER_BLOCK = 1024


class _Slice:
    """Read position in one generator slice: ``next`` is the row index of the next row out."""

    __slots__ = ("id", "index", "count", "next", "rows", "pos")

    def __init__(self, split: Mapping[str, Any]) -> None:
        self.id: str = split["id"]
        self.index: int = split["index"]
        self.count: int = split["count"]
        self.next: int = split.get("next", self.index)
        #: the rows of the current block; ``rows[pos]`` is row ``next``
        self.rows: list[dict[str, Any]] = []
        self.pos = 0

    def state(self, limit: int | None) -> dict[str, Any]:
        done = limit is not None and self.next >= limit
        return {"id": self.id, "index": self.index, "count": self.count, "next": self.next, "done": done}


class DatagenReader:
    """Makes the rows of one subtask's slices (a :class:`~streamlet.connectors.base.SourceReader`).

    Slice ``i`` of ``p`` makes the row indices ``i, i + p, ...``; its ``k``-th row belongs to
    block ``k // ROWS_PER_BLOCK``, made at once from ``random.Random((seed, i, p, block))``, so
    a row's values depend only on the seed, the parallelism the splits were made for and its
    index (not on batch sizes, pacing or restores).  Several slices take turns, batch by batch,
    so an endless slice never starves the others.

    Split state: ``{"id", "index", "count", "next": next row index, "done"}``.  Without a
    ``rate`` :meth:`poll` never returns ``[]``; with one it returns ``[]`` until the next chunk
    is due and :meth:`wait_available` waits for it on ``ctx.clock``.
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._ctx = ctx
        self._limit: int | None = params["rows"]
        self._seed: int = params["seed"]
        self._names = list(params["fields"])
        self._columns = [FIELD_KINDS[f["kind"]][1](f, params) for f in params["fields"].values()]
        self._rate = params["rate"]
        #: timestamp fields of paced rows, stamped with the clock's time as they leave
        self._stamp = [n for n, f in params["fields"].items() if f["kind"] == "timestamp"] if self._rate else []
        self._slices: list[_Slice] = []
        self._live: list[_Slice] = []
        self._turn = 0
        self._batch_size: int = ctx.batch_size
        self._limiter: RateLimiter | None = None
        #: the id of the slice the last batch came from
        self.current_split: str | None = None

    async def open(self) -> None:
        """Nothing to acquire."""
        return None

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """Take over slices: fresh ones or states from :meth:`snapshot_state` (any subtask's)."""
        for s in splits:
            sl = _Slice(s)
            self._slices.append(sl)
            if not sl.state(self._limit)["done"]:
                self._live.append(sl)
        if self._rate is not None and self._slices:
            # each slice is 1/count of the source: this reader's share is the sum over its slices
            rate = self._rate * sum(1 / sl.count for sl in self._slices)
            if self._limiter is None:
                self._limiter = RateLimiter(rate, self._ctx.clock, self._batch_size)
            else:
                self._limiter.set_rate(rate)

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """Every slice's next row index (finished slices included, ``done: true``)."""
        return [sl.state(self._limit) for sl in self._slices]

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Nothing to confirm."""
        return None

    def decode_stage(self) -> None:
        """Rows are made as dicts already: no decoding."""
        return None

    def progress(self) -> float | None:
        """Fraction of this subtask's rows made, or None when endless."""
        if self._limit is None:
            return None
        total = made = 0
        for sl in self._slices:
            total += self._rows_below(sl, self._limit)
            made += self._rows_below(sl, sl.next)
        return 1.0 if total == 0 else min(1.0, made / total)

    @staticmethod
    def _rows_below(sl: _Slice, stop: int) -> int:
        """Rows of ``sl`` with index below ``stop``."""
        return max(0, (stop - sl.index + sl.count - 1) // sl.count)

    def _block(self, sl: _Slice, block: int) -> list[dict[str, Any]]:
        """The rows of ``sl``'s block ``block`` (cut at ``rows``)."""
        i, p = sl.index, sl.count
        first = i + block * ROWS_PER_BLOCK * p
        stop = first + ROWS_PER_BLOCK * p
        if self._limit is not None:
            stop = min(stop, self._limit)
        rows = list(range(first, stop, p))
        # one stream per (seed, slice, parallelism, block); Random hashes the whole int
        rng = random.Random((((self._seed * 1000003 + i) * 1000003 + p) << 40) + block)
        cols = [col(rng, rows, None) for col in self._columns]
        names = self._names
        if len(names) == 1:
            name = names[0]
            return [{name: v} for v in cols[0]]
        return [dict(zip(names, values)) for values in zip(*cols)]

    def _take(self, sl: _Slice, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` next rows of ``sl`` (fewer at a block's end); [] when it is exhausted."""
        if sl.pos >= len(sl.rows):
            if self._limit is not None and sl.next >= self._limit:
                return []
            block, skip = divmod((sl.next - sl.index) // sl.count, ROWS_PER_BLOCK)
            sl.rows, sl.pos = self._block(sl, block), skip
        rows, pos = sl.rows, sl.pos
        if pos == 0 and n >= len(rows):
            out = rows  # a whole block: hand it out without copying
        else:
            out = rows[pos:pos + n]
        sl.pos = pos + len(out)
        sl.next += len(out) * sl.count
        return out

    def poll(self) -> list[dict[str, Any]] | None:
        """About ``batch_size`` rows of one slice (~10 ms worth when paced), ``[]`` until the
        next paced chunk is due, or ``END_OF_INPUT`` once every slice reached ``rows``."""
        limiter = self._limiter
        n = self._batch_size
        if limiter is not None:
            if limiter.delay() > 0:
                return []
            n = limiter.chunk
        live = self._live
        while live:
            k = self._turn % len(live)
            sl = live[k]
            out = self._take(sl, n)
            if not out:
                live.pop(k)
                continue
            if len(out) < n and len(live) == 1:
                # a block ended mid-batch: fill the batch from the slice's next block
                more = self._take(sl, n - len(out))
                while more:
                    out = out + more
                    more = self._take(sl, n - len(out)) if len(out) < n else []
            self._turn = k + 1
            self.current_split = sl.id
            if limiter is not None:
                limiter.take(len(out))
                if self._stamp:
                    now = self._ctx.time_ms()
                    for name in self._stamp:
                        for r in out:
                            r[name] = now
            return out
        return None

    async def wait_available(self) -> None:
        """Wait on the clock until the next paced chunk is due (cancel-safe)."""
        if self._limiter is not None:
            await self._limiter.wait()

    async def close(self) -> None:
        """Nothing to release."""
        return None
