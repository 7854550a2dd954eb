"""The window operator on a real heap state backend, against plain-Python reference computations.

Each test feeds batches and watermarks (bounded out-of-orderness: after each batch the watermark
is ``max timestamp - L - 1``), then the final watermark, and compares the complete output with
windows computed here from the input records alone.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest

from streamlet.graph.operators import KeySpec, WindowSpec
from streamlet.time.watermarks import MAX_WATERMARK
from tests.support.operators import Harness

AGGS = (("n", "count", None, None), ("total", "sum", "v", None), ("lo", "min", "v", None),
        ("hi", "max", "v", None), ("mean", "avg", "v", None), ("first", "first", "v", None),
        ("last", "last", "v", None), ("all", "collect", "v", None), ("kinds", "count_distinct", "c", None),
        ("big", "count", None, "r['v'] >= 50"))


def reference(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The aggregates of AGGS over records in arrival order, computed directly."""
    vs = [r["v"] for r in group]
    return {"n": len(group), "total": sum(vs), "lo": min(vs), "hi": max(vs), "mean": sum(vs) / len(vs),
            "first": vs[0], "last": vs[-1], "all": vs, "kinds": len({r["c"] for r in group}),
            "big": sum(1 for v in vs if v >= 50)}


def make_records(n: int, seed: int, jitter: int, keys: int = 5, step: int = 37) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ts = i * step + rng.randrange(-jitter, jitter + 1) if jitter else i * step
        out.append({"k": f"k{rng.randrange(keys)}", "v": rng.randrange(100), "c": rng.choice("xyz"), "ts": max(ts, 0)})
    return out


def drive(h: Harness, records: list[dict[str, Any]], lag: int, batch: int = 7) -> list[int]:
    """Feed batches; after each, the watermark max_ts - lag - 1; then MAX. Returns the watermark at each record."""
    wm = None
    max_ts = None
    seen = []
    for i in range(0, len(records), batch):
        chunk = records[i:i + batch]
        seen += [wm] * len(chunk)
        h.batch(chunk, [r["ts"] for r in chunk])
        m = max(r["ts"] for r in chunk)
        max_ts = m if max_ts is None else max(max_ts, m)
        if wm is None or max_ts - lag - 1 > wm:
            wm = max_ts - lag - 1
            h.watermark(wm)
    h.watermark(MAX_WATERMARK)
    h.end()
    return seen


