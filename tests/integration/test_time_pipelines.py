"""Event time through the public path (YAML -> loader -> planner -> tasks on one event loop) at
parallelism 1, 2 and 4: complete window, join and process-function outputs compared with results
computed here, in plain Python, from the input records alone."""

from __future__ import annotations

import random
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import load
from streamlet.client.results import JobResult
from tests.support.pipelines import canonical, read_output, run_graph, write_jsonl

parallelisms = pytest.mark.parametrize("p", [1, 2, 4])


def run(directory: Path, text: str, p: int) -> JobResult:
    """Write and run a pipeline on a MiniCluster (sources emit watermarks every millisecond)."""
    path = directory / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    graph = plan(load(path, variables={}), parallelism_override=p)
    result = run_graph(graph, **{"pipeline.auto-watermark-interval": "1ms"})
    assert result.state == "FINISHED", f"job ended {result.state}: {result.error!r}"
    return result


def jittered(n: int, seed: int, jitter: int, keys: int = 7, step: int = 13) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": i, "user": f"u{rng.randrange(keys)}", "value": rng.randrange(100),
             "ts": 1_000_000 + i * step + rng.randrange(-jitter, jitter + 1)} for i in range(n)]


def windows_reference(records: list[dict[str, Any]], size: int, slide: int | None = None) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if slide is None:
            starts = [r["ts"] - r["ts"] % size]
        else:
            last = r["ts"] - r["ts"] % slide
            starts = list(range(last, r["ts"] - size, -slide))
        for s in starts:
            groups[(r["user"], s)].append(r)
    return [{"user": u, "window_start": s, "window_end": s + (size if slide is None else size), "n": len(g),
             "total": sum(x["value"] for x in g), "top": max(x["value"] for x in g),
             "users": len({x["id"] % 5 for x in g})}
            for (u, s), g in groups.items()]


@parallelisms
@pytest.mark.parametrize("kind", ["tumbling", "sliding"])
def test_windows_of_out_of_order_input(tmp_path: Path, p: int, kind: str) -> None:
    recs = jittered(3000, seed=p, jitter=400)
    write_jsonl(tmp_path / "events.jsonl", [dict(r, bucket=r["id"] % 5) for r in recs])
    window = "{type: tumbling, size: 1s}" if kind == "tumbling" else "{type: sliding, size: 1s, slide: 250ms}"
    run(tmp_path, f"""
        batch_size: 50
        sources:
          events: {{type: file, path: events.jsonl, timestamp: ts, watermark: {{max_out_of_orderness: 800ms}}}}
        transforms:
          w:
            input: events
            key_by: user
            window: {window}
            aggregate: {{n: count, total: {{sum: value}}, top: {{max: value}}, users: {{count_distinct: bucket}}}}
        sinks: {{out: {{input: w, type: file, path: out}}}}
    """, p)
    expected = windows_reference(recs, 1000, None if kind == "tumbling" else 250)
    assert canonical(read_output(tmp_path / "out")) == canonical(expected)


@parallelisms
def test_late_records_are_counted_and_sent_to_the_side_output(tmp_path: Path, p: int) -> None:
    # 20,000 records in order (jitter within the bound), then 100 from far behind, read by one
    # source subtask: its watermark (emitted every millisecond while the bulk is read) reaches
    # every window subtask on the same channel ahead of them, so they are late at any window
    # parallelism.  With a parallel source they would not always be: a window subtask's watermark
    # is the minimum over every source subtask, and one that lags (scheduled late) holds it back
    recs = jittered(20_000, seed=10 + p, jitter=40)
    rng = random.Random(p)
    behind = [{"id": 100_000 + i, "user": f"u{rng.randrange(7)}", "value": i, "ts": 1_000_000 - 1000 + i}
              for i in range(100)]
    write_jsonl(tmp_path / "events.jsonl", recs + behind)
    run(tmp_path, """
        batch_size: 20
        sources:
          events: {type: file, path: events.jsonl, parallelism: 1, timestamp: ts,
                   watermark: {max_out_of_orderness: 100ms}}
        transforms:
          w:
            input: events
            key_by: user
            window: {type: tumbling, size: 500ms, late_output: late}
            aggregate: {n: count, total: {sum: value}}
          flagged: {input: late, map: "dict(r, late=True)"}
        sinks:
          out: {input: w, type: file, path: out}
          late_out: {input: flagged, type: file, path: late}
    """, p)
    late = read_output(tmp_path / "late")
    assert all(r.pop("late") for r in late)
    late_ids = {r["id"] for r in late}
    assert {r["id"] for r in behind} <= late_ids, "records from far behind the watermark are late"
    assert late_ids <= {r["id"] for r in recs + behind}
    assert canonical(late) == canonical([r for r in recs + behind if r["id"] in late_ids])
    # the windows hold exactly the records that were not late: none is lost, none counted twice
    on_time = [r for r in recs + behind if r["id"] not in late_ids]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in on_time:
        groups[(r["user"], r["ts"] - r["ts"] % 500)].append(r)
    expected = [{"user": u, "window_start": s, "window_end": s + 500, "n": len(g), "total": sum(x["value"] for x in g)}
                for (u, s), g in groups.items()]
    assert canonical(read_output(tmp_path / "out")) == canonical(expected)


