"""One meaning for a pipeline, wherever it runs: the same output, or the same error naming the
node and the record, embedded (``streamlet run``) and over two TaskManager processes.

Records are JSON values in both modes: a record that is not JSON fails at the channel it must
cross, in both; a tuple arrives as a list in both; and each consumer of a node sees its own
records, so one branch's in-place change does not show in the other.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streamlet import config as cfg
from streamlet.runtime.minicluster import execute_async
from tests.support.pipelines import canonical, plan_file, read_output, write_jsonl, write_pipeline

RECORDS = [{"id": i, "k": i % 5, "tags": [f"t{i % 3}", f"t{i % 2}"]} for i in range(200)]


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the task module copies through JSON (``json_copy``), in order."""
    from streamlet.runtime.taskmanager import task as task_module

    sizes: list[int] = []
    real = task_module.json_copy

    def counting(records: list[Any], node_id: str) -> list[Any]:
        sizes.append(len(records))
        return real(records, node_id)

    monkeypatch.setattr(task_module, "json_copy", counting)
    return sizes


def _run(tmp_path: Path, text: str, taskmanagers: int, out: str = "out",
         records: list[Any] = RECORDS) -> tuple[str, str, Any]:
    """Run the pipeline (its sinks write under ``out``); returns (state, error text, outputs)."""
    write_jsonl(tmp_path / "in.jsonl", records)
    graph = plan_file(write_pipeline(tmp_path, text.replace("@OUT@", out)), parallelism=2)
    conf = cfg.load(overrides={"log.level": "WARNING"}, env={})
    result = asyncio.run(execute_async(graph, conf, taskmanagers=taskmanagers))
    outputs = {d.name: read_output(d) for d in sorted((tmp_path / out).iterdir())} \
        if (tmp_path / out).exists() else {}
    error = str(result.error) if result.error is not None else ""
    return result.state, error, outputs


def _both(tmp_path: Path, text: str, records: list[Any] = RECORDS) -> tuple[tuple[str, str, Any], tuple[str, str, Any]]:
    return _run(tmp_path, text, 0, "out-embedded", records), _run(tmp_path, text, 2, "out-cluster", records)


def test_a_record_that_is_not_json_fails_the_same_way_at_the_shuffle(tmp_path: Path) -> None:
    embedded, cluster = _both(tmp_path, """
        name: sets
        sources: {src: {type: file, path: in.jsonl}}
        transforms:
          tagged: {input: src, map: "dict(r, tags=set(r['tags']))"}
          per_key: {input: tagged, key_by: k, aggregate: {n: count}}
        sinks: {out: {input: per_key, type: file, path: @OUT@/counts}}
    """)
    assert embedded[0] == cluster[0] == "FAILED"
    for state, error, _ in (embedded, cluster):
        assert "node 'tagged' emitted a record that is not a JSON value (Type is not JSON serializable: set)" \
            in error, error
        assert "'tags': {'t" in error and "convert sets to lists" in error
    # the same message, apart from which record came first and where the process logs are
    def shape(error: str) -> str:
        return error.split("): {")[0] + error.split("}; records must")[1].split(" (taskmanager logs")[0]

    assert shape(embedded[1]) == shape(cluster[1])


def test_two_branches_of_one_node_do_not_share_records(tmp_path: Path) -> None:
    # branch a changes its records in place; branch b must not see it, embedded as on a cluster
    embedded, cluster = _both(tmp_path, """
        name: branches
        sources: {src: {type: file, path: in.jsonl}}
        transforms:
          a: {input: src, map: "r.update(seen_by='a') or r", partition: rebalance}
          b: {input: src, filter: "'seen_by' not in r", partition: rebalance}
        sinks:
          out_a: {input: a, type: file, path: @OUT@/a}
          out_b: {input: b, type: file, path: @OUT@/b}
    """)
    assert embedded[0] == cluster[0] == "FINISHED", (embedded[1], cluster[1])
    assert {k: canonical(v) for k, v in embedded[2].items()} == {k: canonical(v) for k, v in cluster[2].items()}
    assert canonical(embedded[2]["b"]) == canonical(RECORDS)  # every record, none marked by branch a
    assert canonical(embedded[2]["a"]) == canonical(dict(r, seen_by="a") for r in RECORDS)


