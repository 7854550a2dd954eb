"""YAML → PipelineDef: shapes, defaults, and errors that name the file, the node id and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamlet.api.yaml.loader import load, loads
from streamlet.api.yaml.schema import AggregateDef, FunctionDef, KeyDef
from streamlet.errors import PipelineDefinitionError

F = "p.yaml"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    (tmp_path / "in.txt").write_text("hello\n")
    return tmp_path


def parse(data_dir: Path, text: str):
    return loads(text, source_file=F, base_dir=str(data_dir))


def error(data_dir: Path, text: str) -> PipelineDefinitionError:
    with pytest.raises(PipelineDefinitionError) as info:
        parse(data_dir, text)
    return info.value


SIMPLE = """
sources:
  src: {type: file, path: in.jsonl}
transforms:
  doubled: {input: src, map: "dict(r, a=r['a'] * 2)"}
  big: {input: doubled, filter: "r['a'] > 1"}
sinks:
  out: {input: big, type: file, path: out}
"""


def test_minimal_pipeline_defaults(data_dir: Path) -> None:
    p = parse(data_dir, SIMPLE)
    assert p.name == "p"  # the file's stem
    assert p.mode == "streaming"
    assert (p.parallelism, p.max_parallelism, p.batch_size) == (None, None, None)
    assert [s.id for s in p.sources] == ["src"]
    assert p.sources[0].type == "file"
    assert p.sources[0].params["path"] == [str(data_dir / "in.jsonl")]
    assert p.sources[0].params["format"] == "jsonl"
    assert [(t.id, t.op, t.inputs) for t in p.transforms] == [
        ("doubled", "map", ("src",)), ("big", "filter", ("doubled",))]
    assert p.transforms[0].function == FunctionDef(expr="dict(r, a=r['a'] * 2)")
    sink = p.sinks[0]
    assert (sink.id, sink.type, sink.input) == ("out", "file", "big")
    assert sink.params == {"path": str(data_dir / "out"), "format": "jsonl", "delimiter": ",", "header": True,
                           "rolling": None}
    assert p.transforms[1].where == "p.yaml: transforms.big"


def test_top_level_keys(data_dir: Path) -> None:
    p = parse(data_dir, """
        name: job
        parallelism: 3
        max_parallelism: 64
        mode: batch
        batch_size: 100
        checkpointing: {interval: 10s}
        sources: {s: {type: file, path: in.txt, parallelism: 2}}
        sinks: {o: {input: s, type: print, parallelism: 1, partition: rebalance}}
    """.replace("\n        ", "\n"))
    assert (p.name, p.parallelism, p.max_parallelism, p.mode, p.batch_size) == ("job", 3, 64, "batch", 100)
    assert p.checkpointing == {"interval": 10.0}
    assert p.sources[0].parallelism == 2
    assert p.sources[0].params["format"] == "text"
    assert (p.sinks[0].parallelism, p.sinks[0].partition) == (1, "rebalance")


@pytest.mark.parametrize("text, where, words", [
    ("naem: x\n", "p.yaml: naem", ["did you mean 'name'"]),
    ("mode: fast\n", "p.yaml: mode", ["'fast'", "streaming, batch"]),
    ("parallelism: 0\n", "p.yaml: parallelism", ["positive integer"]),
    ("parallelism: true\n", "p.yaml: parallelism", ["positive integer"]),
    ("max_parallelism: two\n", "p.yaml: max_parallelism", ["positive integer"]),
    ("batch_size: -1\n", "p.yaml: batch_size", ["positive integer"]),
])
def test_top_level_errors(data_dir: Path, text: str, where: str, words: list[str]) -> None:
    err = error(data_dir, text + "sources: {s: {type: file, path: in.txt}}\nsinks: {o: {input: s, type: print}}\n")
    assert err.where == where
    for w in words:
        assert w in str(err)


def test_document_shape_errors(data_dir: Path) -> None:
    assert "expected a map" in str(error(data_dir, "- a\n- b\n"))
    assert error(data_dir, "sinks: {o: {input: s, type: print}}\n").where == "p.yaml: sources"
    assert error(data_dir, "sources: {s: {type: file, path: in.txt}}\n").where == "p.yaml: sinks"
    assert error(data_dir, "sources: [a]\nsinks: {o: {input: s, type: print}}\n").where == "p.yaml: sources"


def test_malformed_yaml_names_file_and_line(data_dir: Path) -> None:
    err = error(data_dir, "sources:\n  s: {type: file, path: in.txt\nsinks: {}\n")
    assert str(err).startswith("p.yaml: malformed YAML at line ")
    assert "fix the syntax" in str(err)


def test_duplicate_key_in_one_section(data_dir: Path) -> None:
    err = error(data_dir, """
