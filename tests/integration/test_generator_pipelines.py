"""Generator sources through the public path: YAML -> plan -> LocalExecutor -> file sink, and the CLI.

Expected outputs are computed here from the definitions (sequence, timestamps, the Nexmark event
mix and its dateTime formula), not read back from the generators.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from tests.support.pipelines import run_graph

BASE = 1_700_000_000_000


def _run(tmp_path: Path, text: str, parallelism: int) -> None:
    pdef = loads(textwrap.dedent(text), source_file="pipeline.yaml", base_dir=str(tmp_path))
    graph = plan(pdef, parallelism_override=parallelism)
    result = run_graph(graph)
    assert result.state == "FINISHED", result.error


def _read(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for f in sorted(directory.glob("part-*.jsonl"))
            for line in f.read_bytes().splitlines() if line]


def _canonical(records: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


@pytest.mark.parametrize("parallelism", [1, 2])
def test_datagen_pipeline_complete_output(tmp_path: Path, parallelism: int) -> None:
    out = tmp_path / f"out{parallelism}"
    _run(tmp_path, f"""
        name: datagen-it
        sources:
          rows:
            type: datagen
            rows: 300
            base_time: 1000
            fields:
              id: {{kind: sequence}}
              ts: {{kind: timestamp}}
              c:  {{kind: constant, value: x}}
              v:  {{kind: random, min: 0, max: 9}}
        transforms:
          doubled: {{input: rows, map: "dict(r, double=r['id'] * 2)"}}
          thirds:  {{input: doubled, filter: "r['id'] % 3 == 0"}}
        sinks:
          out: {{input: thirds, type: file, path: {out}}}
    """, parallelism)
    got = _read(out)
    assert len(list(out.glob("part-*.jsonl"))) == parallelism
    assert all(0 <= r.pop("v") <= 9 for r in got)
    expected = [{"id": i, "ts": 1000 + i, "c": "x", "double": 2 * i} for i in range(0, 300, 3)]
    assert sorted(got, key=lambda r: r["id"]) == expected
    if parallelism == 1:
        assert got == expected


def _bid_times(events: int) -> Counter[int]:
    # event e is a bid when e % 50 >= 4; its dateTime is base + e * 1000 / 10,000 events/s
    return Counter(BASE + e // 10 for e in range(events) if e % 50 >= 4)


def test_nexmark_bid_pipelines_agree_across_parallelism(tmp_path: Path) -> None:
    runs = {}
    for p in (1, 2):
        d = tmp_path / f"p{p}"
        _run(tmp_path, f"""
            name: nexmark-it
            sources:
              bids: {{type: nexmark, events: 5000, kind: bid, seed: 4}}
            transforms:
              euros:  {{input: bids, map: "dict(r, price=r['price'] * 0.908)"}}
              picked: {{input: bids, filter: "r['auction'] % 123 == 0"}}
            sinks:
              raw:  {{input: bids, type: file, path: {d / 'raw'}}}
              q1:   {{input: euros, type: file, path: {d / 'q1'}}}
              q2:   {{input: picked, type: file, path: {d / 'q2'}}}
        """, p)
        runs[p] = {name: _read(d / name) for name in ("raw", "q1", "q2")}
    for p, out in runs.items():
        raw = out["raw"]
        assert len(raw) == 4600
        assert Counter(r["dateTime"] for r in raw) == _bid_times(5000)
        assert all(1000 <= r["auction"] <= 1000 + 3 * 99 + 2 + 10 for r in raw)
        assert all(1000 <= r["bidder"] <= 1000 + 99 + 10 for r in raw)
        assert _canonical(out["q1"]) == _canonical([dict(r, price=r["price"] * 0.908) for r in raw])
        assert _canonical(out["q2"]) == _canonical([r for r in raw if r["auction"] % 123 == 0])
    assert _canonical(runs[1]["raw"]) == _canonical(runs[2]["raw"])
    assert _canonical(runs[1]["q2"]) == _canonical(runs[2]["q2"])


@pytest.mark.parametrize("parallelism", [1, 2])
def test_nexmark_mixed_stream_pipeline(tmp_path: Path, parallelism: int) -> None:
    out = tmp_path / "mixed"
    _run(tmp_path, f"""
        name: nexmark-mixed
        sources:
          events: {{type: nexmark, events: 2500, base_time: 0, first_event_rate: 1000}}
        sinks:
          out: {{input: events, type: file, path: {out}}}
    """, parallelism)
    got = _read(out)
    assert Counter(r["event_type"] for r in got) == {0: 50, 1: 150, 2: 2300}
    persons = sorted(r["person"]["id"] for r in got if r["event_type"] == 0)
    auctions = sorted(r["auction"]["id"] for r in got if r["event_type"] == 1)
    assert persons == list(range(1000, 1050))
    assert auctions == list(range(1000, 1150))
    # at 1,000 events/s from base 0, event e happens at e ms: persons every 50 ms
    assert sorted(r["person"]["dateTime"] for r in got if r["event_type"] == 0) == list(range(0, 2500, 50))


def test_cli_runs_a_nexmark_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "bids"
    path = tmp_path / "q0.yaml"
    path.write_text(textwrap.dedent(f"""
        name: nexmark-cli
        parallelism: 2
        sources:
          bids: {{type: nexmark, events: 2000, kind: bid}}
        sinks:
          out: {{input: bids, type: file, path: {out}}}
    """))
    # the console script of this interpreter's environment, never another install on PATH
    exe = Path(sys.executable).parent / "streamlet"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "streamlet"]
    proc = subprocess.run([*cmd, "run", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = _read(out)
    assert len(got) == 1840
    assert Counter(r["dateTime"] for r in got) == _bid_times(2000)


def _window_counts(events: int, base: int, rate: int, size: int) -> Counter[tuple[int, int]]:
    # event e is a person when e % 50 == 0, an auction when 1..3, else a bid; its dateTime is
    # base + e * 1000 / rate ms (exactly: floored); tumbling windows start at multiples of size
    out: Counter[tuple[int, int]] = Counter()
    for e in range(events):
        kind = 0 if e % 50 == 0 else 1 if e % 50 < 4 else 2
        t = base + e * 1000 // rate
        out[(t - t % size, kind)] += 1
    return out


@pytest.mark.parametrize("parallelism", [1, 2])
@pytest.mark.parametrize("events,base,rate,size", [
    (2500, 0, 1000, 100),                       # 1 event per ms: a timestamp per record
    (7000, 1_700_000_000_123, 300, 1000),       # several ms per event
    (40_000, 1_700_000_000_007, 2_500_000, 1),  # 2,500 events per ms: blocks of one or two ms
    (9_999, 5, 10_000_000, 1),                  # Nexmark's rate, and a last block cut short
])
def test_nexmark_mixed_stream_event_time_is_each_events_date_time(
        tmp_path: Path, parallelism: int, events: int, base: int, rate: int, size: int) -> None:
    # timestamp: dateTime on the mixed stream is the wrapped person's, auction's or bid's dateTime
    out = tmp_path / "counts"
    _run(tmp_path, f"""
        name: nexmark-mixed-time
        sources:
          events: {{type: nexmark, events: {events}, base_time: {base}, first_event_rate: {rate},
                    timestamp: dateTime, watermark: {{max_out_of_orderness: 0s}}}}
        transforms:
          counts:
            input: events
            key_by: event_type
            window: {{type: tumbling, size: {size}ms}}
            aggregate: {{n: count}}
        sinks:
          out: {{input: counts, type: file, path: {out}}}
    """, parallelism)
    got = Counter()
    for r in _read(out):
        assert r["window_end"] - r["window_start"] == size
        got[(r["window_start"], r["event_type"])] += r["n"]
    assert got == _window_counts(events, base, rate, size)


def test_nexmark_kind_event_time_is_its_date_time(tmp_path: Path) -> None:
    out = tmp_path / "counts"
    _run(tmp_path, f"""
        name: nexmark-bid-time
        sources:
          bids: {{type: nexmark, kind: bid, events: 30000, base_time: 11, first_event_rate: 1300000,
                  timestamp: dateTime}}
        transforms:
          counts: {{input: bids, key_by: "r['bidder'] % 2", window: {{type: tumbling, size: 1ms}},
                    aggregate: {{n: count}}}}
        sinks:
          out: {{input: counts, type: file, path: {out}}}
    """, 1)
    got = Counter()
    for r in _read(out):
        got[r["window_start"]] += r["n"]
    expected = Counter({w: n for (w, kind), n in _window_counts(30000, 11, 1_300_000, 1).items() if kind == 2})
    assert got == expected
