"""Time in the YAML loader and planner: event time at sources, windows, side outputs, process
functions and joins become the right specs and edges, and mistakes are errors naming the place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.errors import PipelineDefinitionError
from streamlet.graph.job_graph import JobGraph
from streamlet.graph.operators import (
    IntervalJoinSpec, KeySpec, LookupJoinSpec, OpSpec, ProcessSpec, RegularJoinSpec, WindowJoinSpec, WindowSpec,
)

F = "p.yaml"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "in.jsonl").write_text('{"a": 1, "ts": 5}\n')
    (tmp_path / "side.csv").write_text("1,one\n2,two\n")
    (tmp_path / "fns.py").write_text("class P:\n    def process_element(self, r, ctx):\n        return [r]\n")
    return tmp_path


def graph_of(base: Path, text: str, **kwargs: Any) -> JobGraph:
    return plan(loads(text, source_file=F, base_dir=str(base), variables={}), **kwargs)


def plan_error(base: Path, text: str) -> PipelineDefinitionError:
    with pytest.raises(PipelineDefinitionError) as info:
        graph_of(base, text)
    return info.value


def spec_of(g: JobGraph, node: str) -> OpSpec:
    return next(op for v in g.vertices for op in v.operators if op.id == node)


TIMED = "sources: {s: {type: file, path: in.jsonl, timestamp: ts, watermark: {max_out_of_orderness: 4s, idle_timeout: 30s}}}\n"


def test_source_event_time_travels_in_the_spec(base: Path) -> None:
    g = graph_of(base, TIMED + "sinks: {o: {input: s, type: blackhole}}\n")
    src = spec_of(g, "s")
    assert src.timestamp == {"field": "ts"}
    assert src.watermark == {"max_out_of_orderness_ms": 4000, "idle_timeout_ms": 30_000}
    assert "timestamp" not in src.params and "watermark" not in src.params
    g = graph_of(base, "sources: {s: {type: file, path: in.jsonl, timestamp: \"r['ts'] * 1000\"}}\n"
                       "sinks: {o: {input: s, type: blackhole}}\n")
    src = spec_of(g, "s")
    assert src.timestamp == {"expr": "r['ts'] * 1000", "path": None}
    assert src.watermark == {"max_out_of_orderness_ms": 0, "idle_timeout_ms": None}  # monotonous by default


def test_window_specs_and_json_round_trip(base: Path) -> None:
    g = graph_of(base, TIMED + """
transforms:
  w:
    input: s
    key_by: {k: a, day: "r['ts'] // 86400000"}
    window: {type: sliding, size: 10s, slide: 2s, allowed_lateness: 1s, late_output: late}
    aggregate: {n: count, big: {count: "*", where: "r['a'] > 1"}, u: {count_distinct: a}}
  again: {input: late, map: "r"}
sinks: {o: {input: w, type: blackhole}, lo: {input: again, type: blackhole}}
""")
    w = spec_of(g, "w")
    assert isinstance(w, WindowSpec)
    assert (w.window, w.size_ms, w.slide_ms, w.allowed_lateness_ms, w.late_output) == ("sliding", 10_000, 2000, 1000,
                                                                                     "late")
    assert w.key == KeySpec(expr="(r['a'], (r['ts'] // 86400000))", names=("k", "day"))
    assert w.aggregates == (("n", "count", None, None), ("big", "count", None, "r['a'] > 1"),
                            ("u", "count_distinct", "a", None))
    assert OpSpec.from_json(w.to_json()) == w
    # the late records reach `again` through an edge that carries the side output's name
    wv = next(v for v in g.vertices if "w" in v.node_ids)
    side = [e for e in g.edges if e.source == wv.id and e.side_output == "late"]
    assert len(side) == 1 and JobGraph.from_json(g.to_json()) == g


def test_non_keyed_window_runs_as_one_subtask(base: Path) -> None:
    g = graph_of(base, TIMED + """
parallelism: 3
transforms:
  w: {input: s, window: {type: tumbling, size: 1s}, aggregate: {n: count}}
sinks: {o: {input: w, type: blackhole}}
""")
    assert {v.name: v.parallelism for v in g.vertices} == {"s": 3, "w": 1, "o": 3}
    err = plan_error(base, TIMED + """
transforms:
  w: {input: s, parallelism: 2, window: {type: tumbling, size: 1s}, aggregate: {n: count}}