@pytest.mark.parametrize("changer", ["a", "b", "c"])
def test_one_branch_of_three_takes_the_originals_and_no_change_shows_in_another(
        tmp_path: Path, changer: str, copies: list[int]) -> None:
    """Embedded, the last of a node's local edges gets its records uncopied, the others a copy made
    at emit time: N records are copied twice (not three times), and whichever branch changes its
    records in place, the other two see them unchanged."""
    branches = "".join(
        f"  {b}: {{input: src, map: \"{'r.update(seen_by=1) or r' if b == changer else 'r'}\", partition: rebalance}}\n"
        for b in "abc")
    text = ("name: three\nsources: {src: {type: file, path: in.jsonl}}\ntransforms:\n" + branches
            + "sinks:\n" + "".join(f"  out_{b}: {{input: {b}, type: file, path: @OUT@/{b}}}\n" for b in "abc"))
    state, error, outputs = _run(tmp_path, text, 0)
    assert state == "FINISHED", error
    for b in "abc":
        want = [dict(r, seen_by=1) for r in RECORDS] if b == changer else RECORDS
        assert canonical(outputs[b]) == canonical(want), b
    # the source's two subtasks each copy their records for two of the three edges
    assert sum(copies) == 2 * len(RECORDS)


IN_PLACE = """
    name: split
    sources: {src: {type: file, path: in.jsonl}}
    transforms:
      # two branches that only read (filters: they share the source's records) ...
      even: {input: src, filter: "r['id'] % 2 == 0 and r.get('k') is not None", partition: rebalance}
      third: {input: src, filter: "r['id'] % 3 == 0 and len(r['tags']) == 2", partition: rebalance}
      # ... whose consumers then change what they got in place
      even_m: {input: even, map: "r.update(half=r['id'] // 2) or r", partition: rebalance}
      third_m: {input: third, map: "r['tags'].append('x') or r", partition: rebalance}
      # and one branch that changes the source's records at once (alone in its task)
      direct: {input: src, map: "r['tags'].clear() or r", partition: rebalance}
      direct_out: {input: direct, filter: "True", partition: rebalance}
    sinks:
      out_even: {input: even_m, type: file, path: @OUT@/even}
      out_third: {input: third_m, type: file, path: @OUT@/third}
      out_direct: {input: direct_out, type: file, path: @OUT@/direct}
"""