@parallelisms
def test_a_finished_split_leaves_the_source_watermark(tmp_path: Path, p: int) -> None:
    # one source subtask reads a.jsonl, then b.jsonl (ahead in event time), then one record back
    # at 15 s: once a.jsonl is finished its watermark must not hold the source's back, so by then
    # the watermark (b's, near 30 s) has passed 15 s and the record is late
    a = [{"id": i, "user": f"u{i % 3}", "value": 1, "ts": i * 10} for i in range(1000)]
    b = [{"id": 1000 + i, "user": f"u{i % 3}", "value": 2, "ts": 10_000 + i // 2} for i in range(40_000)]
    back = {"id": 99_999, "user": "u0", "value": 3, "ts": 15_000}
    write_jsonl(tmp_path / "in" / "a.jsonl", a)
    write_jsonl(tmp_path / "in" / "b.jsonl", b + [back])
    run(tmp_path, """
        batch_size: 20
        sources:
          events: {type: file, path: in, format: jsonl, parallelism: 1, timestamp: ts,
                   watermark: {max_out_of_orderness: 100ms}}
        transforms:
          w: {input: events, key_by: user, window: {type: tumbling, size: 1s, late_output: late},
              aggregate: {n: count, total: {sum: value}}}
        sinks:
          out: {input: w, type: file, path: out}
          late_out: {input: late, type: file, path: late}
    """, p)
    assert read_output(tmp_path / "late") == [back]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in a + b:
        groups[(r["user"], r["ts"] - r["ts"] % 1000)].append(r)
    expected = [{"user": u, "window_start": s, "window_end": s + 1000, "n": len(g), "total": sum(x["value"] for x in g)}
                for (u, s), g in groups.items()]
    assert canonical(read_output(tmp_path / "out")) == canonical(expected)


@parallelisms
def test_sessions_merge(tmp_path: Path, p: int) -> None:
    rng = random.Random(3)
    recs = []
    t = 5_000_000
    for i in range(1500):
        t += rng.choice([10, 20, 40, 300])
        recs.append({"id": i, "user": f"u{rng.randrange(4)}", "value": rng.randrange(10), "ts": t})
    for i in range(0, len(recs) - 4, 4):  # out of order within groups of four
        chunk = recs[i:i + 4]
        rng.shuffle(chunk)
        recs[i:i + 4] = chunk
    write_jsonl(tmp_path / "events.jsonl", recs)
    run(tmp_path, """
        batch_size: 30
        sources:
          events: {type: file, path: events.jsonl, timestamp: ts, watermark: {max_out_of_orderness: 2s}}
        transforms:
          s:
            input: events
            key_by: user
            window: {type: session, gap: 100ms}
            aggregate: {n: count, total: {sum: value}}
        sinks: {out: {input: s, type: file, path: out}}
    """, p)
    expected = []
    per_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in recs:
        per_user[r["user"]].append(r)
    for u, rs in per_user.items():
        session: list[dict[str, Any]] = []
        for r in sorted(rs, key=lambda r: r["ts"]):
            if session and r["ts"] > max(x["ts"] for x in session) + 100:
                expected.append(session)
                session = []
            session.append(r)
        expected.append(session)
    rows = [{"user": g[0]["user"], "window_start": min(x["ts"] for x in g),
             "window_end": max(x["ts"] for x in g) + 100, "n": len(g), "total": sum(x["value"] for x in g)}
            for g in expected]
    assert canonical(read_output(tmp_path / "out")) == canonical(rows)


@parallelisms
def test_union_of_streams_with_different_watermarks(tmp_path: Path, p: int) -> None:
    # one stream runs far ahead in event time: the union's windows wait for the slower one
    fast = [{"id": i, "user": "u", "value": 1, "ts": 100_000 + i * 10} for i in range(1000)]
    slow = [{"id": 10_000 + i, "user": "u", "value": 2, "ts": 100_000 + i} for i in range(1000)]
    write_jsonl(tmp_path / "fast.jsonl", fast)
    write_jsonl(tmp_path / "slow.jsonl", slow)
    run(tmp_path, """
        batch_size: 25
        sources:
          fast: {type: file, path: fast.jsonl, timestamp: ts}
          slow: {type: file, path: slow.jsonl, timestamp: ts}
        transforms:
          both: {union: [fast, slow]}
          w: {input: both, key_by: user, window: {type: tumbling, size: 100ms, late_output: late},
              aggregate: {n: count, total: {sum: value}}}
        sinks:
          out: {input: w, type: file, path: out}
          dropped: {input: late, type: file, path: late}
    """, p)
    assert read_output(tmp_path / "late") == []  # no record is late: the minimum watermark held
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in fast + slow:
        groups[r["ts"] - r["ts"] % 100].append(r)
    expected = [{"user": "u", "window_start": s, "window_end": s + 100, "n": len(g), "total": sum(x["value"] for x in g)}
                for s, g in groups.items()]
    assert canonical(read_output(tmp_path / "out")) == canonical(expected)


@parallelisms
def test_interval_join_and_process_function(tmp_path: Path, p: int, udf_module) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(4)
    orders = [{"oid": i, "cust": rng.randrange(20), "ts": 50_000 + i * 20} for i in range(600)]
    pays = [{"pid": i, "cust": rng.randrange(20), "ts": 50_000 + i * 20 + rng.randrange(-30, 30)} for i in range(600)]
    write_jsonl(tmp_path / "orders.jsonl", orders)
    write_jsonl(tmp_path / "pays.jsonl", pays)
    mod = udf_module("""
        class Firsts:
            def open(self, ctx):
                self.n = ctx.value_state("n")
            def process_element(self, r, ctx):
                n = (self.n.value() or 0) + 1
                self.n.update(n)
                ctx.timers.register_event_time(ctx.timestamp - ctx.timestamp % 1000 + 999)
                return [dict(r, nth=n)] if n <= 3 else []
            def on_timer(self, ts, ctx):
                return [{"cust": ctx.key, "second": ts, "seen": self.n.value()}]
    """)
    run(tmp_path, f"""
        batch_size: 40
        sources:
          orders: {{type: file, path: orders.jsonl, timestamp: ts}}
          pays: {{type: file, path: pays.jsonl, timestamp: ts, watermark: {{max_out_of_orderness: 100ms}}}}
        transforms:
          matched:
            join: {{type: interval, left: orders, right: pays, left_key: cust, right_key: cust, lower: -50ms,
                    upper: 100ms, select: "{{'oid': l['oid'], 'pid': r['pid'], 'cust': l['cust']}}"}}
          firsts: {{input: matched, key_by: cust, process: "{mod}:Firsts"}}
        sinks:
          pairs: {{input: matched, type: file, path: pairs}}
          out: {{input: firsts, type: file, path: out}}
    """, p)
    pairs = [{"oid": o["oid"], "pid": y["pid"], "cust": o["cust"]} for o in orders for y in pays
             if o["cust"] == y["cust"] and o["ts"] - 50 <= y["ts"] <= o["ts"] + 100]
    assert canonical(read_output(tmp_path / "pairs")) == canonical(pairs)
    got = read_output(tmp_path / "out")
    # per customer: up to three pairs numbered 1..3, and one timer row per second with pairs
    per_cust: dict[int, int] = defaultdict(int)
    for r in pairs:
        per_cust[r["cust"]] += 1
    nth = sorted((r["cust"], r["nth"]) for r in got if "nth" in r)
    assert nth == sorted((c, k) for c, n in per_cust.items() for k in range(1, min(n, 3) + 1))
    ts_of = {o["oid"]: o["ts"] for o in orders}
    pay_ts = {y["pid"]: y["ts"] for y in pays}
    seconds = {(r["cust"], max(ts_of[r["oid"]], pay_ts[r["pid"]]) // 1000 * 1000 + 999) for r in pairs}
    timers = {(r["cust"], r["second"]) for r in got if "second" in r}
    assert timers == seconds
    # at its last timer a customer has seen all its pairs
    last = {}
    for r in got:
        if "second" in r and r["second"] >= last.get(r["cust"], (0, 0))[0]:
            last[r["cust"]] = (r["second"], r["seen"])
    assert {c: s for c, (_, s) in last.items()} == dict(per_cust)
