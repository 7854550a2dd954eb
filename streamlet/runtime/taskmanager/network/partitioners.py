"""Partitioners: split an output batch over the channels of one edge.

Each returns, per batch, a list with one sub-batch per channel (empty lists allowed).  They work
on whole batches: slicing for rebalance, a generated loop with a key→channel cache for hash.
"""

from __future__ import annotations

from typing import Any, Callable

from streamlet.graph.job_graph import BROADCAST, FORWARD, HASH, REBALANCE
from streamlet.graph.operators import KeySpec
from streamlet.keys import subtask_for_key
from streamlet.operators.codegen import CodeBuilder, call_generated, key_code

Split = Callable[[list[Any], "list[int] | None"], list[tuple[list[Any], "list[int] | None"]]]

_CACHE_LIMIT = 1 << 17


def forward(n: int) -> Split:
    assert n == 1

    def split(records: list[Any], ts: list[int] | None) -> list[tuple[list[Any], list[int] | None]]:
        return [(records, ts)]
    return split


def broadcast(n: int) -> Split:
    def split(records: list[Any], ts: list[int] | None) -> list[tuple[list[Any], list[int] | None]]:
        return [(records, ts)] * n
    return split


def rebalance(n: int, start: int = 0) -> Split:
    """Round robin, record by record, continuing where the previous batch stopped."""
    state = [start % n]

    def split(records: list[Any], ts: list[int] | None) -> list[tuple[list[Any], list[int] | None]]:
        off = state[0]
        out: list[tuple[list[Any], list[int] | None]] = [([], None)] * n
        for i in range(n):
            ch = (off + i) % n
            out[ch] = (records[i::n], ts[i::n] if ts is not None else None)
        state[0] = (off + len(records)) % n
        return out
    return split


def hash_by_key(n: int, key: KeySpec, node_id: str, max_parallelism: int) -> Split:
    """Key groups: the channel of a key is the subtask owning its key group.

    With one channel every key goes there; the keyed operator downstream computes the key anyway
    (and fails on a bad key with the same node id), so the split is skipped.
    """
    if n == 1:
        return forward(1)
    cache: dict[Any, int] = {}

    def channel_of(k: Any) -> int:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        ch = cache[k] = subtask_for_key(k, n, max_parallelism)
        return ch

    b = CodeBuilder(f"partition:{node_id}")
    slow = b.bind("slow", channel_of)
    cached = b.bind("cache", cache)
    # the hot loop: one dict lookup and one bound append per record; a cache miss is the
    # exception path (zero-cost try in 3.11), a key that cannot be hashed fails on its own line
    b.add(0, f"def _split(batch, n, _cache={cached}):")
    b.add(1, "outs = [[] for _ in range(n)]; _ap = [o.append for o in outs]")
    b.add(1, "for r in batch:")
    b.add(2, f"k = {key_code(b, key, node_id)}", node_id)
    b.add(2, "try:")
    b.add(3, "_ap[_cache[k]](r)", node_id)
    b.add(2, "except KeyError:")
    b.add(3, f"_ap[{slow}(k)](r)", node_id)
    b.add(1, "return outs")
    # with timestamps: the same loop, one bound append per list (records, timestamps) and channel
    b.add(0, f"def _split_ts(batch, tss, n, _cache={cached}):")
    b.add(1, "outs = [[] for _ in range(n)]; touts = [[] for _ in range(n)]")
    b.add(1, "_ap = [o.append for o in outs]; _tp = [o.append for o in touts]")
    b.add(1, "for r, t in zip(batch, tss):")
    b.add(2, f"k = {key_code(b, key, node_id)}", node_id)
    b.add(2, "try:")
    b.add(3, "ch = _cache[k]", node_id)  # a key that cannot be hashed fails here
    b.add(2, "except KeyError:")
    b.add(3, f"ch = {slow}(k)", node_id)
    b.add(2, "_ap[ch](r); _tp[ch](t)")
    b.add(1, "return outs, touts")
    fn = b.compile("_split")
    fn_ts = b.namespace["_split_ts"]
    fn_ts._line_nodes = fn._line_nodes  # type: ignore[attr-defined]
    fn_ts._filename = fn._filename  # type: ignore[attr-defined]

    def split(records: list[Any], ts: list[int] | None) -> list[tuple[list[Any], list[int] | None]]:
        if ts is None:
            return [(o, None) for o in call_generated(fn, records, n)]
        outs, touts = call_generated(fn_ts, records, ts, n)
        return list(zip(outs, touts))
    return split


def build(partitioner: str, n: int, key: KeySpec | None, node_id: str, max_parallelism: int,
          subtask_index: int = 0) -> Split:
    """The split function of an edge with ``n`` target channels."""
    if partitioner == FORWARD:
        return forward(n)
    if partitioner == REBALANCE:
        return rebalance(n, subtask_index)
    if partitioner == BROADCAST:
        return broadcast(n)
    if partitioner == HASH:
        assert key is not None
        return hash_by_key(n, key, node_id, max_parallelism)
    raise ValueError(f"unknown partitioner {partitioner!r}")