def test_branches_that_only_read_share_the_records_and_copy_what_they_keep(
        tmp_path: Path, copies: list[int]) -> None:
    """A node read by several edges hands the originals to branches whose operators provably leave
    their input as it is (expressions calling no method that changes a dict or list): each copies
    only the records it emits.  A branch that changes its input gets its own copy.  No change made
    in one branch shows in another, embedded as over two TaskManager processes."""
    embedded = _run(tmp_path, IN_PLACE, 0, "out-embedded")
    embedded_copies = sum(copies)
    cluster = _run(tmp_path, IN_PLACE, 2, "out-cluster")
    evens = [r for r in RECORDS if r["id"] % 2 == 0]
    thirds = [r for r in RECORDS if r["id"] % 3 == 0]
    for state, error, outputs in (embedded, cluster):
        assert state == "FINISHED", error
        assert canonical(outputs["even"]) == canonical(dict(r, half=r["id"] // 2) for r in evens)
        assert canonical(outputs["third"]) == canonical(dict(r, tags=[*r["tags"], "x"]) for r in thirds)
        assert canonical(outputs["direct"]) == canonical(dict(r, tags=[]) for r in RECORDS)
    # embedded: the source copies every record for `direct` only; `even` and `third` copy the
    # records they keep; `direct` copies its output (a map's output may not be JSON); the
    # mutating maps chained to their sinks copy nothing
    assert embedded_copies == len(RECORDS) + len(evens) + len(thirds) + len(RECORDS)


def test_what_provably_leaves_its_input_alone() -> None:
    from streamlet.graph.operators import expression_leaves_input

    for expr in ("r", "[r['bid']] if r['event_type'] == 2 else []", "r.get('a', 0) > 3", "dict(r, a=1)",
                 "r['s'].lower().split()", "sorted(r['xs'])", "math.floor(r['x'])", "{**r, 'n': len(r.keys())}",
                 "datetime.datetime.fromtimestamp(r['t'] / 1000).isoformat()", "re.sub('a', 'b', r['s'])"):
        assert expression_leaves_input(expr), expr
    for expr in ("r.update(a=1) or r", "r['xs'].append(1)", "dict.pop(r, 'k')", "r.setdefault('a', 1)",
                 "r['xs'].sort() or r", "list(map(r['xs'].remove, [1]))", "r.popitem()", "r['s'].clear()",
                 "[x.add(1) for x in r['sets']]", "r.frobnicate()"):
        assert not expression_leaves_input(expr), expr


def test_tuples_cross_a_channel_as_lists_in_both_modes(tmp_path: Path) -> None:
    embedded, cluster = _both(tmp_path, """
        name: tuples
        sources: {src: {type: file, path: in.jsonl}}
        transforms:
          pairs: {input: src, map: "(r['k'], r['id'])"}
          typed: {input: pairs, map: "{'k': r[0], 'is_list': isinstance(r, list)}", partition: rebalance}
        sinks: {out: {input: typed, type: file, path: @OUT@/t}}
    """)
    assert embedded[0] == cluster[0] == "FINISHED", (embedded[1], cluster[1])
    assert canonical(embedded[2]["t"]) == canonical(cluster[2]["t"])
    assert canonical(embedded[2]["t"]) == canonical({"k": r["k"], "is_list": True} for r in RECORDS)


@pytest.mark.parametrize("taskmanagers", [0, 2])
def test_a_single_consumer_path_is_not_copied(tmp_path: Path, taskmanagers: int) -> None:
    """The common case costs nothing: source -> key_by -> aggregate crosses a channel uncopied
    (the chain's output is JSON by construction) and gives the right counts in both modes."""
    state, error, outputs = _run(tmp_path, """
        name: plain
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {per_key: {input: src, key_by: k, aggregate: {n: count}}}
        sinks: {out: {input: per_key, type: file, path: @OUT@/c}}
    """, taskmanagers)
    assert state == "FINISHED", error
    finals: dict[int, int] = {}
    for row in outputs["c"]:
        finals[row["k"]] = max(finals.get(row["k"], 0), row["n"])
    assert finals == {k: sum(1 for r in RECORDS if r["k"] == k) for k in range(5)}


@pytest.mark.parametrize("expr, copied", [
    # provably JSON from JSON (streamlet.graph.operators.expression_gives_json): no copy
    ("flat_map: \"[{'tag': t, 'half': r['id'] // 2} for t in r['tags']] if r['id'] % 2 == 0 else []\"", False),
    # every element holds r's own tags list (a JSON round trip gives each its own): copied
    ("flat_map: \"[{**r, 'tag': t} for t in r['tags']] if r['id'] % 2 == 0 else []\"", True),
    ("map: \"{'k': r['k'], 'first': r['tags'][0].upper(), 'half': r['id'] // 2}\"", False),
    # a tuple, or dict() of whatever it is given: copied (a JSON round trip, as a remote channel)
    ("map: \"(r['k'], r['id'])\"", True),
    ("map: \"dict(r, half=r['id'] // 2)\"", True),
])
def test_a_user_expression_that_builds_json_crosses_a_channel_uncopied(
        tmp_path: Path, expr: str, copied: bool, copies: list[int]) -> None:
    text = f"""
        name: shaped
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms:
          shaped: {{input: src, {expr}}}
          again: {{input: shaped, map: "r", partition: rebalance}}
        sinks: {{out: {{input: again, type: file, path: @OUT@/s}}}}
    """
    embedded = _run(tmp_path, text, 0, "out-embedded")
    n_copied = sum(copies)
    cluster = _run(tmp_path, text, 2, "out-cluster")
    assert embedded[0] == cluster[0] == "FINISHED", (embedded[1], cluster[1])
    assert canonical(embedded[2]["s"]) == canonical(cluster[2]["s"])
    if "'half': r['id'] // 2}" in expr and "flat_map" in expr:
        want = [{"tag": t, "half": r["id"] // 2} for r in RECORDS if r["id"] % 2 == 0 for t in r["tags"]]
    elif "flat_map" in expr:
        want = [dict(r, tag=t) for r in RECORDS if r["id"] % 2 == 0 for t in r["tags"]]
    elif "upper" in expr:
        want = [{"k": r["k"], "first": r["tags"][0].upper(), "half": r["id"] // 2} for r in RECORDS]
    elif "dict(" in expr:
        want = [dict(r, half=r["id"] // 2) for r in RECORDS]
    else:
        want = [[r["k"], r["id"]] for r in RECORDS]
    assert canonical(embedded[2]["s"]) == canonical(want)
    assert n_copied == (len(want) if copied else 0)


#: wide records: a keyed aggregation of one field lets remote channels carry two of six fields
WIDE = [{"id": i, "k": i % 7, "v": i % 10, "url": f"https://x/{i}", "extra": "e" * (i % 50), "tags": [i]}
        for i in range(300)]


def test_keyed_aggregations_over_wide_records_give_the_same_rows(tmp_path: Path) -> None:
    embedded, cluster = _both(tmp_path, """
        name: wide
        sources: {src: {type: file, path: in.jsonl, timestamp: id}}
        transforms:
          sums: {input: src, key_by: k, aggregate: {total: {sum: v}, n: count, vs: {collect: v}}}
          win: {input: src, key_by: k, window: {type: tumbling, size: 100ms}, aggregate: {top: {max: v}}}
        sinks:
          out_sums: {input: sums, type: file, path: @OUT@/sums}
          out_win: {input: win, type: file, path: @OUT@/win}
    """, WIDE)
    assert embedded[0] == cluster[0] == "FINISHED", (embedded[1], cluster[1])
    expected = {}
    for r in WIDE:
        key = (r["k"], r["id"] // 100 * 100)
        expected[key] = max(expected.get(key, -1), r["v"])
    for _, _, outputs in (embedded, cluster):
        assert canonical(outputs["win"]) == canonical(
            {"k": k, "window_start": s, "window_end": s + 100, "top": top} for (k, s), top in expected.items())
        # a running aggregate: a row per record (the two sources interleave differently); the
        # last row of each key holds all its values
        assert len(outputs["sums"]) == len(WIDE)
        last = {}
        for row in outputs["sums"]:
            if row["n"] > last.get(row["k"], {"n": 0})["n"]:
                last[row["k"]] = row
        assert {k: (row["n"], row["total"], sorted(row["vs"])) for k, row in last.items()} == {
            k: (len(vs), sum(vs), sorted(vs)) for k in range(7) for vs in [[r["v"] for r in WIDE if r["k"] == k]]}


def test_a_record_without_the_aggregated_field_fails_the_same_way(tmp_path: Path) -> None:
    records = WIDE[:150] + [{"id": 150, "k": 3, "url": "u", "extra": "", "tags": [], "other": 1}] + WIDE[151:]
    embedded, cluster = _both(tmp_path, """
        name: missing
        sources: {src: {type: file, path: in.jsonl}}
        transforms: {sums: {input: src, key_by: k, aggregate: {total: {sum: v}}}}
        sinks: {out: {input: sums, type: file, path: @OUT@/sums}}
    """, records)
    assert embedded[0] == cluster[0] == "FAILED"
    for _, error, _ in (embedded, cluster):
        assert "sums" in error and "'other': 1" in error and "KeyError" in error, error


#: two branches whose expressions call no changing method, yet assign into their record: a
#: comprehension's ``for`` target may be a subscript (``for r['seen'] in ...`` stores r['seen'])
STORING_TARGETS = """
    name: targets
    sources: {src: {type: file, path: in.jsonl}}
    transforms:
      a: {input: src, map: "[r for r['seen'] in [r.get('seen', 0) + 1]][0]", partition: rebalance}
      b: {input: src, map: "[r for r['seen'] in [r.get('seen', 0) + 1]][0]", partition: rebalance}
      c: {input: src, filter: "[0 for r['tags'][0] in ['zz']] and r['k'] >= 0", partition: rebalance}
      # (a chained sink would keep them off the source's originals)
      a_out: {input: a, filter: "True", partition: rebalance}
      b_out: {input: b, filter: "True", partition: rebalance}
      c_out: {input: c, filter: "True", partition: rebalance}
    sinks:
      out_a: {input: a_out, type: file, path: @OUT@/a}
      out_b: {input: b_out, type: file, path: @OUT@/b}
      out_c: {input: c_out, type: file, path: @OUT@/c}
"""


@pytest.mark.parametrize("taskmanagers", [0, 2])
def test_a_branch_assigning_through_a_comprehension_target_gets_its_own_records(
        tmp_path: Path, taskmanagers: int) -> None:
    """``[r for r['seen'] in [...]]`` changes r without calling a method: a branch doing it must not
    read the records other branches read (embedded, the second branch saw seen == 2)."""
    state, error, outputs = _run(tmp_path, STORING_TARGETS, taskmanagers)
    assert state == "FINISHED", error
    assert canonical(outputs["a"]) == canonical(outputs["b"]) == canonical(dict(r, seen=1) for r in RECORDS)
    assert canonical(outputs["c"]) == canonical(dict(r, tags=["zz", r["tags"][1]]) for r in RECORDS)


def test_a_comprehension_target_storing_into_the_record_does_not_leave_it_alone() -> None:
    from streamlet.graph.operators import expression_leaves_input

    for expr in ("[r for r['seen'] in [1]][0]", "[0 for r['tags'][0] in ['zz']] or True",
                 "any(1 for r['a'] in [2])", "{k: v for k, r['x'] in [(1, 2)] for v in [3]}",
                 "[0 for (x, r['y']) in [(1, 2)]]", "[0 for [*r['z']] in [[1]]]"):
        assert not expression_leaves_input(expr), expr
    for expr in ("[x for x in r['xs']]", "{k: v for k, v in r.items()}", "[a + b for (a, b) in r['pairs']]",
                 "[0 for [*xs] in [[1]]]"):
        assert expression_leaves_input(expr), expr


@pytest.mark.parametrize("expr", [
    # one list under two fields: the consumer's append to one showed in the other
    "map: \"{**r, 'again': r['tags']}\"",
    "map: \"{'id': r['id'], 'tags': r['tags'], 'pair': [r['tags'], r['k']]}\"",
    # one record (or its tags) in every element: an append to one element's showed in the others
    "flat_map: \"[r, r]\"",
    "flat_map: \"[{**r, 'tag': t} for t in r['tags']]\"",
    "flat_map: \"[{'id': r['id'], 'tags': r['tags'], 'n': n} for n in [0, 1]]\"",
    "flat_map: \"[{'id': r['id'], 'tags': x} for x in [r['tags']] * 2]\"",
])
@pytest.mark.parametrize("taskmanagers", [0, 2])
def test_output_holding_one_value_twice_reaches_a_changing_consumer_as_a_json_copy(
        tmp_path: Path, expr: str, taskmanagers: int) -> None:
    """A JSON round trip gives every place of a value its own list or map; an expression whose
    output holds one of its input's values in two places must cross a channel as that copy, or a
    consumer changing one place in place changes the other (embedded, and locally on a TaskManager)."""
    text = f"""
        name: shared_parts
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms:
          shaped: {{input: src, {expr}}}
          changed: {{input: shaped, map: "r['tags'].append('x') or r", partition: rebalance}}
        sinks: {{out: {{input: changed, type: file, path: @OUT@/s}}}}
    """
    state, error, outputs = _run(tmp_path, text, taskmanagers)
    assert state == "FINISHED", error
    assert outputs["s"]
    for row in outputs["s"]:  # each record's tags got one 'x'; no other list got any
        assert row["tags"][-1] == "x" and row["tags"].count("x") == 1, row
        assert "x" not in row.get("again", []) and "x" not in row.get("pair", [[]])[0], row


@pytest.mark.parametrize("expr", ["(r['id'] - 100) ** 0.5", "pow(r['id'] - 100, 0.5)"])
def test_a_power_that_may_be_complex_is_not_json_in_both_modes(tmp_path: Path, expr: str) -> None:
    """(-4) ** 0.5 is a complex number: not JSON, so it fails at the channel in both modes (embedded
    it crossed uncopied and the next map turned it into a str)."""
    embedded, cluster = _both(tmp_path, f"""
        name: roots
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms:
          roots: {{input: src, map: "{{'id': r['id'], 'root': {expr}}}"}}
          shown: {{input: roots, map: "{{'id': r['id'], 'root': str(r['root'])}}", partition: rebalance}}
        sinks: {{out: {{input: shown, type: file, path: @OUT@/s}}}}
    """)
    assert embedded[0] == cluster[0] == "FAILED", (embedded, cluster)
    for state, error, _ in (embedded, cluster):
        assert "node 'roots' emitted a record that is not a JSON value" in error and "complex" in error, error


def test_what_provably_builds_json_holding_no_value_twice() -> None:
    from streamlet.graph.operators import expression_gives_json

    for expr, iterable in [("{**r, 'x': 1}", False), ("{**r, 'minute': '%02d' % (r['t'] // 60000 % 60)}", False),
                           ("{'a': r['a'], 'b': r['b'], 'p': r['price'] * 0.908}", False),
                           ("[r['bid']] if r['event_type'] == 2 else []", True), ("[x for xs in r['a'] for x in xs]", True),
                           ("[{'tag': t} for t in r['tags']]", True), ("{'a': r['a'] + r['b']}", False),
                           ("{'sq': r['x'] ** 2, 'inv': r['x'] ** -1}", False), ("'-' * r['n']", False)]:
        assert expression_gives_json(expr, iterable), expr
    for expr, iterable in [("{**r, 'again': r['tags']}", False), ("[r, r]", True), ("r['xs'] * 2", False),
                           ("[{**r, 'tag': t} for t in r['tags']]", True), ("[[5]] * 2", False),
                           ("[x for x in [[1]] for n in [0, 1]]", True), ("[xs for xs in r['a'] for x in xs]", True),
                           ("{'a': r['a'] + r['a']}", False), ("r['a'] if r['c'] else [r['a'], r['a']]", False),
                           ("[max(r['a'], r['b']), r['a']]", False), ("{'a': r.get('a'), 'b': r['a']}", False),
                           ("(r['x'] - 1) ** 0.5", False), ("pow(r['x'], 0.5)", False)]:
        assert not expression_gives_json(expr, iterable), expr


@pytest.mark.parametrize("expr", ["chr(55296 + r['k'])", "'%c' % (55296 + r['k'])", "f'{55296 + r[\"k\"]:c}'",
                                  "format(55296 + r['k'], 'c')", "'{:c}'.format(55296 + r['k'])"])
def test_a_lone_surrogate_is_not_json_in_both_modes(tmp_path: Path, expr: str) -> None:
    """chr(55296) is a str no JSON text holds (not UTF-8): it fails at the channel in both modes
    (embedded it crossed uncopied and the next map took its length)."""
    quoted = expr.replace('"', '\\"')
    embedded, cluster = _both(tmp_path, f"""
        name: surrogates
        sources: {{src: {{type: file, path: in.jsonl}}}}
        transforms:
          odd: {{input: src, map: "{{'id': r['id'], 's': {quoted}}}"}}
          shown: {{input: odd, map: "{{'id': r['id'], 'n': len(r['s'])}}", partition: rebalance}}
        sinks: {{out: {{input: shown, type: file, path: @OUT@/s}}}}
    """)
    assert embedded[0] == cluster[0] == "FAILED", (embedded[:2], cluster[:2])
    for state, error, _ in (embedded, cluster):
        assert "node 'odd' emitted a record that is not a JSON value" in error and "surrogate" in error, error