sinks: {o: {input: w, type: blackhole}}
""")
    assert err.where == "p.yaml: transforms.w.parallelism" and "runs as one subtask" in str(err)


def test_event_time_window_without_timestamps_is_refused(base: Path) -> None:
    err = plan_error(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  w: {input: s, key_by: a, window: {type: tumbling, size: 1s}, aggregate: {n: count}}
sinks: {o: {input: w, type: blackhole}}
""")
    assert err.where == "p.yaml: transforms.w.window"
    assert "needs timestamps, but its input from 's' has none" in str(err)
    # processing time needs none
    graph_of(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  w: {input: s, key_by: a, window: {type: tumbling, size: 1s, time: processing}, aggregate: {n: count}}
sinks: {o: {input: w, type: blackhole}}
""")


def test_process_and_side_outputs(base: Path) -> None:
    g = graph_of(base, TIMED + """
transforms:
  p: {input: s, key_by: a, process: "fns:P", side_outputs: [alerts]}
sinks: {o: {input: p, type: blackhole}, a: {input: alerts, type: blackhole}}
""")
    p = spec_of(g, "p")
    assert p == ProcessSpec("p", key=KeySpec(("a",)), path="fns:P", side_outputs=("alerts",))
    err = plan_error(base, TIMED + """
transforms:
  p: {input: s, process: "fns:P"}
sinks: {o: {input: p, type: blackhole}}
""")
    assert "process needs a key" in str(err)
    err = plan_error(base, TIMED + """
transforms:
  p: {input: s, key_by: a, process: "fns:P", side_outputs: [s]}
sinks: {o: {input: p, type: blackhole}}
""")
    assert err.where == "p.yaml: transforms.p.side_outputs" and "has the name of another node" in str(err)


def test_joins_mark_their_right_input(base: Path) -> None:
    text = TIMED + """
  t: {type: file, path: in.jsonl, timestamp: ts}
transforms:
  j: {join: {type: interval, left: s, right: t, left_key: a, right_key: a, lower: -1s, upper: 2s,
             where: "l['a'] == r['a']", select: "{'a': l['a']}"}}
  r: {join: {type: regular, left: s, right: t, left_key: a, right_key: "r['a'] + 1", ttl: 1h}}
  w: {join: {type: window, left: s, right: t, left_key: a, right_key: a, window: {type: tumbling, size: 10s}}}
  lk: {input: s, join: {type: lookup, path: side.csv, header: false, columns: [k, v], key: a,
                         lookup_key: "int(r['k'])"}}
sinks:
  o1: {input: j, type: blackhole}
  o2: {input: r, type: blackhole}
  o3: {input: w, type: blackhole}
  o4: {input: lk, type: blackhole}
"""
    g = graph_of(base, text.replace("sources: {s: {type: file, path: in.jsonl, timestamp: ts, watermark: "
                                    "{max_out_of_orderness: 4s, idle_timeout: 30s}}}\n",
                                    "sources:\n  s: {type: file, path: in.jsonl, timestamp: ts}\n"))
    j = spec_of(g, "j")
    assert isinstance(j, IntervalJoinSpec) and (j.lower_ms, j.upper_ms) == (-1000, 2000)
    assert j.select == "{'a': l['a']}" and j.where == "l['a'] == r['a']"
    assert isinstance(spec_of(g, "r"), RegularJoinSpec) and spec_of(g, "r").ttl_ms == 3_600_000
    assert isinstance(spec_of(g, "w"), WindowJoinSpec) and spec_of(g, "w").size_ms == 10_000
    lk = spec_of(g, "lk")
    assert isinstance(lk, LookupJoinSpec) and lk.path == str((base / "side.csv").resolve())
    assert lk.lookup_key == "int(r['k'])" and lk.columns == ("k", "v")
    name = {v.id: v.name for v in g.vertices}
    for join in ("j", "r", "w"):
        ins = sorted((name[e.source], e.input, e.partitioner, e.key.label()) for e in g.edges
                     if name[e.target] == join or name[e.target].startswith(join + " "))
        right_key = "a" if join != "r" else "r['a'] + 1"
        assert ins == [("s -> lk -> o4", 0, "hash", "a"), ("t", 1, "hash", right_key)] or \
            ins == [("s", 0, "hash", "a"), ("t", 1, "hash", right_key)], ins
    err = plan_error(base, "sources: {s: {type: file, path: in.jsonl}}\n"
                           "transforms: {j: {join: {type: window, left: s, right: s, left_key: a, right_key: a, "
                           "window: {type: tumbling, size: 1s}}}}\nsinks: {o: {input: j, type: blackhole}}\n")
    assert err.where == "p.yaml: transforms.j.join" and "a window join needs timestamps" in str(err)
