"""The Python API builds the same definitions, and so the same JobGraph, as YAML."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from streamlet import StreamEnvironment
from streamlet.api.planner import plan
from streamlet.api.yaml.loader import loads
from streamlet.errors import JobFailedError, PipelineDefinitionError
from tests.support.pipelines import read_output, write_jsonl

YAML = """
name: sums
parallelism: 2
sources:
  events: {type: file, path: events.jsonl}
transforms:
  doubled: {input: events, map: "dict(r, value=r['value'] * 2)"}
  kept: {input: doubled, filter: "r['value'] % 3 == 0"}
  totals: {input: kept, key_by: user, aggregate: {total: {sum: value}, n: count}}
sinks:
  out: {input: totals, type: file, path: out}
"""


def double_value(r: dict) -> dict:
    """A module-level user function: referenced by import path, never pickled."""
    return dict(r, value=r["value"] * 2)


def _build(tmp_path: Path, mode: str = "streaming") -> StreamEnvironment:
    env = StreamEnvironment("sums", parallelism=2, mode=mode, base_dir=str(tmp_path))
    kept = (env.source("events", type="file", path="events.jsonl")
            .map("doubled", "dict(r, value=r['value'] * 2)")
            .filter("kept", "r['value'] % 3 == 0"))
    kept.key_by("user").aggregate("totals", {"total": {"sum": "value"}, "n": "count"}) \
        .sink("out", type="file", path="out")
    return env


@pytest.fixture
def events(tmp_path: Path) -> list[dict]:
    recs = [{"id": i, "user": i % 7, "value": i % 10} for i in range(500)]
    write_jsonl(tmp_path / "events.jsonl", recs)
    return recs


def test_python_api_plans_the_same_job_graph_as_yaml(tmp_path: Path, events: list[dict]) -> None:
    from_yaml = plan(loads(YAML, "sums.yaml", str(tmp_path)))
    from_python = _build(tmp_path).plan()
    # only the definition's origin differs ("where" strings are not part of the graph)
    assert dataclasses.asdict(from_python) == dataclasses.asdict(from_yaml)


def test_execute_async_runs_the_pipeline(tmp_path: Path, events: list[dict]) -> None:
    env = _build(tmp_path, mode="batch")
    result = asyncio.run(env.execute_async())
    assert result.state == "FINISHED"
    expected: Counter[int] = Counter()
    counts: Counter[int] = Counter()
    for r in events:
        v = r["value"] * 2
        if v % 3 == 0:
            expected[r["user"]] += v
            counts[r["user"]] += 1
    rows = read_output(tmp_path / "out")
    assert sorted((r["user"], r["total"], r["n"]) for r in rows) == \
        sorted((u, expected[u], counts[u]) for u in expected)


def test_module_level_function_becomes_an_import_path(tmp_path: Path, events: list[dict]) -> None:
    env = StreamEnvironment("fn", base_dir=str(tmp_path))
    env.source("events", type="file", path="events.jsonl").map("doubled", double_value).sink("out", type="blackhole")
    op = env.plan().vertices[0].operators[1]
    assert op.path == f"{__name__}:double_value" and op.expr is None
    assert asyncio.run(env.execute_async()).vertices[0].records_out == len(events)


def test_lambdas_are_refused_with_the_reason(tmp_path: Path, events: list[dict]) -> None:
    env = StreamEnvironment("fn", base_dir=str(tmp_path))
    src = env.source("events", type="file", path="events.jsonl")
    with pytest.raises(PipelineDefinitionError, match="lambdas and nested functions cannot be shipped"):
        src.map("m", lambda r: r)


def test_duplicate_ids_and_bad_keys_are_refused(tmp_path: Path, events: list[dict]) -> None:
    env = StreamEnvironment("dup", base_dir=str(tmp_path))
    src = env.source("events", type="file", path="events.jsonl")
    with pytest.raises(PipelineDefinitionError, match="duplicate id 'events'"):
        src.map("events", "r")
    with pytest.raises(PipelineDefinitionError, match="unknown key 'pth'; did you mean 'path'"):
        env.source("other", type="file", pth="x")


def test_a_failing_job_raises_job_failed_with_node_and_record(tmp_path: Path, events: list[dict]) -> None:
    env = StreamEnvironment("boom", base_dir=str(tmp_path))
    env.source("events", type="file", path="events.jsonl").map("div", "1 // (r['value'] - 3)") \
        .sink("out", type="blackhole")
    with pytest.raises(JobFailedError, match=r"node 'div'.*ZeroDivisionError.*'value': 3"):
        asyncio.run(env.execute_async())


TIME_YAML = """
name: timed
sources:
  clicks: {type: file, path: events.jsonl, timestamp: id, watermark: {max_out_of_orderness: 4s}}
  views: {type: file, path: events.jsonl, timestamp: id}
transforms:
  counts:
    input: clicks
    key_by: user
    window: {type: sliding, size: 10s, slide: 5s, late_output: late}
    aggregate: {n: count, top: {max: value}}
  everything: {input: clicks, window: {type: tumbling, size: 1m}, aggregate: {n: count}}
  marked: {input: late, key_by: user, process: "tests.unit.api.test_environment:Marker", side_outputs: [odd]}
  pairs: {join: {type: interval, left: clicks, right: views, left_key: user, right_key: user, lower: -1s, upper: 1s}}
sinks:
  a: {input: counts, type: blackhole}
  b: {input: marked, type: blackhole}
  c: {input: odd, type: blackhole}
  d: {input: pairs, type: blackhole}
  e: {input: everything, type: blackhole}
"""


class Marker:
    """A module-level process function (referenced by import path)."""

    def process_element(self, r: dict, ctx: object) -> list:
        return [r]


def test_time_api_plans_like_yaml(tmp_path: Path, events: list[dict]) -> None:
    env = StreamEnvironment("timed", base_dir=str(tmp_path))
    clicks = env.source("clicks", type="file", path="events.jsonl", timestamp="id",
                        watermark={"max_out_of_orderness": "4s"})
    views = env.source("views", type="file", path="events.jsonl", timestamp="id")
    counts = clicks.key_by("user").window(type="sliding", size="10s", slide="5s", late_output="late") \
        .aggregate("counts", {"n": "count", "top": {"max": "value"}})
    everything = clicks.window_all(type="tumbling", size="1m").aggregate("everything", {"n": "count"})
    marked = counts.side_output("late").key_by("user").process("marked", Marker, side_outputs=["odd"])
    pairs = clicks.join("pairs", views, "interval", "user", "user", lower="-1s", upper="1s")
    counts.sink("a", type="blackhole")
    marked.sink("b", type="blackhole")
    marked.side_output("odd").sink("c", type="blackhole")
    pairs.sink("d", type="blackhole")
    everything.sink("e", type="blackhole")
    from_yaml = plan(loads(TIME_YAML, source_file="timed", base_dir=str(tmp_path)))
    assert env.plan().to_json() == from_yaml.to_json()
