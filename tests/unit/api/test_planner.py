"""PipelineDef → JobGraph (chaining, partitioners, parallelism, errors), the ExecutionGraph
expansion, and the partitioners that split batches over channels."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.graph.operators import KeySpec

from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.errors import PipelineDefinitionError, UserFunctionError
from streamlet.graph.execution_graph import TaskDeploymentDescriptor, expand
from streamlet.graph.job_graph import JobGraph
from streamlet.graph.render import render_text
from streamlet.keys import subtask_for_key
from streamlet.runtime.taskmanager.network import partitioners

F = "p.yaml"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "in2.jsonl").write_text('{"a": 2}\n')
    return tmp_path


def graph_of(base: Path, text: str, **kwargs: Any) -> JobGraph:
    return plan(loads(text, source_file=F, base_dir=str(base)), **kwargs)


def shape(g: JobGraph) -> tuple[list[tuple[str, int]], list[tuple[str, str, str]]]:
    """(vertex name, parallelism) per vertex and (source name, partitioner, target name) per edge."""
    name = {v.id: v.name for v in g.vertices}
    return ([(v.name, v.parallelism) for v in g.vertices],
            sorted((name[e.source], e.partitioner, name[e.target]) for e in g.edges))


def plan_error(base: Path, text: str, **kwargs: Any) -> PipelineDefinitionError:
    with pytest.raises(PipelineDefinitionError) as info:
        graph_of(base, text, **kwargs)
    return info.value


def test_stateless_chain_is_one_vertex(base: Path) -> None:
    g = graph_of(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  m: {input: s, map: "dict(r, b=1)"}
  f: {input: m, filter: "r['a'] > 0"}
  fm: {input: f, flat_map: "[r, r]"}
sinks: {o: {input: fm, type: blackhole}}
""")
    assert shape(g) == ([("s -> m -> f -> fm -> o", 1)], [])
    v = g.vertices[0]
    assert v.is_source and v.node_ids == ["s", "m", "f", "fm", "o"]
    assert [op.KIND for op in v.operators] == ["source", "map", "filter", "flat_map", "sink"]
    assert v.operators[1].to_json() == {"kind": "map", "id": "m", "expr": "dict(r, b=1)", "path": None}
    assert g.mode == "streaming" and g.max_parallelism == 128 and g.batch_size == 1024
    assert re.fullmatch(r"[0-9a-f]{32}", v.id)


def test_key_by_breaks_the_chain_with_a_hash_edge(base: Path) -> None:
    g = graph_of(base, """
mode: batch
sources: {s: {type: file, path: in.jsonl}}
transforms:
  m: {input: s, map: "r"}
  c: {input: m, key_by: [a, b], aggregate: {n: count, t: {sum: v}}}
  after: {input: c, map: "r"}
sinks: {o: {input: after, type: blackhole}}
""", parallelism_override=2)
    assert shape(g) == ([("s -> m", 2), ("c -> after -> o", 2)], [("s -> m", "hash", "c -> after -> o")])
    assert g.edges[0].key.to_json() == {"fields": ["a", "b"]} and g.mode == "batch"
    agg = g.vertices[1].operators[0]
    assert agg.to_json() == {"kind": "aggregate", "id": "c", "key": {"fields": ["a", "b"]},
                             "aggregates": [["n", "count", None, None], ["t", "sum", "v", None]]}


def test_bare_key_by_node_keys_its_readers(base: Path) -> None:
    g = graph_of(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  k: {input: s, key_by: "r['a'] % 3"}
  total: {input: k, reduce: "dict(a, a=a['a'] + b['a'])"}
sinks: {o: {input: total, type: blackhole}}
""")
    assert shape(g) == ([("s", 1), ("total -> o", 1)], [("s", "hash", "total -> o")])
    assert g.edges[0].key.to_json() == {"expr": "r['a'] % 3", "path": None}
    red = g.vertices[1].operators[0]
    assert red.key.to_json() == {"expr": "r['a'] % 3", "path": None} and g.mode == "streaming"
    assert red.expr == "dict(a, a=a['a'] + b['a'])"


def test_keyed_operator_needs_a_key(base: Path) -> None:
    err = plan_error(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms: {c: {input: s, aggregate: {n: count}}}
sinks: {o: {input: c, type: blackhole}}
""")
    assert err.where == "p.yaml: transforms.c.aggregate"
    assert "needs a key" in err.message