def by_window(records: list[dict[str, Any]], windows: Callable[[int], list[tuple[int, int]]],
              slice_ms: int | None = None) -> list[dict[str, Any]]:
    """Rows of every (key, window) with data.  With ``slice_ms`` (sliding windows) first, last
    and collect follow slice order, then arrival order within a slice (what merging slices gives)."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    if slice_ms:
        records = sorted(records, key=lambda r: r["ts"] // slice_ms)  # stable: arrival within a slice
    for r in records:
        for s, e in windows(r["ts"]):
            groups[(r["k"], s, e)].append(r)
    return [{"k": k, "window_start": s, "window_end": e, **reference(g)} for (k, s, e), g in groups.items()]


def canon(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)


def spec(**kw: Any) -> WindowSpec:
    base: dict[str, Any] = {"key": KeySpec(("k",)), "aggregates": AGGS}
    base.update(kw)
    return WindowSpec("w", **base)


def tumbling(size: int, offset: int = 0) -> Callable[[int], list[tuple[int, int]]]:
    return lambda ts: [(ts - (ts - offset) % size, ts - (ts - offset) % size + size)]


def sliding(size: int, slide: int) -> Callable[[int], list[tuple[int, int]]]:
    def windows(ts: int) -> list[tuple[int, int]]:
        last_start = ts - ts % slide
        return [(s, s + size) for s in range(last_start, ts - size, -slide)][::-1]
    return windows


@pytest.mark.parametrize("offset", [0, 130])
def test_tumbling_out_of_order_complete_output(offset: int) -> None:
    recs = make_records(400, seed=1, jitter=300)
    h = Harness(spec(window="tumbling", size_ms=1000, offset_ms=offset))
    drive(h, recs, lag=600)  # the watermark lags twice the jitter: nothing is late
    assert h.op.num_late_records == 0
    assert canon(h.out) == canon(by_window(recs, tumbling(1000, offset)))
    # every row carries timestamp window_end - 1, and rows came out in window-end order
    assert h.out_ts == [r["window_end"] - 1 for r in h.out]
    assert h.out_ts == sorted(h.out_ts)


def test_late_records_go_to_the_side_output_and_are_counted() -> None:
    recs = make_records(400, seed=2, jitter=400)
    h = Harness(spec(window="tumbling", size_ms=500, late_output="late"))
    wms = drive(h, recs, lag=100)  # jitter beyond the lag: some records are late
    late = [r for r, wm in zip(recs, wms) if wm is not None and tumbling(500)(r["ts"])[0][1] - 1 <= wm]
    assert late, "the test data must contain late records"
    assert h.op.num_late_records == len(late)
    assert h.side.records["late"] == late
    assert h.side.timestamps["late"] == [r["ts"] for r in late]
    on_time = [r for r in recs if r not in late]
    assert canon(h.out) == canon(by_window(on_time, tumbling(500)))


def test_allowed_lateness_refires_windows_and_then_drops() -> None:
    recs = make_records(300, seed=3, jitter=400)
    lateness = 200
    h = Harness(spec(window="tumbling", size_ms=500, allowed_lateness_ms=lateness))
    # reference simulation of the semantics, batch by batch
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    fired: set[tuple[str, int]] = set()
    expected: list[dict[str, Any]] = []
    dropped = 0
    wm = None
    max_ts = None

    def row(key: tuple[str, int]) -> dict[str, Any]:
        return {"k": key[0], "window_start": key[1], "window_end": key[1] + 500, **reference(groups[key])}

    for i in range(0, len(recs), 7):
        chunk = recs[i:i + 7]
        refire: list[tuple[str, int]] = []
        for r in chunk:
            w = r["ts"] - r["ts"] % 500
            if wm is not None and w + 500 - 1 + lateness <= wm:
                dropped += 1
                continue
            groups[(r["k"], w)].append(r)
            if wm is not None and w + 500 - 1 <= wm and (r["k"], w) not in refire:
                refire.append((r["k"], w))
        expected += [row(key) for key in refire]
        fired.update(refire)
        h.batch(chunk, [r["ts"] for r in chunk])
        m = max(r["ts"] for r in chunk)
        max_ts = m if max_ts is None else max(max_ts, m)
        if wm is None or max_ts - 101 > wm:
            wm = max_ts - 101
            for key in sorted(groups, key=lambda kw: kw[1]):
                if key not in fired and key[1] + 499 <= wm:
                    expected.append(row(key))
                    fired.add(key)
            h.watermark(wm)
    expected += [row(key) for key in groups if key not in fired]
    h.watermark(MAX_WATERMARK)
    assert dropped > 0 and h.op.num_late_records == dropped
    assert canon(h.out) == canon(expected)
    # all state is gone once the lateness passed
    assert len(h.backend.value_state("w/windows")) == 0


@pytest.mark.parametrize("size,slide", [(1000, 250), (1000, 300), (600, 600), (3600, 100)])
def test_sliding_windows_match_every_window(size: int, slide: int) -> None:
    recs = make_records(300, seed=4, jitter=150, keys=4)
    h = Harness(spec(window="sliding", size_ms=size, slide_ms=slide))
    drive(h, recs, lag=300)
    assert h.op.num_late_records == 0
    import math

    assert canon(h.out) == canon(by_window(recs, sliding(size, slide), math.gcd(size, slide)))
    assert h.out_ts == sorted(h.out_ts)
    assert len(h.backend.value_state("w/windows")) == 0, "slices are dropped once their last window fired"


def test_sliding_state_is_slices_not_windows() -> None:
    # a 1 h window sliding by 1 s: a record updates one slice, the state holds one entry per slice
    recs = [{"k": "a", "v": 1, "c": "x", "ts": t} for t in range(0, 20_000, 100)]
    h = Harness(spec(window="sliding", size_ms=3_600_000, slide_ms=1000))
    h.batch(recs, [r["ts"] for r in recs])
    assert len(h.backend.value_state("w/windows")) == 20  # twenty 1 s slices, not 3600 windows x 20
    h.watermark(MAX_WATERMARK)
    assert canon(h.out) == canon(by_window(recs, sliding(3_600_000, 1000), 1000))
    assert len(h.out) == 3600 + 19


def sessions_reference(records: list[dict[str, Any]], gap: int) -> list[dict[str, Any]]:
    out = []
    per_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        per_key[r["k"]].append(r)
    for k, rs in per_key.items():
        ordered = sorted(rs, key=lambda r: r["ts"])
        groups: list[list[dict[str, Any]]] = []
        end = None
        for r in ordered:
            if end is not None and r["ts"] <= end:
                groups[-1].append(r)
                end = max(end, r["ts"] + gap)
            else:
                groups.append([r])
                end = r["ts"] + gap
        for g in groups:
            arrival = [r for r in rs if r in g]
            out.append({"k": k, "window_start": min(r["ts"] for r in g),
                        "window_end": max(r["ts"] for r in g) + gap, **reference(arrival)})
    return out


def test_sessions_merge_out_of_order() -> None:
    rng = random.Random(5)
    recs = []
    t = 0
    for i in range(300):  # bursts separated by silences longer than the gap
        t += rng.choice([20, 30, 50, 400])
        recs.append({"k": f"k{rng.randrange(3)}", "v": rng.randrange(100), "c": rng.choice("xy"), "ts": t})
    shuffled = recs[:]
    for i in range(0, len(shuffled) - 5, 5):  # out of order within groups of five
        chunk = shuffled[i:i + 5]
        rng.shuffle(chunk)
        shuffled[i:i + 5] = chunk
    h = Harness(spec(window="session", gap_ms=100, aggregates=AGGS[:5] + AGGS[7:]))
    drive(h, shuffled, lag=2500)  # groups of five span at most 2000 ms: nothing is late
    assert h.op.num_late_records == 0
    # first, last and collect of merged sessions follow the order of the merged pieces: not checked here
    expected = [{k: v for k, v in r.items() if k not in ("all", "first", "last")}
                for r in sessions_reference(shuffled, 100)]
    got = [{k: v for k, v in r.items() if k != "all"} for r in h.out]
    assert canon(got) == canon(expected)
    assert sorted(sorted(r["all"]) for r in h.out) == sorted(sorted(r["all"]) for r in sessions_reference(shuffled, 100))
    # a bridging record merges two sessions into one
    h2 = Harness(spec(window="session", gap_ms=100, aggregates=(("n", "count", None, None),)))
    h2.batch([{"k": "a", "ts": 0}, {"k": "a", "ts": 150}], [0, 150])
    h2.batch([{"k": "a", "ts": 90}], [90])
    h2.watermark(MAX_WATERMARK)
    assert h2.out == [{"k": "a", "window_start": 0, "window_end": 250, "n": 3}]


def test_global_count_windows_and_non_keyed() -> None:
    recs = make_records(53, seed=6, jitter=0, keys=2)
    h = Harness(spec(window="global", count=5, aggregates=(("n", "count", None, None), ("total", "sum", "v", None))))
    h.batch(recs, [r["ts"] for r in recs])
    expected = []
    per_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        per_key[r["k"]].append(r)
        if len(per_key[r["k"]]) == 5:
            g = per_key.pop(r["k"])
            expected.append({"k": r["k"], "window_start": None, "window_end": None, "n": 5,
                             "total": sum(x["v"] for x in g)})
    assert h.out == expected
    h.watermark(MAX_WATERMARK)
    h.end()
    assert h.out == expected  # an incomplete count window never fires (Flink's countWindow)
    # non-keyed: all records in one window, no key field
    h = Harness(spec(key=None, window="tumbling", size_ms=1000, aggregates=(("n", "count", None, None),)))
    h.batch(recs, [r["ts"] for r in recs])
    h.watermark(MAX_WATERMARK)
    counts: dict[int, int] = defaultdict(int)
    for r in recs:
        counts[r["ts"] // 1000 * 1000] += 1
    assert h.out == [{"window_start": s, "window_end": s + 1000, "n": n} for s, n in sorted(counts.items())]


def test_processing_time_windows_fire_on_the_clock() -> None:
    h = Harness(spec(window="tumbling", size_ms=10_000, time="processing",
                     aggregates=(("n", "count", None, None),)))
    t0 = h.clock.time_ms()
    start = t0 - t0 % 10_000
    h.batch([{"k": "a"}, {"k": "b"}, {"k": "a"}])
    h.advance((start + 10_000 - 1 - t0) / 1000 - 0.001)
    assert h.out == []
    h.batch([{"k": "a"}])
    h.advance(0.001)  # the clock reaches end - 1 of the first window
    assert canon(h.out) == canon([{"k": "a", "window_start": start, "window_end": start + 10_000, "n": 3},
                                  {"k": "b", "window_start": start, "window_end": start + 10_000, "n": 1}])
    h.advance(1)
    h.batch([{"k": "c"}])
    h.end()  # end of input fires what is open
    assert h.out[2:] == [{"k": "c", "window_start": start + 10_000, "window_end": start + 20_000, "n": 1}]


def test_user_aggregate_and_computed_keys(udf_module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys

    mod = udf_module("""
        class Spread:
            def create(self):
                return [None, None]
            def add(self, acc, v):
                lo, hi = acc
                return [v if lo is None or v < lo else lo, v if hi is None or v > hi else hi]
            def merge(self, acc, other):
                return self.add(self.add(acc, other[0]), other[1]) if other[0] is not None else acc
            def result(self, acc):
                return acc[1] - acc[0]
    """)
    sys.path.insert(0, str(tmp_path))
    recs = make_records(200, seed=7, jitter=0)
    key = KeySpec(expr="(r['k'], r['v'] % 2)", names=("k", "parity"))
    h = Harness(WindowSpec("w", key=key, window="tumbling", size_ms=2000,
                           aggregates=(("spread", f"{mod}:Spread", "v", None), ("n", "count", None, None))))
    h.batch(recs, [r["ts"] for r in recs])
    h.watermark(MAX_WATERMARK)
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for r in recs:
        groups[(r["k"], r["v"] % 2, r["ts"] // 2000 * 2000)].append(r["v"])
    expected = [{"k": k, "parity": p, "window_start": s, "window_end": s + 2000, "spread": max(vs) - min(vs),
                 "n": len(vs)} for (k, p, s), vs in groups.items()]
    assert canon(h.out) == canon(expected)


def test_sliding_windows_with_a_user_aggregate_that_changes_its_accumulator(udf_module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # add and merge extend the accumulator in place: the merges of slices must work on copies
    import sys

    mod = udf_module("""
        class Bag:
            def create(self):
                return []
            def add(self, acc, v):
                acc.append(v)
                return acc
            def merge(self, acc, other):
                acc.extend(other)
                return acc
            def result(self, acc):
                return sorted(acc)
    """)
    sys.path.insert(0, str(tmp_path))
    recs = make_records(400, seed=8, jitter=0, keys=3)
    h = Harness(WindowSpec("w", key=KeySpec(("k",)), window="sliding", size_ms=1000, slide_ms=100,
                           aggregates=(("bag", f"{mod}:Bag", "v", None), ("all", "collect", "v", None))))
    drive(h, recs, lag=0, batch=5)
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for r in recs:
        for s, e in sliding(1000, 100)(r["ts"]):
            groups[(r["k"], s, e)].append(r["v"])
    expected = [{"k": k, "window_start": s, "window_end": e, "bag": sorted(vs), "all": vs}
                for (k, s, e), vs in groups.items()]
    assert canon(h.out) == canon(expected)
    assert h.out_ts == sorted(h.out_ts)


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("kind", ["tumbling", "sliding", "session"])
def test_restore_mid_way_at_another_parallelism_gives_the_straight_output(kind: str, p: int, tmp_path: Path) -> None:
    recs = make_records(600, seed=8, jitter=200, keys=12)
    kw = {"tumbling": {"size_ms": 700}, "sliding": {"size_ms": 1000, "slide_ms": 200},
          "session": {"gap_ms": 60}}[kind]
    # merged sessions order first/last/collect by how pieces merged, which batching changes
    aggs = AGGS if kind != "session" else tuple(a for a in AGGS if a[1] not in ("first", "last", "collect"))
    s = spec(window=kind, aggregates=aggs, **kw)
    straight = Harness(s)
    drive(straight, recs, lag=400)
    assert straight.op.num_late_records == 0
    # run the first half at parallelism 1, snapshot, restore at parallelism p, finish
    first = Harness(s)
    half = recs[:301]
    wm = max(r["ts"] for r in half) - 401
    for i in range(0, len(half), 7):
        first.batch(half[i:i + 7], [r["ts"] for r in half[i:i + 7]])
    first.watermark(wm)
    handle, storage = first.snapshot(tmp_path / "chk")
    rest = recs[301:]
    outs = list(first.out)
    for index in range(p):
        h = Harness(s, index=index, parallelism=p, restore=([handle], storage))
        h.watermark(wm)
        mine = [r for r in rest if h.backend.key_groups.__contains__(_kg(r["k"]))]
        max_ts = wm + 401
        for i in range(0, len(mine), 7):
            chunk = mine[i:i + 7]
            h.batch(chunk, [r["ts"] for r in chunk])
        h.watermark(max(max_ts, max(r["ts"] for r in rest)) - 401)
        h.watermark(MAX_WATERMARK)
        outs += h.out
    assert canon(outs) == canon(straight.out)


def _kg(key: Any) -> int:
    from streamlet.keys import key_group_for

    return key_group_for(key, 128)