sources: {s: {type: file, path: in.txt}}
transforms:
  m: {input: s, map: "r"}
  m: {input: s, map: "r"}
sinks: {o: {input: m, type: print}}
""")
    assert str(err).startswith("p.yaml: ")
    assert "duplicate key 'm' (line 5)" in str(err)


def test_duplicate_id_across_sections(data_dir: Path) -> None:
    err = error(data_dir, """
sources: {s: {type: file, path: in.txt}}
transforms: {s: {input: s, map: "r"}}
sinks: {o: {input: s, type: print}}
""")
    assert err.where == "p.yaml: transforms.s"
    assert "duplicate id 's' (also in sources)" in str(err)


@pytest.mark.parametrize("body, where, words", [
    ('{input: s, mapp: "r"}', "p.yaml: transforms.t.mapp", ["unknown key 'mapp'", "did you mean 'map'?"]),
    ('{inptu: s, map: "r"}', "p.yaml: transforms.t.inptu", ["did you mean 'input'?"]),
    ('{input: s, map: "r", filter: "r"}', "p.yaml: transforms.t", ["one operation", "map, filter"]),
    ('{input: s}', "p.yaml: transforms.t", ["no operation"]),
    ('{map: "r"}', "p.yaml: transforms.t", ["missing key 'input'"]),
    ('{input: [s, s], map: "r"}', "p.yaml: transforms.t.input", ["union"]),
    ('{input: 3, map: "r"}', "p.yaml: transforms.t.input", ["expected a node id"]),
    ('{input: s, key_by: a, map: "r"}', "p.yaml: transforms.t.key_by", ["own node"]),
    ('{union: [s]}', "p.yaml: transforms.t.union", ["at least two"]),
    ('{input: s, union: [s, s]}', "p.yaml: transforms.t.input", ["remove input"]),
    ('{union: [s, s], partition: rebalance}', "p.yaml: transforms.t.partition", ["not an operator"]),
    ('{input: s, map: "r[", parallelism: 2}', "p.yaml: transforms.t.map", ["does not compile", "'r['"]),
    ('{input: s, map: ""}', "p.yaml: transforms.t.map", ["expected a Python expression"]),
    ('{input: s, map: 42}', "p.yaml: transforms.t.map", ["expected a Python expression"]),
    ('{input: s, map: "r", parallelism: 0}', "p.yaml: transforms.t.parallelism", ["positive integer"]),
    ('{input: s, map: "r", partition: shuffle}', "p.yaml: transforms.t.partition", ["not a partitioner"]),
    ('{input: s, window: {size: 1s}}', "p.yaml: transforms.t.window", ["a window needs aggregate:"]),
    ('{input: s, key_by: a, process: "r[1]"}', "p.yaml: transforms.t.process", ["names a class"]),
    ('{input: s, key_by: a, process: "m:C", side_outputs: x}', "p.yaml: transforms.t.side_outputs",
     ["expected a list of names"]),
    ('{input: s, map: "r", side_outputs: [x]}', "p.yaml: transforms.t.side_outputs", ["belongs to a process node"]),
    ('{join: {type: inner, left: s, right: s}}', "p.yaml: transforms.t.join.type", ["unknown join type 'inner'"]),
    ('{join: {type: regular, left: s, right: s, left_key: a}}', "p.yaml: transforms.t.join",
     ["a regular join needs right_key"]),
    ('{join: {type: interval, left: s, right: s, left_key: a, right_key: a, lower: 5s, upper: -5s}}',
     "p.yaml: transforms.t.join", ["lower '5s' is after upper '-5s'"]),
    ('{join: {type: regular, left: s, right: s, left_key: a, right_key: a, select: "x"}}',
     "p.yaml: transforms.t.join.select", ["expressions can use l, r"]),
    ('{input: s, join: {type: lookup, path: nope.csv, key: a, lookup_key: k}}', "p.yaml: transforms.t.join.path",
     ["lookup file 'nope.csv' does not exist"]),
    ('{input: s, key_by: a, aggregate: {n: count}, window: {type: sliding, size: 1s, slide: 2s}}',
     "p.yaml: transforms.t.window", ["slide '2s' is longer than size '1s'"]),
    ('{input: s, key_by: a, aggregate: {n: count}, window: {type: tumbling}}', "p.yaml: transforms.t.window",
     ["a tumbling window needs size"]),
    ('{input: s, key_by: a, aggregate: {n: count}, window: {type: session, gap: 1s, size: 2s}}',
     "p.yaml: transforms.t.window.size", ["unknown key 'size' for a session window"]),
    ('{input: s, key_by: a, aggregate: {n: count}, window: {type: tumbling, size: 1s, time: proc}}',
     "p.yaml: transforms.t.window.time", ["'proc' is not a time"]),
    ('"r"', "p.yaml: transforms.t", ["expected a map"]),
])
def test_transform_errors(data_dir: Path, body: str, where: str, words: list[str]) -> None:
    err = error(data_dir, f"sources: {{s: {{type: file, path: in.txt}}}}\ntransforms:\n  t: {body}\n"
                          "sinks: {o: {input: t, type: print}}\n")
    assert err.where == where, str(err)
    for w in words:
        assert w in str(err)
    assert str(err).startswith(where + ": ")


@pytest.mark.parametrize("value, expected", [
    ("user", KeyDef(fields=("user",))),
    ("[user, day]", KeyDef(fields=("user", "day"))),
    ('"r[\'user\'] % 10"', KeyDef(function=FunctionDef(expr="r['user'] % 10"))),
    ('"mypkg.keys:user_key"', KeyDef(function=FunctionDef(path="mypkg.keys:user_key"))),
])
def test_key_by_forms(data_dir: Path, value: str, expected: KeyDef) -> None:
    p = parse(data_dir, f"""