def test_parallelism_change_rebalances(base: Path) -> None:
    g = graph_of(base, """
parallelism: 2
sources: {s: {type: file, path: in.jsonl, parallelism: 1}}
transforms:
  m: {input: s, map: "r"}
  f: {input: m, filter: "True", parallelism: 3}
sinks: {o: {input: f, type: blackhole, parallelism: 3}}
""")
    assert shape(g) == ([("s", 1), ("m", 2), ("f -> o", 3)],
                        [("m", "rebalance", "f -> o"), ("s", "rebalance", "m")])
    assert g.max_vertex_parallelism == 3


@pytest.mark.parametrize("partition", ["rebalance", "broadcast"])
def test_forced_partitioner_at_equal_parallelism(base: Path, partition: str) -> None:
    g = graph_of(base, f"""
sources: {{s: {{type: file, path: in.jsonl}}}}
transforms: {{m: {{input: s, map: "r", partition: {partition}}}}}
sinks: {{o: {{input: m, type: blackhole, partition: forward}}}}
""", parallelism_override=2)
    assert shape(g) == ([("s", 2), ("m -> o", 2)], [("s", partition, "m -> o")])


@pytest.mark.parametrize("transform, sink, where, words", [
    ('{input: s, map: "r", partition: forward, parallelism: 3}', "{input: m, type: blackhole}",
     "p.yaml: transforms.m.partition", ["equal parallelism (2 upstream, 3 here)"]),
    ('{input: s, map: "r", partition: hash}', "{input: m, type: blackhole}",
     "p.yaml: transforms.m.partition", ["needs a key"]),
    ('{input: s, key_by: a, aggregate: {n: count}, partition: rebalance}', "{input: m, type: blackhole}",
     "p.yaml: transforms.m.partition", ["hash-partitioned"]),
    ('{input: s, map: "r"}', "{input: m, type: blackhole, partition: hash}",
     "p.yaml: sinks.o.partition", ["needs a key"]),
])
def test_partition_errors(base: Path, transform: str, sink: str, where: str, words: list[str]) -> None:
    err = plan_error(base, f"sources: {{s: {{type: file, path: in.jsonl}}}}\ntransforms: {{m: {transform}}}\n"
                           f"sinks: {{o: {sink}}}\n", parallelism_override=2)
    assert err.where == where
    for w in words:
        assert w in err.message


