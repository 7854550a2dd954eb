"""Real pipelines through the public path (YAML → loader → planner → LocalExecutor), at
parallelism 1 and 2, comparing the complete output of file sinks with results computed here,
independently, from the input data."""

from __future__ import annotations

import csv
import re
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamlet.api import registry
from streamlet.errors import UserFunctionError
from streamlet.keys import subtask_for_key
from tests.support.pipelines import (
    canonical, plan_file, read_output, read_parts, run_graph, run_pipeline, write_jsonl, write_pipeline,
)

N = 1500
RECORDS = [{"id": i, "user": f"u{(i * 7) % 13}", "value": (i * 37) % 101, "cat": "abc"[i % 3]} for i in range(N)]

parallelisms = pytest.mark.parametrize("p", [1, 2])


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """``records.jsonl`` (last line without a newline, one blank line) next to the pipeline."""
    path = write_jsonl(tmp_path / "records.jsonl", RECORDS)
    raw = path.read_bytes()
    cut = raw.index(b"\n", len(raw) // 3) + 1
    path.write_bytes(raw[:cut] + b"\n" + raw[cut:].rstrip(b"\n"))
    return tmp_path


def by_key(rows: list[dict[str, Any]], field: str = "user") -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r[field]].append(r)
    return out


def assert_keys_partitioned(parts: dict[int, list[dict[str, Any]]], p: int, field: str = "user") -> None:
    """Each key's rows are in exactly one part file: the subtask owning the key's key group."""
    for index, rows in parts.items():
        for r in rows:
            assert subtask_for_key(r[field], p, 128) == index


@parallelisms
def test_stateless_chain(data: Path, p: int) -> None:
    run_pipeline(data, """
        batch_size: 64
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          scaled: {input: src, map: "dict(r, value=r['value'] * 2)"}
          picked: {input: scaled, filter: "r['value'] % 3 == 0"}
          slim: {input: picked, map: "{'id': r['id'], 'v': r['value']}"}
        sinks: {out: {input: slim, type: file, path: out}}
    """, p)
    expected = [{"id": r["id"], "v": r["value"] * 2} for r in RECORDS if (r["value"] * 2) % 3 == 0]
    got = read_output(data / "out")
    if p == 1:
        assert got == expected  # one split, one subtask: file order is kept
    assert canonical(got) == canonical(expected)
    assert len(read_parts(data / "out")) == p


@parallelisms
def test_running_aggregates_streaming(data: Path, p: int) -> None:
    run_pipeline(data, """
        batch_size: 64
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          stats:
            input: src
            key_by: user
            aggregate: {n: count, total: {sum: value}, lo: {min: value}, hi: {max: value}, mean: {avg: value}}
        sinks: {out: {input: stats, type: file, path: out}}
    """, p)
    parts = read_parts(data / "out")
    rows = [r for part in parts.values() for r in part]
    # a running aggregate emits the updated row per input record
    assert len(rows) == N
    assert_keys_partitioned(parts, p)
    inputs = by_key(RECORDS)
    assert set(by_key(rows)) == set(inputs)
    for user, user_rows in by_key(rows).items():
        values = [r["value"] for r in inputs[user]]
        assert [r["n"] for r in user_rows] == list(range(1, len(values) + 1))
        totals = [r["total"] for r in user_rows]
        assert totals == sorted(totals)  # values are non-negative: running sums never go down
        assert user_rows[-1] == {"user": user, "n": len(values), "total": sum(values), "lo": min(values),
                                 "hi": max(values), "mean": pytest.approx(statistics.fmean(values))}


@parallelisms
def test_aggregates_batch_one_row_per_key(data: Path, p: int) -> None:
    # one source subtask keeps each key's records in file order, so first/last/collect are defined
    run_pipeline(data, """
        mode: batch
        batch_size: 64
        sources: {src: {type: file, path: records.jsonl, parallelism: 1}}
        transforms:
          keyed: {input: src, key_by: [user, cat]}
          stats:
            input: keyed
            aggregate: {n: count, total: {sum: value}, mean: {avg: value}, lo: {min: id}, hi: {max: id},
                        first: {first: id}, last: {last: id}, ids: {collect: id}}
        sinks: {out: {input: stats, type: file, path: out}}
    """, p)
    rows = read_output(data / "out")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in RECORDS:
        groups[(r["user"], r["cat"])].append(r)
    assert len(rows) == len(groups)
    for row in rows:
        g = groups[(row["user"], row["cat"])]
        ids = [r["id"] for r in g]
        assert row == {"user": row["user"], "cat": row["cat"], "n": len(g), "total": sum(r["value"] for r in g),
                       "mean": pytest.approx(statistics.fmean(r["value"] for r in g)), "lo": min(ids),
                       "hi": max(ids), "first": ids[0], "last": ids[-1], "ids": ids}