sources: {{s: {{type: file, path: in.jsonl}}}}
transforms:
  k: {{input: s, key_by: {value}}}
  c: {{input: k, aggregate: {{n: count}}}}
sinks: {{o: {{input: c, type: print}}}}
""")
    k = p.transforms[0]
    assert (k.op, k.key) == ("key_by", expected)


@pytest.mark.parametrize("value", ["[]", "[a, 1]", '"r["'])
def test_key_by_errors(data_dir: Path, value: str) -> None:
    err = error(data_dir, f"sources: {{s: {{type: file, path: in.txt}}}}\n"
                          f"transforms: {{k: {{input: s, key_by: {value}}}}}\n"
                          "sinks: {o: {input: k, type: print}}\n")
    assert err.where == "p.yaml: transforms.k.key_by"


def test_import_path_or_expression(data_dir: Path) -> None:
    p = parse(data_dir, """
sources: {s: {type: file, path: in.txt}}
transforms:
  a: {input: s, map: "pkg.mod:fn"}
  b: {input: a, map: "mod:Cls.method"}
  c: {input: b, filter: "r['a:b'] == 1"}
  d: {input: c, map: "{'k': r}"}
  e: {input: d, flat_map: " [r, r] "}
sinks: {o: {input: e, type: print}}
""")
    fns = [t.function for t in p.transforms]
    assert fns == [FunctionDef(path="pkg.mod:fn"), FunctionDef(path="mod:Cls.method"),
                   FunctionDef(expr="r['a:b'] == 1"), FunctionDef(expr="{'k': r}"), FunctionDef(expr="[r, r]")]


def test_aggregate_specs(data_dir: Path) -> None:
    p = parse(data_dir, """
sources: {s: {type: file, path: in.jsonl}}
transforms:
  c:
    input: s
    key_by: a
    aggregate: {n: count, n2: {count: a}, total: {sum: v}, lo: {min: v}, hi: {max: v}, mean: {avg: v},
                f: {first: v}, l: {last: v}, all: {collect: v}}
  r: {input: s, key_by: [a, b], reduce: "dict(a, v=a['v'] + b['v'])"}