def test_fan_out_is_not_chained(base: Path) -> None:
    g = graph_of(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  m: {input: s, map: "r"}
  a: {input: m, filter: "r['a'] == 1"}
sinks:
  all: {input: m, type: blackhole}
  ones: {input: a, type: blackhole}
""")
    assert shape(g) == ([("s -> m", 1), ("a -> ones", 1), ("all", 1)],
                        [("s -> m", "forward", "a -> ones"), ("s -> m", "forward", "all")])


def test_union_feeds_its_reader_from_every_input(base: Path) -> None:
    g = graph_of(base, """
sources:
  a: {type: file, path: in.jsonl}
  b: {type: file, path: in2.jsonl, parallelism: 1}
transforms:
  both: {union: [a, b]}
  m: {input: both, map: "r"}
  k: {input: both, key_by: a}
  c: {input: k, aggregate: {n: count}}
sinks:
  o: {input: m, type: blackhole}
  o2: {input: c, type: blackhole}
""", parallelism_override=2)
    assert shape(g) == ([("a", 2), ("b", 1), ("m -> o", 2), ("c -> o2", 2)], [
        ("a", "forward", "m -> o"), ("a", "hash", "c -> o2"),
        ("b", "hash", "c -> o2"), ("b", "rebalance", "m -> o")])


def test_sink_reading_a_union_directly(base: Path) -> None:
    g = graph_of(base, """
sources: {a: {type: file, path: in.jsonl}, b: {type: file, path: in2.jsonl}}
transforms: {u: {union: [a, b]}}
sinks: {o: {input: u, type: blackhole}}
""")
    assert shape(g) == ([("a", 1), ("b", 1), ("o", 1)], [("a", "forward", "o"), ("b", "forward", "o")])


def test_parallelism_precedence(base: Path) -> None:
    text = """
{top}
sources: {{s: {{type: file, path: in.jsonl}}}}
transforms: {{m: {{input: s, map: "r", parallelism: 5}}}}
sinks: {{o: {{input: m, type: blackhole}}}}
"""
    def pars(top: str, **kw: Any) -> list[int]:
        return [v.parallelism for v in graph_of(base, text.format(top=top), **kw).vertices]

    assert pars("") == [1, 5, 1]
    assert pars("", default_parallelism=3) == [3, 5, 3]
    assert pars("parallelism: 2", default_parallelism=3) == [2, 5, 2]
    assert pars("parallelism: 2", default_parallelism=3, parallelism_override=4) == [4, 5, 4]


def test_max_parallelism_and_batch_size(base: Path) -> None:
    text = "{top}\nsources: {{s: {{type: file, path: in.jsonl}}}}\nsinks: {{o: {{input: s, type: blackhole}}}}\n"
    g = graph_of(base, text.format(top=""), max_parallelism=32, batch_size=7)
    assert (g.max_parallelism, g.batch_size) == (32, 7)
    g = graph_of(base, text.format(top="max_parallelism: 16\nbatch_size: 9"), max_parallelism=32, batch_size=7)
    assert (g.max_parallelism, g.batch_size) == (16, 9)
    err = plan_error(base, text.format(top="max_parallelism: 4"), parallelism_override=5)
    assert err.where == "p.yaml: sources.s.parallelism"
    assert "exceeds max_parallelism 4" in err.message


@pytest.mark.parametrize("transforms, sink_input, where, words", [
    ('{m: {input: sorce, map: "r"}}', "m", "p.yaml: transforms.m.input", ["unknown input 'sorce'", "known ids: s"]),
    ('{m: {input: mm, map: "r"}}', "m", "p.yaml: transforms.m.input", ["did you mean 'm'?"]),
    ('{m: {input: s, map: "r"}}', "nothing", "p.yaml: sinks.o.input", ["unknown input 'nothing'"]),
    ('{u: {union: [s, x]}}', "u", "p.yaml: transforms.u.union", ["unknown input 'x'"]),
    ('{m: {input: o, map: "r"}}', "m", "p.yaml: transforms.m.input", ["'o' is a sink"]),
    ('{k: {input: s, key_by: a, parallelism: 2}}', "k", "p.yaml: transforms.k.parallelism",
     ["not an operator"]),
])
def test_graph_errors(base: Path, transforms: str, sink_input: str, where: str, words: list[str]) -> None:
    err = plan_error(base, f"sources: {{s: {{type: file, path: in.jsonl}}}}\ntransforms: {transforms}\n"
                           f"sinks: {{o: {{input: {sink_input}, type: blackhole}}}}\n")
    assert err.where == where, str(err)
    for w in words:
        assert w in err.message


def test_cycle_is_named(base: Path) -> None:
    err = plan_error(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  a: {union: [s, c]}
  b: {input: a, map: "r"}
  c: {input: b, filter: "True"}
sinks: {o: {input: c, type: blackhole}}
""")
    # in the direction data flows, at the input that closes it
    assert "cycle a -> b -> c -> a" in err.message
    assert err.where == "p.yaml: transforms.b.input"
    err = plan_error(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms: {m: {input: m, map: "r"}}
sinks: {o: {input: m, type: blackhole}}
""")
    assert (err.where, err.message.split(";")[0]) == ("p.yaml: transforms.m.input", "cycle m -> m")


def test_import_paths_are_checked_when_planning(base: Path, udf_module) -> None:
    mod = udf_module("def double(r):\n    return r * 2\n")  # next to the pipeline: base is tmp_path
    text = ("sources: {s: {type: file, path: in.jsonl}}\n"
            "transforms: {m: {input: s, map: \"%s\"}, k: {input: m, key_by: \"%s\"}, c: {input: k, reduce: \"%s\"}}\n"
            "sinks: {o: {input: c, type: blackhole}}\n")
    g = graph_of(base, text % (f"{mod}:double", f"{mod}:double", f"{mod}:double"))
    assert g.vertices[0].operators[1].path == f"{mod}:double"
    assert str(base) in g.sys_path

    err = plan_error(base, text % ("nosuchmodule_xyz:f", f"{mod}:double", f"{mod}:double"))
    assert err.where == "p.yaml: transforms.m.map"
    assert "cannot import 'nosuchmodule_xyz:f'" in err.message
    err = plan_error(base, text % (f"{mod}:double", f"{mod}:triple", f"{mod}:double"))
    assert err.where == "p.yaml: transforms.k.key_by"
    assert f"module {mod!r} has no attribute 'triple'" in err.message
    err = plan_error(base, text % (f"{mod}:double", f"{mod}:double", "math:pi"))
    assert err.where == "p.yaml: transforms.c.reduce"
    assert "not callable" in err.message


def test_batch_mode_needs_bounded_sources(base: Path, register_connector) -> None:
    register_connector("source", "endless", "tests.support.connectors:EndlessSource")
    err = plan_error(base, "mode: batch\nsources: {s: {type: endless}}\nsinks: {o: {input: s, type: blackhole}}\n")
    assert err.where == "p.yaml: sources.s"
    assert "mode: batch needs every source bounded" in err.message


def test_job_graph_json_round_trip_and_stable_ids(base: Path) -> None:
    text = """
name: rt
sources: {s: {type: file, path: in.jsonl}}
transforms:
  k: {input: s, key_by: [a], aggregate: {n: count}}
sinks: {o: {input: k, type: file, path: out}}
"""
    g = graph_of(base, text, parallelism_override=2)
    again = JobGraph.from_json(orjson.loads(orjson.dumps(g.to_json())))
    assert again == g
    assert [v.id for v in graph_of(base, text).vertices] == [v.id for v in g.vertices]
    assert len({v.id for v in g.vertices}) == len(g.vertices)


def test_render_text_shows_vertices_parallelism_and_partitioners(base: Path) -> None:
    g = graph_of(base, """
name: shown
sources: {s: {type: file, path: in.jsonl, parallelism: 1}}
transforms:
  m: {input: s, map: "r"}
  c: {input: m, key_by: a, aggregate: {n: count, t: {sum: v}}}
sinks: {o: {input: c, type: blackhole}}
""", parallelism_override=2)
    text = render_text(g)
    assert text.splitlines()[0] == ("job 'shown': mode streaming, max_parallelism 128, 3 vertices, "
                                    "needs 2 slot(s)")
    assert re.search(r"\[1\] s  parallelism=1  id=[0-9a-f]{32}", text)
    assert re.search(r"\[2\] m  parallelism=2", text)
    assert re.search(r"\[3\] c -> o  parallelism=2", text)
    assert "--rebalance--> [2] m" in text
    assert "--hash(a)--> [3] c -> o" in text
    assert "aggregate c: n=count(), t=sum(v)" in text
    assert "map m: r" in text and "sink o (blackhole)" in text


# -- ExecutionGraph -----------------------------------------------------------------------------


def test_expand_channels_and_splits(base: Path) -> None:
    g = graph_of(base, """
sources: {s: {type: file, path: in.jsonl, parallelism: 2}}
transforms:
  m: {input: s, map: "r", parallelism: 2}
  c: {input: m, key_by: a, aggregate: {n: count}, parallelism: 3}
sinks: {o: {input: c, type: blackhole, parallelism: 3}}
""")
    src, agg = g.vertices
    tdds = expand(g, "job1", {src.id: [["split-a"], ["split-b", "split-c"]]})
    assert [(t.vertex_name, t.subtask_index) for t in tdds] == [
        ("s -> m", 0), ("s -> m", 1), ("c -> o", 0), ("c -> o", 1), ("c -> o", 2)]
    s0, s1, a0, a1, a2 = tdds
    assert (s0.splits, s1.splits, a0.splits) == (("split-a",), ("split-b", "split-c"), ())
    assert [len(t.outputs) for t in tdds] == [1, 1, 0, 0, 0]
    out = s1.outputs[0]
    assert (out.partitioner, out.key, out.key_node, out.target_subtasks) == ("hash", KeySpec(("a",)), "c",
                                                                             (0, 1, 2))
    assert out.fields == ("a",)  # all the aggregate reads: remote channels may carry only that
    # every producer reaches every consumer through its own channel
    assert [len(t.inputs) for t in (a0, a1, a2)] == [2, 2, 2]
    sent = {c for t in (s0, s1) for c in t.outputs[0].channel_ids}
    received = {i.channel_id for t in (a0, a1, a2) for i in t.inputs}
    assert sent == received and len(sent) == 6
    assert {(i.producer_subtask, i.input_index) for i in a2.inputs} == {(0, 0), (1, 0)}
    assert all(t.max_parallelism == 128 and t.job_id == "job1" for t in tdds)
    assert TaskDeploymentDescriptor.from_json(orjson.loads(orjson.dumps(s1.to_json()))) == s1


def test_expand_forward_edges_pair_subtasks(base: Path) -> None:
    g = graph_of(base, """
sources: {s: {type: file, path: in.jsonl}}
transforms: {m: {input: s, map: "r"}}
sinks: {a: {input: m, type: blackhole}, b: {input: m, type: blackhole}}
""", parallelism_override=3)
    tdds = expand(g, "j", {g.vertices[0].id: [[], [], []]})
    heads = [t for t in tdds if t.vertex_name == "s -> m"]
    for t in heads:
        assert [o.target_subtasks for o in t.outputs] == [(t.subtask_index,), (t.subtask_index,)]
    for t in tdds:
        if t.vertex_name != "s -> m":
            assert [i.producer_subtask for i in t.inputs] == [t.subtask_index]


# -- partitioners -------------------------------------------------------------------------------


def test_forward_and_broadcast() -> None:
    recs, ts = [{"a": i} for i in range(5)], list(range(5))
    assert partitioners.build("forward", 1, None, "n", 128)(recs, ts) == [(recs, ts)]
    parts = partitioners.build("broadcast", 3, None, "n", 128)(recs, ts)
    assert parts == [(recs, ts)] * 3


def test_rebalance_is_round_robin_across_batches() -> None:
    split = partitioners.build("rebalance", 3, None, "n", 128, subtask_index=1)
    seen: list[list[int]] = [[], [], []]
    seen_ts: list[list[int]] = [[], [], []]
    for start, size in ((0, 4), (4, 1), (5, 7)):
        recs = list(range(start, start + size))
        for ch, (r, t) in enumerate(split(recs, [x * 10 for x in recs])):
            seen[ch].extend(r)
            seen_ts[ch].extend(t or [])
    # subtask 1 starts at channel 1, then strictly alternates
    assert seen == [[2, 5, 8, 11], [0, 3, 6, 9], [1, 4, 7, 10]]
    assert seen_ts == [[x * 10 for x in s] for s in seen]


@pytest.mark.parametrize("key, key_of", [
    ({"fields": ["user"]}, lambda r: r["user"]),
    ({"fields": ["user", "day"]}, lambda r: (r["user"], r["day"])),
    ({"expr": "r['user'] % 5", "path": None}, lambda r: r["user"] % 5),
    ({"expr": "[r['day'], r['user']]", "path": None}, lambda r: (r["day"], r["user"])),
])
def test_hash_sends_each_key_to_the_owner_of_its_key_group(key: dict, key_of: Any) -> None:
    n, maxp = 3, 128
    split = partitioners.build("hash", n, KeySpec.from_json(key), "c", maxp)
    recs = [{"user": i % 17, "day": i % 3, "i": i} for i in range(300)]
    ts = [r["i"] * 1000 for r in recs]
    parts = split(recs, ts)
    assert sorted(r["i"] for p, _ in parts for r in p) == list(range(300))
    for ch, (p, t) in enumerate(parts):
        assert t == [r["i"] * 1000 for r in p]
        for r in p:
            assert subtask_for_key(key_of(r), n, maxp) == ch
    # the same batch again (key cache warm) splits the same way, without timestamps too
    assert [p for p, _ in split(recs, None)] == [p for p, _ in parts]


@pytest.mark.parametrize("with_ts", [False, True])
def test_hash_key_errors_name_the_keyed_node(with_ts: bool) -> None:
    split = partitioners.build("hash", 2, KeySpec(("user",)), "counts", 128)
    with pytest.raises(UserFunctionError) as info:
        split([{"user": 1}, {"name": "x"}], [1, 2] if with_ts else None)
    assert info.value.node_id == "counts"
    assert info.value.record == {"name": "x"}
    assert isinstance(info.value.cause, KeyError)
    with pytest.raises(UserFunctionError) as info:
        split([{"user": [1, 2]}], [1] if with_ts else None)
    assert (info.value.node_id, info.value.record) == ("counts", {"user": [1, 2]})
    assert isinstance(info.value.cause, TypeError)