@parallelisms
def test_batch_aggregate_then_chained_stages(data: Path, p: int) -> None:
    """End of input flows through the operators chained after a batch aggregate."""
    run_pipeline(data, """
        mode: batch
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          counts: {input: src, key_by: "r['value'] % 10", aggregate: {n: count, total: {sum: value}}}
          big: {input: counts, filter: "r['n'] > 149"}
          shaped: {input: big, map: "{'bucket': r['key'], 'avg': r['total'] / r['n']}"}
        sinks: {out: {input: shaped, type: file, path: out}}
    """, p)
    buckets: dict[int, list[int]] = defaultdict(list)
    for r in RECORDS:
        buckets[r["value"] % 10].append(r["value"])
    expected = [{"bucket": b, "avg": sum(vs) / len(vs)} for b, vs in buckets.items() if len(vs) > 149]
    assert 0 < len(expected) < len(buckets)
    assert canonical(read_output(data / "out")) == canonical(expected)


@pytest.mark.parametrize("mode", ["streaming", "batch"])
@parallelisms
def test_reduce(data: Path, p: int, mode: str) -> None:
    run_pipeline(data, f"""
        mode: {mode}
        batch_size: 50
        sources: {{src: {{type: file, path: records.jsonl}}}}
        transforms:
          slim: {{input: src, map: "{{'user': r['user'], 'value': r['value'], 'n': 1}}"}}
          summed: {{input: slim, key_by: user, reduce: "dict(a, value=a['value'] + b['value'], n=a['n'] + b['n'])"}}
        sinks: {{out: {{input: summed, type: file, path: out}}}}
    """, p)
    parts = read_parts(data / "out")
    rows = [r for part in parts.values() for r in part]
    assert_keys_partitioned(parts, p)
    expected = {u: {"user": u, "value": sum(r["value"] for r in rs), "n": len(rs)} for u, rs in by_key(RECORDS).items()}
    if mode == "batch":
        assert canonical(rows) == canonical(expected.values())
    else:
        assert len(rows) == N
        for user, user_rows in by_key(rows).items():
            assert [r["n"] for r in user_rows] == list(range(1, expected[user]["n"] + 1))
            assert user_rows[-1] == expected[user]