sinks: {o: {input: c, type: print}, o2: {input: r, type: print}}
""")
    c, r = p.transforms
    assert c.op == "aggregate" and c.key == KeyDef(fields=("a",))
    assert c.aggregates == (
        AggregateDef("n", "count"), AggregateDef("n2", "count"), AggregateDef("total", "sum", "v"),
        AggregateDef("lo", "min", "v"), AggregateDef("hi", "max", "v"), AggregateDef("mean", "avg", "v"),
        AggregateDef("f", "first", "v"), AggregateDef("l", "last", "v"), AggregateDef("all", "collect", "v"))
    assert (r.op, r.key, r.function) == ("reduce", KeyDef(fields=("a", "b")),
                                         FunctionDef(expr="dict(a, v=a['v'] + b['v'])"))


@pytest.mark.parametrize("spec, where, words", [
    ("{n: summ}", "p.yaml: transforms.c.aggregate.n", ["needs a field"]),
    ("{n: sum}", "p.yaml: transforms.c.aggregate.n", ["needs a field", "{sum: FIELD}"]),
    ("{n: {summ: v}}", "p.yaml: transforms.c.aggregate.n", ["unknown aggregate 'summ'", "did you mean 'sum'?"]),
    ("{n: {sum: v, max: v}}", "p.yaml: transforms.c.aggregate.n", ["one-entry map"]),
    ("{n: {sum: 3}}", "p.yaml: transforms.c.aggregate.n", ["expected a field name"]),
    ("{}", "p.yaml: transforms.c.aggregate", ["expected a map"]),
    ("[count]", "p.yaml: transforms.c.aggregate", ["expected a map"]),
])
def test_aggregate_errors(data_dir: Path, spec: str, where: str, words: list[str]) -> None:
    err = error(data_dir, f"sources: {{s: {{type: file, path: in.txt}}}}\n"
                          f"transforms: {{c: {{input: s, key_by: a, aggregate: {spec}}}}}\n"
                          "sinks: {o: {input: c, type: print}}\n")
    assert err.where == where, str(err)
    for w in words:
        assert w in str(err)


@pytest.mark.parametrize("source, sink, where, words", [
    ("{type: fil, path: in.txt}", "{input: s, type: print}", "p.yaml: sources.s.type", ["did you mean 'file'?"]),
    ("{path: in.txt}", "{input: s, type: print}", "p.yaml: sources.s", ["missing key 'type'", "file"]),
    ("{type: file, pth: in.txt}", "{input: s, type: print}", "p.yaml: sources.s.pth", ["did you mean 'path'?"]),
    ("{type: file}", "{input: s, type: print}", "p.yaml: sources.s", ["missing required key 'path'"]),
    ("{type: file, path: in.txt, format: xml}", "{input: s, type: print}", "p.yaml: sources.s.format",
     ["'xml' is not one of"]),
    ("{type: file, path: in.txt, header: 1}", "{input: s, type: print}", "p.yaml: sources.s.header",
     ["expected bool"]),
    ("{type: file, path: nope.txt}", "{input: s, type: print}", "p.yaml: sources.s.path",
     ["'nope.txt' does not exist", "pipeline file's directory"]),
    ("{type: file, path: " + "n" * 300 + ".txt}", "{input: s, type: print}", "p.yaml: sources.s.path",
     ["cannot be looked up: File name too long", "fix the path"]),
    ("{type: file, path: in.txt, timestamp: 'r[1'}", "{input: s, type: print}", "p.yaml: sources.s.timestamp",
     ["does not compile"]),
    ("{type: file, path: in.txt, watermark: monotonous}", "{input: s, type: print}", "p.yaml: sources.s.watermark",
     ["a watermark needs event time"]),
    ("{type: file, path: in.txt, timestamp: ts, watermark: {max_out_of_orderness: x}}", "{input: s, type: print}",
     "p.yaml: sources.s.watermark.max_out_of_orderness", ["expected a duration"]),
    ("{type: file, path: in.txt, parallelism: 0}", "{input: s, type: print}", "p.yaml: sources.s.parallelism",
     ["positive integer"]),
    ("{type: file, path: in.txt}", "{type: print}", "p.yaml: sinks.o", ["missing key 'input'"]),
    ("{type: file, path: in.txt}", "{input: s, type: prnt}", "p.yaml: sinks.o.type", ["did you mean 'print'?"]),
    ("{type: file, path: in.txt}", "{input: s}", "p.yaml: sinks.o", ["missing key 'type'", "blackhole"]),
    ("{type: file, path: in.txt}", "{input: s, type: file}", "p.yaml: sinks.o", ["missing required key 'path'"]),
    ("{type: file, path: in.txt}", "{input: s, type: file, path: o, format: parquet}", "p.yaml: sinks.o.format",
     ["'parquet' is not one of"]),
    ("{type: file, path: in.txt}", "{input: s, type: file, path: in.txt}", "p.yaml: sinks.o.path",
     ["is a file"]),
    ("{type: file, path: in.txt}", "{input: s, type: print, prefx: x}", "p.yaml: sinks.o.prefx",
     ["did you mean 'prefix'?"]),
])
def test_connector_errors(data_dir: Path, source: str, sink: str, where: str, words: list[str]) -> None:
    err = error(data_dir, f"sources: {{s: {source}}}\nsinks: {{o: {sink}}}\n")
    assert err.where == where, str(err)
    for w in words:
        assert w in str(err)


def test_file_source_formats_and_directories(data_dir: Path) -> None:
    sub = data_dir / "dir"
    sub.mkdir()
    (sub / "a.csv").write_text("x\n1\n")
    (sub / "b.csv").write_text("x\n2\n")
    (sub / ".hidden.csv").write_text("x\n3\n")
    p = parse(data_dir, """
