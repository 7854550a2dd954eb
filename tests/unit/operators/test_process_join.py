"""Keyed process functions and joins on a real heap state backend, against plain-Python references."""

from __future__ import annotations

import dataclasses
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamlet.errors import UserFunctionError
from streamlet.graph.operators import (
    IntervalJoinSpec, KeySpec, LookupJoinSpec, ProcessSpec, RegularJoinSpec, WindowJoinSpec,
)
from streamlet.time.watermarks import MAX_WATERMARK
from tests.support.operators import Harness

COUNTER = """
class Counter:
    def open(self, ctx):
        self.count = ctx.value_state("count")
        self.seen = ctx.list_state("seen")
        self.by_value = ctx.map_state("by_value")

    def process_element(self, r, ctx):
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        self.seen.add(r["v"])
        self.by_value.put(r["v"], self.by_value.get(r["v"], 0) + 1)
        # one timer per key and second: registering again is a no-op
        ctx.timers.register_event_time(ctx.timestamp - ctx.timestamp % 1000 + 999)
        if r["v"] == 13:
            ctx.output("thirteen", {"k": ctx.key, "ts": ctx.timestamp})
        return [{"k": ctx.key, "n": n}]

    def on_timer(self, ts, ctx):
        assert ctx.time_domain == "event"
        out = [{"k": ctx.key, "timer": ts, "count": self.count.value(), "seen": self.seen.get(),
                "distinct": len(self.by_value.keys()), "wm": ctx.current_watermark}]
        self.seen.clear()
        return out
"""


@pytest.fixture
def counter(udf_module, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    return udf_module(COUNTER) + ":Counter"


def records(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"k": f"k{rng.randrange(4)}", "v": rng.randrange(20), "ts": i * 97} for i in range(n)]


def test_process_function_state_timers_and_side_output(counter: str) -> None:
    recs = records(200, 1)
    h = Harness(ProcessSpec("p", key=KeySpec(("k",)), path=counter, side_outputs=("thirteen",)))
    expected: list[dict[str, Any]] = []
    count: dict[str, int] = defaultdict(int)
    seen: dict[str, list[int]] = defaultdict(list)
    values: dict[str, set[int]] = defaultdict(set)
    timers: dict[str, set[int]] = defaultdict(set)
    wm = None

    def fire(upto: int) -> None:
        due = sorted((t, k) for k, ts in timers.items() for t in ts if t <= upto)
        for t, k in due:
            timers[k].discard(t)
            expected.append({"k": k, "timer": t, "count": count[k], "seen": seen[k], "distinct": len(values[k]),
                             "wm": upto})
            seen[k] = []

    for i in range(0, len(recs), 9):
        chunk = recs[i:i + 9]
        for r in chunk:
            count[r["k"]] += 1
            seen[r["k"]].append(r["v"])
            values[r["k"]].add(r["v"])
            timers[r["k"]].add(r["ts"] - r["ts"] % 1000 + 999)
            expected.append({"k": r["k"], "n": count[r["k"]]})
        h.batch(chunk, [r["ts"] for r in chunk])
        wm = chunk[-1]["ts"] - 500
        fire(wm)
        h.watermark(wm)
    fire(MAX_WATERMARK)
    h.watermark(MAX_WATERMARK)

    def canon(rows: list[dict[str, Any]]) -> list[Any]:
        # timers of one timestamp fire in no particular key order: sort within equal timestamps
        out: list[Any] = []
        for r in rows:
            if "timer" in r and out and isinstance(out[-1], list) and out[-1][0]["timer"] == r["timer"]:
                out[-1].append(r)
            else:
                out.append([r] if "timer" in r else r)
        return [sorted(x, key=lambda r: r["k"]) if isinstance(x, list) else x for x in out]

    assert canon(h.out) == canon(expected)
    assert h.side.records["thirteen"] == [{"k": r["k"], "ts": r["ts"]} for r in recs if r["v"] == 13]
    # output of records keeps their timestamps; timer output carries the timer's time
    assert [t for r, t in zip(h.out, h.out_ts) if "timer" in r] == [r["timer"] for r in h.out if "timer" in r]