@parallelisms
def test_union_of_jsonl_and_csv(data: Path, p: int) -> None:
    with open(data / "more.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "amount"])
        for i in range(300):
            w.writerow([f"u{i % 13}", i])
    run_pipeline(data, """
        mode: batch
        sources:
          a: {type: file, path: records.jsonl}
          b: {type: file, path: more.csv}
        transforms:
          a2: {input: a, map: "{'user': r['user'], 'v': r['value']}"}
          b2: {input: b, map: "{'user': r['user'], 'v': int(r['amount'])}"}
          both: {union: [a2, b2]}
          totals: {input: both, key_by: user, aggregate: {n: count, v: {sum: v}}}
        sinks: {out: {input: totals, type: file, path: out}}
    """, p)
    expected: dict[str, list[int]] = defaultdict(list)
    for r in RECORDS:
        expected[r["user"]].append(r["value"])
    for i in range(300):
        expected[f"u{i % 13}"].append(i)
    assert canonical(read_output(data / "out")) == canonical(
        {"user": u, "n": len(vs), "v": sum(vs)} for u, vs in expected.items())


@parallelisms
def test_sink_reads_a_union_directly(data: Path, p: int) -> None:
    write_jsonl(data / "other.jsonl", [{"id": -i} for i in range(1, 101)])
    run_pipeline(data, """
        sources:
          a: {type: file, path: records.jsonl}
          b: {type: file, path: other.jsonl}
        transforms:
          ids: {input: a, map: "{'id': r['id']}"}
          u: {union: [ids, b]}
        sinks: {out: {input: u, type: file, path: out}}
    """, p)
    assert sorted(r["id"] for r in read_output(data / "out")) == sorted(
        [r["id"] for r in RECORDS] + [-i for i in range(1, 101)])


@parallelisms
def test_broadcast_sends_every_record_to_every_subtask(data: Path, p: int) -> None:
    run_pipeline(data, """
        batch_size: 100
        sources: {src: {type: file, path: records.jsonl, parallelism: 1}}
        transforms:
          ids: {input: src, map: "r['id']", partition: broadcast}
        sinks: {out: {input: ids, type: file, path: out}}
    """, p)
    parts = read_parts(data / "out")
    assert sorted(parts) == list(range(p))
    for part in parts.values():
        assert part == [r["id"] for r in RECORDS]


@parallelisms
def test_rebalance_is_round_robin(data: Path, p: int) -> None:
    run_pipeline(data, """
        batch_size: 64
        sources: {src: {type: file, path: records.jsonl, parallelism: 1}}
        transforms:
          ids: {input: src, map: "r['id']", partition: rebalance}
        sinks: {out: {input: ids, type: file, path: out}}
    """, p)
    parts = read_parts(data / "out")
    ids = [r["id"] for r in RECORDS]
    # one producer, starting at channel 0, alternating record by record across batches
    assert parts == {i: ids[i::p] for i in range(p)}


@parallelisms
def test_flat_map_word_count_over_text(tmp_path: Path, p: int) -> None:
    lines = [f"the {'quick ' * (i % 4)}brown fox {i % 5} jumps" for i in range(400)] + ["", "The END"]
    (tmp_path / "words.txt").write_text("\n".join(lines) + "\n")
    run_pipeline(tmp_path, """
        mode: batch
        batch_size: 32
        sources: {lines: {type: file, path: words.txt}}
        transforms:
          words: {input: lines, flat_map: "[{'word': w} for w in r.lower().split()]"}
          counts: {input: words, key_by: word, aggregate: {count: count}}
        sinks: {out: {input: counts, type: file, path: out}}
    """, p)
    expected = Counter(w for line in lines for w in line.lower().split())
    got = read_output(tmp_path / "out")
    assert {r["word"]: r["count"] for r in got} == dict(expected)
    assert len(got) == len(expected)


@parallelisms
def test_csv_input_without_header_and_csv_output(tmp_path: Path, p: int) -> None:
    rows = [[f"k{i % 4}", str(i), f"name {i}"] for i in range(200)]
    (tmp_path / "in.csv").write_text("".join(";".join(r) + "\n" for r in rows))
    run_pipeline(tmp_path, """
        mode: batch
        sources: {src: {type: file, path: in.csv, header: false, delimiter: ";"}}
        transforms:
          typed: {input: src, map: "{'k': r[0], 'n': int(r[1])}"}
          sums: {input: typed, key_by: k, aggregate: {total: {sum: n}, count: count}}
        sinks: {out: {input: sums, type: file, path: out, format: csv}}
    """, p)
    lines = [line for part in read_parts(tmp_path / "out", "csv").values() for line in part]
    assert lines.count("k,total,count") == len(read_parts(tmp_path / "out", "csv"))  # a header per file
    got = sorted(line for line in lines if line != "k,total,count")
    expected = sorted(f"k{k},{sum(i for i in range(200) if i % 4 == k)},50" for k in range(4))
    assert got == expected


@parallelisms
def test_directory_of_several_files(tmp_path: Path, p: int) -> None:
    d = tmp_path / "in"
    files = {f"part-{j}.jsonl": [{"f": j, "i": i} for i in range(j * 40, j * 40 + 40 + j)] for j in range(3)}
    for name, recs in files.items():
        write_jsonl(d / name, recs)
    write_jsonl(d / ".hidden.jsonl", [{"f": "hidden"}])
    (d / "_SUCCESS").write_text("")
    (d / "notes.txt").write_text("not matched by the pattern\n")
    run_pipeline(tmp_path, """
        sources: {src: {type: file, path: in, pattern: "*.jsonl"}}
        sinks: {out: {input: src, type: file, path: out}}
    """, p)
    assert canonical(read_output(tmp_path / "out")) == canonical(r for recs in files.values() for r in recs)


@parallelisms
def test_multiple_sinks_read_one_node(data: Path, p: int) -> None:
    result = run_pipeline(data, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          small: {input: src, filter: "r['value'] < 10"}
          ids: {input: small, map: "{'id': r['id'], 'cat': r['cat']}"}
        sinks:
          as_jsonl: {input: ids, type: file, path: out/jsonl}
          as_csv: {input: ids, type: file, path: out/csv, format: csv}
          dropped: {input: ids, type: blackhole}
          everything: {input: src, type: file, path: out/all}
    """, p)
    expected = [{"id": r["id"], "cat": r["cat"]} for r in RECORDS if r["value"] < 10]
    assert canonical(read_output(data / "out/jsonl")) == canonical(expected)
    csv_rows = [row for part in read_parts(data / "out/csv", "csv").values()
                for row in csv.DictReader(part)]
    assert canonical({"id": int(r["id"]), "cat": r["cat"]} for r in csv_rows) == canonical(expected)
    assert canonical(read_output(data / "out/all")) == canonical(RECORDS)
    blackhole = next(v for v in result.vertices if v.name == "dropped")
    assert blackhole.records_in == len(expected) and blackhole.parallelism == p


@parallelisms
def test_user_functions_as_import_paths(data: Path, p: int, udf_module) -> None:
    mod = udf_module("""
        def enrich(r):
            return {"id": r["id"], "user": r["user"], "score": r["value"] * 3 + 1}

        def keep(r):
            return r["score"] % 2 == 0

        def explode(r):
            return [r, dict(r, id=-r["id"])]

        def bucket(r):
            return r["user"][-1]

        def add(a, b):
            return dict(a, score=a["score"] + b["score"])
    """)
    run_pipeline(data, f"""
        mode: batch
        sources: {{src: {{type: file, path: records.jsonl}}}}
        transforms:
          enriched: {{input: src, map: "{mod}:enrich"}}
          even: {{input: enriched, filter: "{mod}:keep"}}
          doubled: {{input: even, flat_map: "{mod}:explode"}}
          total: {{input: doubled, key_by: "{mod}:bucket", reduce: "{mod}:add"}}
          shaped: {{input: total, map: "{{'digit': r['user'][-1], 'score': r['score']}}"}}
        sinks: {{out: {{input: shaped, type: file, path: out}}}}
    """, p)
    expected: Counter[str] = Counter()
    for r in RECORDS:
        score = r["value"] * 3 + 1
        if score % 2 == 0:
            expected[r["user"][-1]] += 2 * score
    assert canonical(read_output(data / "out")) == canonical(
        {"digit": d, "score": s} for d, s in expected.items())


@parallelisms
def test_empty_input_finishes(tmp_path: Path, p: int) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    run_pipeline(tmp_path, """
        mode: batch
        sources: {src: {type: file, path: empty.jsonl}}
        transforms: {c: {input: src, key_by: a, aggregate: {n: count}}}
        sinks: {out: {input: c, type: file, path: out}}
    """, p)
    assert read_output(tmp_path / "out") == []


@parallelisms
def test_a_raising_user_function_fails_the_job(data: Path, p: int) -> None:
    graph = plan_file(write_pipeline(data, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms:
          shifted: {input: src, map: "dict(r, d=r['id'] - 777)"}
          inverted: {input: shifted, map: "dict(r, x=1000 // r['d'])"}
        sinks: {out: {input: inverted, type: file, path: out}}
    """), p)
    result = run_graph(graph)
    assert result.state == "FAILED"
    # the failure crosses the control plane as the subtask's message (as on a cluster)
    message = str(result.error)
    assert "node 'inverted': user function raised ZeroDivisionError" in message
    assert repr(dict(RECORDS[777], d=0)) in message