sources:
  csv: {type: file, path: in.csv}
  txt: {type: file, path: in.txt}
  many: {type: file, path: [in.jsonl, in.jsonl]}
  d: {type: file, path: dir, pattern: "*.csv"}
  forced: {type: file, path: in.txt, format: jsonl}
transforms:
  u: {union: [csv, txt, many, d, forced]}
sinks: {o: {input: u, type: blackhole}}
""")
    fmt = {s.id: s.params["format"] for s in p.sources}
    assert fmt == {"csv": "csv", "txt": "text", "many": "jsonl", "d": "csv", "forced": "jsonl"}
    d = next(s for s in p.sources if s.id == "d")
    assert d.params["path"] == [str(sub)]
    assert d.params["header"] is True and d.params["delimiter"] == ","


def test_empty_directory_is_an_error(data_dir: Path) -> None:
    (data_dir / "empty").mkdir()
    err = error(data_dir, "sources: {s: {type: file, path: empty}}\nsinks: {o: {input: s, type: print}}\n")
    assert err.where == "p.yaml: sources.s.path"
    assert "no input files" in str(err)


def test_load_resolves_paths_against_the_pipeline_directory(data_dir: Path, tmp_path_factory, monkeypatch) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(elsewhere)
    pipeline = data_dir / "job.yaml"
    pipeline.write_text("sources: {s: {type: file, path: in.jsonl}}\n"
                        "sinks: {o: {input: s, type: file, path: out/x}}\n")
    p = load(os.path.relpath(pipeline, elsewhere))
    assert p.name == "job"
    assert p.source_file == "job.yaml"
    assert p.base_dir == str(data_dir.resolve())
    assert p.sources[0].params["path"] == [str((data_dir / "in.jsonl").resolve())]
    assert p.sinks[0].params["path"] == str((data_dir / "out" / "x").resolve())


def test_load_errors_name_the_file(data_dir: Path) -> None:
    with pytest.raises(PipelineDefinitionError, match="pipeline file '.*missing.yaml' does not exist"):
        load(data_dir / "missing.yaml")
    with pytest.raises(PipelineDefinitionError, match="cannot read pipeline file"):
        load(data_dir)
    bad = data_dir / "bad.yaml"
    bad.write_text("sources: {s: {type: file, path: in.txt}}\nsinks: {o: {input: s, type: print, x: 1}}\n")
    with pytest.raises(PipelineDefinitionError) as info:
        load(bad)
    assert info.value.where == "bad.yaml: sinks.o.x"