@pytest.mark.parametrize("p", [1, 2, 4])
def test_process_function_event_timers_restored_mid_way_give_the_straight_output(counter: str, p: int,
                                                                                  tmp_path: Path) -> None:
    from streamlet.keys import key_group_for

    recs = records(400, seed=5)
    spec = ProcessSpec("p", key=KeySpec(("k",)), path=counter, side_outputs=("thirteen",))
    batches = [recs[i:i + 9] for i in range(0, len(recs), 9)]

    def feed(hs: list[Harness], chunk: list[dict[str, Any]]) -> None:
        for h in hs:
            mine = [r for r in chunk if key_group_for(r["k"], 128) in h.backend.key_groups]
            if mine:
                h.batch(mine, [r["ts"] for r in mine])
        for h in hs:
            h.watermark(chunk[-1]["ts"] - 1)

    straight = Harness(spec)
    for chunk in batches:
        feed([straight], chunk)
    straight.watermark(MAX_WATERMARK)
    # the first half at parallelism 1 (timers pending at the snapshot), the rest at parallelism p
    first = Harness(spec)
    for chunk in batches[:20]:
        feed([first], chunk)
    handle, storage = first.snapshot(tmp_path / "chk")
    assert len(first.op.timers.event) > 0, "timers are pending at the snapshot"
    restored = [Harness(spec, index=i, parallelism=p, restore=([handle], storage)) for i in range(p)]
    for chunk in batches[20:]:
        feed(restored, chunk)
    out = list(first.out)
    for h in restored:
        h.watermark(MAX_WATERMARK)
        out += h.out
    def canon(rows: list[dict[str, Any]]) -> list[str]:
        return sorted(repr(sorted(r.items())) for r in rows)

    assert canon(out) == canon(straight.out)
    assert any("timer" in r for h in restored for r in h.out), "restored timers fired"