def test_hash_partitioning_keeps_keys_together_at_parallelism_3(data: Path) -> None:
    run_pipeline(data, """
        sources: {src: {type: file, path: records.jsonl}}
        transforms: {c: {input: src, key_by: user, aggregate: {n: count}}}
        sinks: {out: {input: c, type: file, path: out}}
    """, 3)
    parts = read_parts(data / "out")
    assert_keys_partitioned(parts, 3)
    assert sum(map(len, parts.values())) == N


EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "pipelines"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "yaml.md"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A copy of configs/pipelines, so runs write nothing into the repository."""
    return Path(shutil.copytree(EXAMPLES, tmp_path / "pipelines", ignore=shutil.ignore_patterns("__pycache__")))


def printed_records(out: str) -> dict[str, list[Any]]:
    """Lines of print sinks by prefix (``user ``, ``tag ``, ...), the subtask index removed."""
    got: dict[str, list[Any]] = defaultdict(list)
    for line in out.splitlines():
        m = re.fullmatch(r"(.*?)(?:\d+> )?(\{.*)", line)
        assert m, line
        got[m.group(1)].append(orjson.loads(m.group(2)))
    return got


def run_example(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[Any]]:
    capsys.readouterr()
    result = run_graph(plan_file(path))
    assert result.state == "FINISHED", result.error
    return printed_records(capsys.readouterr().out)


def test_wordcount_example(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The quick-start job counts every word of its bundled text."""
    rows = run_example(examples / "wordcount.yaml", capsys)[""]
    text = (EXAMPLES / "data" / "words.txt").read_text()
    assert {r["word"]: r["count"] for r in rows} == dict(Counter(re.findall(r"[a-z']+", text.lower())))
    assert len(rows) == len({r["word"] for r in rows})


def test_sales_example(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_example(examples / "sales.yaml", capsys)[""]
    with open(EXAMPLES / "data" / "orders.csv", newline="") as f:
        paid = [r for r in csv.DictReader(f) if r["status"] == "paid"]
    expected = {}
    for region in {r["region"] for r in paid}:
        amounts = [float(r["amount"]) for r in paid if r["region"] == region]
        expected[region] = {"region": region, "orders": len(amounts), "revenue": pytest.approx(sum(amounts)),
                            "average": pytest.approx(sum(amounts) / len(amounts)), "largest": max(amounts),
                            "customers": [r["customer"] for r in paid if r["region"] == region]}
    assert {r["region"]: r for r in rows} == expected
    assert len(rows) == len(expected)


def test_clicks_example(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    got = run_example(examples / "clicks.yaml", capsys)
    clicks = [orjson.loads(line) for f in sorted((EXAMPLES / "data" / "clicks").iterdir())
              for line in f.read_bytes().splitlines() if line.strip()]
    with open(EXAMPLES / "data" / "app-clicks.csv", newline="") as f:
        clicks += [{"user": r["user"], "ms": int(r["ms"]), "tags": r["tags"].split("|") if r["tags"] else []}
                   for r in csv.DictReader(f)]
    users = got["user "]
    assert len(users) == len(clicks)  # streaming: a row per click
    for user, rows in by_key(users).items():
        ms = [c["ms"] for c in clicks if c["user"] == user]
        assert [r["clicks"] for r in rows] == list(range(1, len(ms) + 1))
        assert rows[-1] == {"user": user, "clicks": len(ms), "time_ms": sum(ms), "longest_ms": max(ms)}
    assert set(by_key(users)) == {c["user"] for c in clicks}
    tags = Counter(t for c in clicks for t in c["tags"])
    assert {tag: rows[-1]["n"] for tag, rows in by_key(got["tag "], "tag").items()} == dict(tags)
    assert len(got["tag "]) == sum(tags.values())


def test_every_example_pipeline_plans(examples: Path) -> None:
    files = sorted(examples.glob("*.yaml"))
    assert {"wordcount.yaml", "sales.yaml", "clicks.yaml"} <= {f.name for f in files}
    for f in files:
        graph = plan_file(f)
        assert graph.vertices, f


def _doc_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_docs_examples_match_the_files() -> None:
    """The docs show configs/pipelines files as they are."""
    blocks = [yaml.safe_load(b) for b in _doc_blocks()]
    for name in ("sales.yaml", "clicks.yaml"):
        assert yaml.safe_load((EXAMPLES / name).read_text()) in blocks, name


def test_docs_pipelines_really_run(examples: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every complete pipeline in docs/yaml.md plans, and the bounded ones run to the end (with the
    data of configs/pipelines)."""
    complete = [b for b in _doc_blocks() if {"sources", "sinks"} <= set(yaml.safe_load(b))]
    assert len(complete) >= 3
    for i, block in enumerate(complete):
        graph = plan_file(write_pipeline(examples, block, f"doc-{i}.yaml"))
        bounded = all(registry.source_class(v.operators[0].type).is_bounded(v.operators[0].params)
                      for v in graph.vertices if v.is_source)
        if bounded:
            result = run_graph(graph)
            assert result.state == "FINISHED", (block, result.error)
    totals = read_output(examples / "out" / "customer-totals")
    with open(EXAMPLES / "data" / "orders.csv", newline="") as f:
        orders = list(csv.DictReader(f))
    final = {r["customer"]: r for r in totals}  # streaming: a key's last row is its total
    assert len(totals) == len(orders)
    assert {c: (r["orders"], r["amount"]) for c, r in final.items()} == {
        c: (sum(1 for o in orders if o["customer"] == c),
            pytest.approx(sum(float(o["amount"]) for o in orders if o["customer"] == c)))
        for c in {o["customer"] for o in orders}}