def test_process_function_processing_time_and_restore(udf_module, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    path = udf_module("""
        class Later:
            def open(self, ctx):
                self.pending = ctx.list_state("pending")
            def process_element(self, r, ctx):
                self.pending.add(r["v"])
                ctx.timers.register_processing_time(ctx.current_processing_time + 5000)
            def on_timer(self, ts, ctx):
                assert ctx.time_domain == "processing"
                out = [{"k": ctx.key, "values": self.pending.get(), "at": ts}]
                self.pending.clear()
                return out
    """) + ":Later"
    spec = ProcessSpec("p", key=KeySpec(("k",)), path=path)
    h = Harness(spec)
    t0 = h.clock.time_ms()
    h.batch([{"k": "a", "v": 1}, {"k": "b", "v": 2}, {"k": "a", "v": 3}])
    h.advance(4.9)
    assert h.out == []
    handle, storage = h.snapshot(tmp_path / "chk")
    # a restored subtask (clock further on) fires the restored timers at its first chance
    h2 = Harness(spec, clock=h.clock, restore=([handle], storage))
    h2.advance(0.1)
    assert sorted(h2.out, key=lambda r: r["k"]) == [{"k": "a", "values": [1, 3], "at": t0 + 5000},
                                                    {"k": "b", "values": [2], "at": t0 + 5000}]
    assert h2.out_ts == [None, None]  # processing-time output has no event time


def test_process_function_errors_name_the_node_and_record(udf_module, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    path = udf_module("class Bad:\n    def process_element(self, r, ctx):\n        return [1 / r['v']]\n") + ":Bad"
    h = Harness(ProcessSpec("p", key=KeySpec(("k",)), path=path))
    with pytest.raises(UserFunctionError, match="node 'p'.*ZeroDivisionError.*'v': 0"):
        h.batch([{"k": "a", "v": 1}, {"k": "a", "v": 0}])


def two_streams(seed: int, n: int = 150) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    left = [{"id": rng.randrange(6), "l": i, "ts": i * 40 + rng.randrange(60)} for i in range(n)]
    right = [{"id": rng.randrange(6), "r": i, "ts": i * 40 + rng.randrange(60)} for i in range(n)]
    return left, right


def feed_two(h: Harness, left: list[dict[str, Any]], right: list[dict[str, Any]], lag: int) -> None:
    """Alternate batches of the two inputs in time order; watermark = min of both sides' max - lag."""
    max_l = max_r = None
    for i in range(0, len(left), 5):
        lc, rc = left[i:i + 5], right[i:i + 5]
        h.batch(lc, [r["ts"] for r in lc])
        h._take(h.op.process_right(rc, [r["ts"] for r in rc]))
        max_l = max([r["ts"] for r in lc] + ([max_l] if max_l is not None else []))
        max_r = max([r["ts"] for r in rc] + ([max_r] if max_r is not None else []))
        h.watermark(min(max_l, max_r) - lag)
    h.watermark(MAX_WATERMARK)


def test_interval_join_matches_bounds_and_cleans_state() -> None:
    left, right = two_streams(2)
    h = Harness(IntervalJoinSpec("j", left_key=KeySpec(("id",)), right_key=KeySpec(("id",)),
                                 lower_ms=-100, upper_ms=50, select="{'l': l['l'], 'r': r['r']}"))
    feed_two(h, left, right, lag=200)
    expected = [{"l": a["l"], "r": b["r"]} for a in left for b in right
                if a["id"] == b["id"] and a["ts"] - 100 <= b["ts"] <= a["ts"] + 50]
    assert h.op.num_late_records == 0
    assert sorted(h.out, key=str) == sorted(expected, key=str)
    ts = {(a["l"], b["r"]): max(a["ts"], b["ts"]) for a in left for b in right}
    assert h.out_ts == [ts[(o["l"], o["r"])] for o in h.out]
    assert all(len(h.op.buffers[s]) == 0 for s in (0, 1)), "buffers are emptied once the watermark passed"


def test_window_join_pairs_within_windows() -> None:
    left, right = two_streams(3)
    h = Harness(WindowJoinSpec("j", left_key=KeySpec(("id",)), right_key=KeySpec(("id",)), size_ms=500,
                               where="l['l'] % 3 != 0", select="{'l': l['l'], 'r': r['r']}"))
    feed_two(h, left, right, lag=200)
    expected = [{"l": a["l"], "r": b["r"]} for a in left for b in right
                if a["id"] == b["id"] and a["ts"] // 500 == b["ts"] // 500 and a["l"] % 3 != 0]
    assert sorted(h.out, key=str) == sorted(expected, key=str)
    assert all(t == (next(a["ts"] for a in left if a["l"] == o["l"]) // 500 * 500 + 499)
               for o, t in zip(h.out, h.out_ts))


def test_regular_join_with_ttl() -> None:
    left, right = two_streams(4, n=60)
    h = Harness(RegularJoinSpec("j", left_key=KeySpec(("id",)), right_key=KeySpec(expr="r['id']"), ttl_ms=10_000))
    order = []
    for i in range(0, len(left), 5):
        h.batch(left[i:i + 5], None)
        order += [("l", r) for r in left[i:i + 5]]
        h._take(h.op.process_right(right[i:i + 5], None))
        order += [("r", r) for r in right[i:i + 5]]
    expected = []
    for pos, (side, rec) in enumerate(order):
        for other_side, other in order[:pos]:
            if other_side != side and other["id"] == rec["id"]:
                expected.append({**(rec if side == "l" else other), **(other if side == "l" else rec)})
    assert sorted(h.out, key=str) == sorted(expected, key=str)
    # after the ttl a key's buffered rows are gone: a new record meets nothing
    h.advance(11)
    before = len(h.out)
    h.batch([{"id": left[0]["id"], "l": -1, "ts": 0}], None)
    assert len(h.out) == before


def test_lookup_join(tmp_path: Path) -> None:
    side = tmp_path / "side.csv"
    side.write_text("".join(f"{k},value-{k}\n" for k in range(0, 50, 2)))
    h = Harness(LookupJoinSpec("lk", key=KeySpec(expr="r['a'] % 50"), path=str(side), header=False,
                               columns=("key", "value"), lookup_key="int(r['key'])",
                               select="{'a': l['a'], 'value': r['value']}"))
    recs = [{"a": a} for a in range(0, 120, 7)]
    h.batch(recs, [a["a"] for a in recs])
    assert h.out == [{"a": r["a"], "value": f"value-{r['a'] % 50}"} for r in recs if (r["a"] % 50) % 2 == 0]
    assert h.out_ts == [r["a"] for r in h.out]


def _lookup(tmp_path: Path, lines: str, **kw: Any) -> Harness:
    side = tmp_path / "side.csv"
    side.write_text(lines)
    return Harness(LookupJoinSpec("lk", key=KeySpec(expr="r['a'] % 10"), path=str(side), header=False,
                                  columns=("key", "value"), lookup_key="int(r['key'])", **kw))


@pytest.mark.parametrize("timed", [True, False])
def test_lookup_join_of_batches_whose_every_key_matches(tmp_path: Path, timed: bool) -> None:
    # one row per key: the whole batch is joined at once, then a batch with an unmatched key
    h = _lookup(tmp_path, "".join(f"{k},v{k}\n" for k in range(8)), select="{'a': l['a'], 'value': r['value']}")
    all_in = [{"a": a} for a in range(0, 80) if a % 10 < 8]
    some_out = [{"a": a} for a in range(100, 140)]
    for recs in (all_in, some_out, all_in[:1]):
        h.batch(recs, [r["a"] * 3 for r in recs] if timed else None)
    recs = [r for r in all_in + some_out + all_in[:1] if r["a"] % 10 < 8]
    assert h.out == [{"a": r["a"], "value": f"v{r['a'] % 10}"} for r in recs]
    assert h.out_ts == [r["a"] * 3 if timed else None for r in recs]
    h.batch([{"a": 9}], [1])  # nothing matches: no output, no timestamps
    assert len(h.out) == len(h.out_ts) == len(recs)


def test_lookup_join_default_select_where_and_several_rows_per_key(tmp_path: Path) -> None:
    recs = [{"a": a} for a in range(30)]
    h = _lookup(tmp_path, "".join(f"{k},v{k}\n" for k in range(10)))
    h.batch(recs, None)
    assert h.out == [{"a": r["a"], "key": str(r["a"] % 10), "value": f"v{r['a'] % 10}"} for r in recs]
    h = _lookup(tmp_path, "".join(f"{k},v{k}\n" for k in range(10)), where="l['a'] > 25",
                select="{'a': l['a'], 'value': r['value']}")
    h.batch(recs, list(range(30)))
    assert h.out == [{"a": a, "value": f"v{a % 10}"} for a in range(26, 30)]
    assert h.out_ts == list(range(26, 30))
    h = _lookup(tmp_path, "".join(f"{k},v{k}\n{k},w{k}\n" for k in range(10)), select="r['value']")
    h.batch(recs[:3], [5, 6, 7])
    assert h.out == ["v0", "w0", "v1", "w1", "v2", "w2"]
    assert h.out_ts == [5, 5, 6, 6, 7, 7]


def test_join_keys_given_as_lists_are_frozen_and_a_map_key_is_refused(tmp_path: Path) -> None:
    side = tmp_path / "side.jsonl"
    side.write_text('{"k": [1, [2]], "v": "x"}\n{"k": [3], "v": "y"}\n')
    h = Harness(LookupJoinSpec("lk", key=KeySpec(expr="[r['a'], [r['b']]] if r['b'] else [r['a']]"), path=str(side),
                               format="jsonl", lookup_key="tuple(r['k'][:1]) + tuple(tuple(x) for x in r['k'][1:])",
                               select="{'a': l['a'], 'v': r['v']}"))
    h.batch([{"a": 1, "b": 2}, {"a": 3, "b": 0}, {"a": 1, "b": 3}], [1, 2, 3])
    assert h.out == [{"a": 1, "v": "x"}, {"a": 3, "v": "y"}]
    assert h.out_ts == [1, 2]
    j = Harness(RegularJoinSpec("j", left_key=KeySpec(expr="[r['id'], r['id']]"), right_key=KeySpec(expr="(r['id'],) * 2"),
                                select="{'l': l['l'], 'r': r['r']}"))
    j.batch([{"id": 1, "l": 10}, {"id": 2, "l": 20}], None)
    j._take(j.op.process_right([{"id": 2, "r": 5}, {"id": 3, "r": 6}], None))
    assert j.out == [{"l": 20, "r": 5}]
    with pytest.raises(UserFunctionError, match="node 'lk'.*a key cannot be a dict"):
        Harness(dataclasses.replace(h.spec, key=KeySpec(expr="{'a': r['a']}"))).batch([{"a": 1}], None)


def test_process_function_keys_given_as_lists_are_frozen_and_a_map_key_is_refused(udf_module, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(tmp_path))
    path = udf_module("class Echo:\n    def process_element(self, r, ctx):\n        return [ctx.key]\n") + ":Echo"
    h = Harness(ProcessSpec("p", key=KeySpec(expr="[r['a'], [r['b']]]"), path=path))
    h.batch([{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert h.out == [(1, (2,)), (3, (4,))]  # the key as keyed state holds it: frozen
    with pytest.raises(UserFunctionError, match="node 'p'.*a key cannot be a dict"):
        Harness(ProcessSpec("p", key=KeySpec(expr="{'a': r['a']}"), path=path)).batch([{"a": 1}])


def test_lookup_join_select_error_names_the_pair(tmp_path: Path) -> None:
    h = _lookup(tmp_path, "".join(f"{k},v{k}\n" for k in range(10)), select="{'x': 10 // l['d']}")
    with pytest.raises(UserFunctionError, match="node 'lk'.*ZeroDivisionError.*'d': 0"):
        h.batch([{"a": 1, "d": 2}, {"a": 2, "d": 0}, {"a": 3, "d": 1}], [1, 2, 3])
    assert h.out == []


def test_timers_due_at_one_watermark_fire_in_chunks_with_the_output_of_one_call(counter: str) -> None:
    # ~3,900 event-time timers (4 keys, one per key and second over 970 s), all due at the final
    # watermark: the chunks fire at most FIRE_CHUNK timers each, lazily (the rest stay queued until
    # the next chunk is asked for), and together are exactly what process_watermark returns
    from streamlet.operators.base import FIRE_CHUNK, concat

    recs = records(10_000, 5)
    spec = ProcessSpec("p", key=KeySpec(("k",)), path=counter, side_outputs=("thirteen",))
    chunked, whole = Harness(spec), Harness(spec)
    for h in (chunked, whole):
        for i in range(0, len(recs), 100):
            h.batch(recs[i:i + 100], [r["ts"] for r in recs[i:i + 100]])
    queued = len(chunked.op.timers.event)
    assert queued > 3 * FIRE_CHUNK
    chunks = []
    it = chunked.op.process_watermark_chunks(MAX_WATERMARK)
    for out in it:
        chunks.append(out)
        fired = sum(1 for r in out[0] if "timer" in r)
        assert fired <= FIRE_CHUNK
        assert len(chunked.op.timers.event) >= queued - len(chunks) * FIRE_CHUNK - 4  # 4: one timestamp's timers
    assert len(chunks) == -(-queued // FIRE_CHUNK)
    assert len(chunked.op.timers.event) == 0
    assert concat(chunks) == whole.op.process_watermark(MAX_WATERMARK)
    assert chunked.side.records == whole.side.records


def test_window_join_fires_in_chunks_with_the_output_of_one_call() -> None:
    from streamlet.operators.base import FIRE_CHUNK, concat

    left = [{"id": i % 3000, "l": i, "ts": i} for i in range(6000)]
    right = [{"id": i % 3000, "r": i, "ts": i} for i in range(6000)]
    spec = WindowJoinSpec("j", left_key=KeySpec(("id",)), right_key=KeySpec(("id",)), size_ms=100_000,
                          select="{'l': l['l'], 'r': r['r']}")
    chunked, whole = Harness(spec), Harness(spec)
    for h in (chunked, whole):
        h.op.process_side(0, left, [r["ts"] for r in left])
        h.op.process_side(1, right, [r["ts"] for r in right])
    chunks = list(chunked.op.process_watermark_chunks(MAX_WATERMARK))
    assert len(chunks) == -(-3000 // FIRE_CHUNK)  # one timer per key (one window)
    assert concat(chunks) == whole.op.process_watermark(MAX_WATERMARK)
    assert sorted((o["l"], o["r"]) for o in concat(chunks)[0]) == sorted(
        (a["l"], b["r"]) for a in left for b in right if a["id"] == b["id"])
