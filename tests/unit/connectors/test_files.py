"""The file source's reader and splits: every line exactly once, decoding edge cases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.files import FileSource
from streamlet.errors import DecodeError
from streamlet.testing.sources import TestingSourceContext, read_batches


def _params(path: Path, fmt: str | None = None, **kw: Any) -> dict[str, Any]:
    return FileSource.validate({"path": str(path), **({"format": fmt} if fmt else {}), **kw},
                               "test: sources.src", str(path.parent))


async def _reader(params: dict[str, Any], splits: list[dict[str, Any]], sub: int = 0, parallelism: int = 1,
                  batch_size: int = 7, chunk_size: int | None = None) -> Any:
    reader = FileSource.create_reader(params, TestingSourceContext(sub, parallelism, batch_size, node_id="src"))
    if chunk_size is not None:
        reader.chunk_size = chunk_size
    await reader.open()
    reader.add_splits(splits)
    return reader


def _read_all(path: Path, fmt: str, parallelism: int = 1, batch_size: int = 7) -> list[list[Any]]:
    params = _params(path, fmt)
    splits = FileSource.enumerate_splits(params, parallelism)

    async def run(sub: int) -> list[Any]:
        mine = [s for i, s in enumerate(splits) if i % parallelism == sub]
        reader = await _reader(params, mine, sub, parallelism, batch_size)
        out: list[Any] = []
        try:
            for batch in await read_batches(reader):
                assert reader.current_split in {s["id"] for s in mine}
                out.extend(batch)
            assert reader.progress() == 1.0
        finally:
            await reader.close()
        return out

    return [asyncio.run(run(i)) for i in range(parallelism)]


@pytest.mark.parametrize("parallelism", [1, 2, 3, 5])
def test_jsonl_every_record_exactly_once_over_splits(tmp_path: Path, parallelism: int) -> None:
    recs = [{"id": i, "s": "x" * (i % 13)} for i in range(5000)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    parts = _read_all(path, "jsonl", parallelism)
    assert sorted((r for p in parts for r in p), key=lambda r: r["id"]) == recs
    if parallelism > 1:
        assert all(parts), "a single file is cut so every subtask reads part of it"


def test_jsonl_blank_lines_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\r\n{"a": 2}\n\n\n{"a": 3}')
    assert _read_all(path, "jsonl")[0] == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_jsonl_two_values_on_one_line_is_an_error_not_two_records(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}, {"a": 3}\n{"a": 4}\n')
    with pytest.raises(DecodeError) as err:
        _read_all(path, "jsonl")
    assert err.value.node_id == "src"
    assert str(err.value).startswith(f"source 'src': cannot decode jsonl at {path}:2: not a JSON value")
    assert "'{\"a\": 2}, {\"a\": 3}'" in str(err.value) and "user function" not in str(err.value)


def test_jsonl_malformed_line_names_source_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    # the bad line is line 3002, far into a second 4 MiB chunk of the file
    good = b'{"a": "' + b"x" * 2000 + b'"}\n'
    path.write_bytes(good * 3001 + b'{"a": \n{"a": 3}\n')
    with pytest.raises(DecodeError, match=rf"source 'src': cannot decode jsonl at {path}:3002: not a JSON value"):
        _read_all(path, "jsonl")


def test_text_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\ntwo\nth\xffree\n")
    with pytest.raises(DecodeError, match=rf"cannot decode text at {path}:3: not UTF-8 .*byte 2 of the line"):
        _read_all(path, "text")


def test_text_lines_keep_blank_lines_and_strip_cr(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\r\n\r\ntwo\nthree")
    assert _read_all(path, "text")[0] == ["one", "", "two", "three"]


def test_csv_header_applies_to_every_split(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,name\n" + "".join(f"{i},n{i}\n" for i in range(1000)))
    parts = _read_all(path, "csv", parallelism=3)
    rows = sorted((r for p in parts for r in p), key=lambda r: int(r["id"]))
    assert rows == [{"id": str(i), "name": f"n{i}"} for i in range(1000)]


def test_a_bad_line_in_a_pipeline_names_the_source_node(tmp_path: Path) -> None:
    from tests.support.pipelines import plan_file, run_graph, write_pipeline

    (tmp_path / "in.jsonl").write_bytes(b'{"a": 1}\n{"a":\n')
    result = run_graph(plan_file(write_pipeline(tmp_path, """
        sources: {events: {type: file, path: in.jsonl}}
        sinks: {out: {input: events, type: blackhole}}
    """)))
    assert result.state == "FAILED"
    # the failure crosses the control plane as the subtask's message (as on a cluster)
    assert str(result.error).startswith("source 'events': cannot decode")
    assert f"{tmp_path / 'in.jsonl'}:2" in str(result.error)


@pytest.mark.parametrize("sink, records, fragment", [
    ("{type: file, path: out}", "[{'id': 1, 'tags': {'a'}}]", "it is not JSON (Type is not JSON serializable: set)"),
    ("{type: file, path: out, format: csv}", "[{'id': 1}, {1: 'x', 'id': 2}]", "its key 1 is not a string"),
    ("{type: file, path: out, format: csv}", "[{'id': 1}, {'id': 2, 'extra': 3}]", "fields ['extra']"),
    ("{type: print}", "[{'id': 1, 'raw': b'x'}]", "it is not JSON (Type is not JSON serializable: bytes)"),
])
def test_a_record_a_sink_cannot_write_fails_naming_the_sink_the_record_and_the_fix(
        tmp_path: Path, sink: str, records: str, fragment: str) -> None:
    from tests.support.pipelines import plan_file, run_graph, write_pipeline

    (tmp_path / "in.jsonl").write_bytes(b'{"n": 0}\n')
    result = run_graph(plan_file(write_pipeline(tmp_path, f"""
        sources: {{events: {{type: file, path: in.jsonl}}}}
        transforms: {{bad: {{input: events, flat_map: "{records}"}}}}
        sinks: {{out: {{input: bad, {sink[1:]}}}
    """)))
    assert result.state == "FAILED"
    message = str(result.error)
    assert message.startswith("sink 'out': cannot write record {") and fragment in message, message
    assert "; " in message.split(fragment, 1)[1]  # followed by the fix


def test_poll_returns_at_once_while_the_read_thread_works(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(b"line %d\n" % i for i in range(100)))

    async def go() -> list[Any]:
        reader = await _reader(_params(path, "text"), FileSource.enumerate_splits(_params(path, "text"), 1),
                               batch_size=1000)
        assert reader.poll() == []  # the first chunk is being read in a thread
        await reader.wait_available()
        batch = reader.poll()
        assert reader.poll() is None
        await reader.close()
        return batch
    assert asyncio.run(go()) == [f"line {i}" for i in range(100)]


@pytest.mark.parametrize("chunk_size", [16, 64, 333])
def test_jsonl_lines_across_and_longer_than_chunks_and_a_bad_line_after_a_boundary(tmp_path: Path,
                                                                                  chunk_size: int) -> None:
    # lines of 9 to ~300 bytes: many start in one chunk and end in the next, some span several
    recs = [{"id": i, "pad": "y" * (i * 37 % 290)} for i in range(400)]
    lines = [orjson.dumps(r) for r in recs]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines))  # and no final newline

    async def read(p: Path) -> list[Any]:
        reader = await _reader(_params(p), FileSource.enumerate_splits(_params(p), 1), batch_size=5,
                               chunk_size=chunk_size)
        try:
            return [r for b in await read_batches(reader) for r in b]
        finally:
            await reader.close()
    assert asyncio.run(read(path)) == recs
    # the first line that starts in one chunk and ends in the next: it is the head of that chunk's first run
    starts = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    k = next(i for i, at in enumerate(starts) if i > 50 and at // chunk_size != (at + len(lines[i])) // chunk_size)
    bad = [*lines[:k], lines[k][:-1], *lines[k + 1:]]  # a truncated object
    path.write_bytes(b"\n".join(bad) + b"\n")
    with pytest.raises(DecodeError, match=rf"cannot decode jsonl at {path}:{k + 1}: not a JSON value"):
        asyncio.run(read(path))


def test_a_file_removed_after_planning_names_the_source_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.jsonl"
    path.write_bytes(b'{"a": 1}\n')
    params = _params(path)
    splits = FileSource.enumerate_splits(params, 1)
    path.unlink()

    async def go() -> None:
        reader = await _reader(params, splits)
        try:
            await read_batches(reader)
        finally:
            await reader.close()
    with pytest.raises(ConnectorError, match=r"source 'src': cannot read '.*gone\.jsonl'.*exists"):
        asyncio.run(go())


# -- snapshot and restore -------------------------------------------------------------------------


def _lines(n: int) -> list[bytes]:
    # uneven line lengths, so cuts fall anywhere in chunks
    return [orjson.dumps({"id": i, "pad": "x" * (i * 7 % 23)}) for i in range(n)]


async def _read_and_restore(params: dict[str, Any], parallelism: int, new_parallelism: int, cuts: list[int],
                            chunk_size: int, batch_size: int = 7) -> tuple[list[Any], list[Any], list[Any]]:
    """Subtask ``i`` of ``parallelism`` reads ``cuts[i]`` records and snapshots; the states (a JSON
    round trip) are dealt to ``new_parallelism`` new readers, which read the rest."""
    splits = FileSource.enumerate_splits(params, parallelism)
    first: list[Any] = []
    states: list[dict[str, Any]] = []
    for i in range(parallelism):
        reader = await _reader(params, splits[i::parallelism], i, parallelism, batch_size, chunk_size)
        first += [r for b in await read_batches(reader, max_records=cuts[i]) for r in b]
        states += orjson.loads(orjson.dumps(reader.snapshot_state(1)))
        await reader.close()
    rest: list[Any] = []
    for i in range(new_parallelism):
        reader = await _reader(params, states[i::new_parallelism], i, new_parallelism, batch_size, chunk_size)
        rest += [r for b in await read_batches(reader) for r in b]
        assert all(st["done"] for st in reader.snapshot_state(2))
        assert reader.progress() == 1.0
        await reader.close()
    return first, rest, states


@pytest.mark.parametrize("chunk_size", [64, 1000, 1 << 22])
@pytest.mark.parametrize("cut", [0, 1, 7, 8, 150, 299, 300, 10**6])
def test_jsonl_restore_reads_exactly_the_rest(tmp_path: Path, cut: int, chunk_size: int) -> None:
    lines = _lines(300)
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [orjson.loads(line) for line in lines]
    first, rest, states = asyncio.run(_read_and_restore(_params(path), 1, 1, [cut], chunk_size))
    # batches are whole: the first reader stopped after the batch that reached ``cut``
    assert min(cut, 300) <= len(first) <= 300
    assert first + rest == expected  # in file order: no record twice, none missing
    offset = states[0]["offset"]
    assert offset == len(b"".join(line + b"\n" for line in lines[:len(first)]))  # the next line's byte
    assert states[0]["done"] == (len(first) == 300)


@pytest.mark.parametrize("cut", [0, 5, 60, 10**6])
def test_restore_after_a_rescale_on_other_subtasks(tmp_path: Path, cut: int) -> None:
    # two files, cut in byte ranges for 3 subtasks; their states resume on 2 (and on 4) subtasks
    expected = []
    for name, n in (("a.jsonl", 170), ("b.jsonl", 90)):
        lines = _lines(n)
        (tmp_path / name).write_bytes(b"\n".join(lines) + b"\n")
        expected += [orjson.loads(line) for line in lines]
    params = _params(tmp_path, "jsonl")
    for new_p in (2, 4):
        first, rest, states = asyncio.run(_read_and_restore(params, 3, new_p, [cut, 40, 10**6], 100))
        assert sorted(orjson.dumps(r) for r in first + rest) == sorted(orjson.dumps(r) for r in expected)
        assert len(first) + len(rest) == len(expected)
        assert len({s["id"] for s in states}) == len(states) >= 3


@pytest.mark.parametrize("cut", [0, 3, 10, 17])
def test_text_restore_with_blank_lines_crlf_and_no_final_newline(tmp_path: Path, cut: int) -> None:
    data = b"one\r\n\r\ntwo\nthree\n\n\nfour\r\nfive\nsix\nseven\neight\nnine\nten\n\neleven"
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    expected = [ln.rstrip("\r") for ln in data.decode().split("\n")]
    first, rest, _ = asyncio.run(_read_and_restore(_params(path, "text"), 1, 1, [cut], 5, batch_size=2))
    assert first + rest == expected


@pytest.mark.parametrize("cut", [0, 9, 250])
def test_csv_restore_keeps_the_header_of_the_split(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id;name\n" + "".join(f"{i};n{i}\n" for i in range(400)))
    params = _params(path, "csv", delimiter=";")
    first, rest, states = asyncio.run(_read_and_restore(params, 2, 3, [cut, cut], 128))
    assert sorted(first + rest, key=lambda r: int(r["id"])) == [{"id": str(i), "name": f"n{i}"} for i in range(400)]
    assert all(s["header"] == ["id", "name"] for s in states)


def test_a_finished_split_state_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2}\n')
    first, rest, states = asyncio.run(_read_and_restore(_params(path), 1, 1, [10], 1000))
    assert (first, rest) == ([{"a": 1}, {"a": 2}], [])
    assert states == [{"id": f"{path}:0-18", "path": str(path), "start": 0, "end": 18, "header": None,
                       "offset": 18, "done": True}]


# -- rate: -----------------------------------------------------------------------------------


def _paced_lines(tmp_path: Path, n: int) -> tuple[Path, list[dict[str, Any]]]:
    recs = [{"id": i, "pad": "x" * (i % 7)} for i in range(n)]
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return path, recs


def _never_early(batches: list[tuple[float, int]], rate: float) -> None:
    """Record k (0-based) of a subtask paced to ``rate``/s leaves at the earliest at k / rate."""
    sent = 0
    for t, n in batches:
        assert sent <= rate * t + 1e-6, (sent, t)
        sent += n


@pytest.mark.parametrize(("rate", "parallelism"), [(200, 1), (1000, 2), (50_000, 1)])
def test_rate_paces_each_subtask_to_its_share_on_the_clock(tmp_path: Path, rate: int, parallelism: int) -> None:
    from streamlet.clock import ManualClock
    from streamlet.testing.sources import read_paced

    path, _ = _paced_lines(tmp_path, 120_000)
    params = _params(path, "jsonl", rate=rate)
    splits = FileSource.enumerate_splits(params, parallelism)
    seconds = 2.0
    share = rate / parallelism
    chunk = max(1, -(-int(share) // 100))  # about 10 ms worth per batch

    async def run(sub: int) -> list[tuple[float, int]]:
        clock = ManualClock()
        ctx = TestingSourceContext(sub, parallelism, 512, clock=clock, node_id="src")
        reader = FileSource.create_reader(params, ctx)
        await reader.open()
        reader.add_splits([s for i, s in enumerate(splits) if i % parallelism == sub])
        try:
            return await read_paced(reader, clock, seconds)
        finally:
            await reader.close()

    for sub in range(parallelism):
        batches = asyncio.run(run(sub))
        _never_early(batches, share)
        total = sum(n for _, n in batches)
        # records 0..share*seconds are due by then; a run is cut by an estimate of its bytes, so a
        # batch may be a few lines longer than its chunk
        slack = chunk // 10 + 2
        assert share * seconds <= total <= share * seconds + chunk + slack, (total, share)
        assert max(n for _, n in batches) <= chunk + slack


def test_a_paced_reader_reads_every_line_once_and_restores_from_its_snapshot(tmp_path: Path) -> None:
    from streamlet.clock import ManualClock
    from streamlet.testing.sources import read_paced

    path, recs = _paced_lines(tmp_path, 3000)
    params = _params(path, "jsonl", rate=1000)
    splits = FileSource.enumerate_splits(params, 1)

    async def first() -> tuple[list[Any], list[dict[str, Any]]]:
        clock = ManualClock()
        reader = FileSource.create_reader(params, TestingSourceContext(batch_size=512, clock=clock, node_id="src"))
        await reader.open()
        reader.add_splits(splits)
        got: list[Any] = []
        try:
            while len(got) < 1000:
                batch = reader.poll()
                assert batch is not None
                if batch:
                    got.extend(batch)
                elif reader.limiter.delay() > 0:
                    await clock.advance(0.01)
                else:
                    await reader.wait_available()
            return got, reader.snapshot_state(1)
        finally:
            await reader.close()

    async def rest(state: list[dict[str, Any]]) -> tuple[list[Any], list[tuple[float, int]]]:
        clock = ManualClock()
        reader = FileSource.create_reader(params, TestingSourceContext(batch_size=512, clock=clock, node_id="src"))
        await reader.open()
        reader.add_splits(state)
        out: list[Any] = []
        times: list[tuple[float, int]] = []
        try:
            while (batch := reader.poll()) is not None:
                if batch:
                    out.extend(batch)
                    times.append((clock.monotonic(), len(batch)))
                elif reader.limiter.delay() > 0:
                    await clock.advance(0.01)
                else:
                    await reader.wait_available()
            return out, times
        finally:
            await reader.close()

    got, state = asyncio.run(first())
    assert len(got) >= 1000
    assert got == recs[:len(got)]
    again, times = asyncio.run(rest(state))
    assert again == recs[len(got):]  # exactly the rest, from where the snapshot says
    _never_early(times, 1000)  # and still paced
    assert times[-1][0] == pytest.approx(len(again) / 1000, abs=0.03)


def test_rate_must_be_positive(tmp_path: Path) -> None:
    from streamlet.errors import PipelineDefinitionError

    path, _ = _paced_lines(tmp_path, 3)
    for bad in (0, -5, float("nan"), float("inf")):  # a limiter cannot pace by nan or inf
        with pytest.raises(PipelineDefinitionError, match="positive") as info:
            _params(path, "jsonl", rate=bad)
        assert "sources.src.rate" in str(info.value)


def test_validated_params_validate_again(tmp_path: Path) -> None:
    """The JobManager validates a client-planned JobGraph's params again: unset keys are null there."""
    path, _ = _paced_lines(tmp_path, 3)
    params = _params(path, "jsonl")
    assert params["rate"] is None
    assert FileSource.validate(params, "test: sources.src", str(tmp_path)) == params


# -- watch: a directory as an unbounded source ---------------------------------------------------


def _drop(directory: Path, name: str, recs: list[Any]) -> Path:
    """Write a jsonl file as a producer should: under a hidden name, then renamed into place."""
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return tmp.rename(directory / name)


def test_watch_discovers_each_new_file_once_and_skips_hidden_and_empty_ones(tmp_path: Path) -> None:
    _drop(tmp_path, "a.jsonl", [{"f": "a", "i": 0}])
    params = FileSource.validate({"path": str(tmp_path), "watch": "1s"}, "test: sources.src", str(tmp_path))
    assert not FileSource.is_bounded(params)
    assert FileSource.discovery_interval(params) == 1.0
    assert params["format"] == "jsonl"
    first = FileSource.enumerate_splits(params, 2)
    assert [Path(s["path"]).name for s in first] == ["a.jsonl", "a.jsonl"] or \
        [Path(s["path"]).name for s in first] == ["a.jsonl"]
    assert FileSource.discover_splits(params, 2, first) == []
    _drop(tmp_path, "b.jsonl", [{"f": "b", "i": 0}, {"f": "b", "i": 1}])
    (tmp_path / ".c.jsonl.tmp").write_bytes(b'{"in": "progress"}\n')
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / "e.jsonl").write_bytes(b"")  # created, not written yet
    found = FileSource.discover_splits(params, 2, first)
    size_b = (tmp_path / "b.jsonl").stat().st_size
    assert found == [{"id": f"{tmp_path / 'b.jsonl'}:0-{size_b}", "path": str(tmp_path / "b.jsonl"), "start": 0,
                      "end": size_b, "header": None}]  # whole, up to its size when found
    assert FileSource.discover_splits(params, 2, first + found) == []
    (tmp_path / "e.jsonl").write_bytes(b'{"f": "e"}\n')  # now it has content
    assert [Path(s["path"]).name for s in FileSource.discover_splits(params, 2, first + found)] == ["e.jsonl"]


def test_watch_validation(tmp_path: Path) -> None:
    from streamlet.errors import PipelineDefinitionError

    (tmp_path / "in").mkdir()
    # an empty directory is fine when watching (files come later); the format follows the pattern
    params = FileSource.validate({"path": "in", "watch": "500ms", "pattern": "*.csv"}, "t: sources.s", str(tmp_path))
    assert params["format"] == "csv" and params["watch"] == 500
    assert FileSource.enumerate_splits(params, 3) == []
    with pytest.raises(PipelineDefinitionError, match="no input files"):
        FileSource.validate({"path": "in"}, "t: sources.s", str(tmp_path))
    f = _drop(tmp_path, "x.jsonl", [1])
    with pytest.raises(PipelineDefinitionError, match="watch needs a directory") as info:
        FileSource.validate({"path": str(f), "watch": "1s"}, "t: sources.s", str(tmp_path))
    assert "sources.s.path" in str(info.value)
    with pytest.raises(PipelineDefinitionError) as info:
        FileSource.validate({"path": "in", "watch": "0s"}, "t: sources.s", str(tmp_path))
    assert "sources.s.watch" in str(info.value)


def test_a_watching_reader_waits_for_splits_instead_of_ending_and_restores_without_rereading(tmp_path: Path) -> None:
    a = [{"f": "a", "i": i} for i in range(50)]
    b = [{"f": "b", "i": i} for i in range(30)]
    c = [{"f": "c", "i": i} for i in range(20)]
    _drop(tmp_path, "a.jsonl", a)
    params = FileSource.validate({"path": str(tmp_path), "watch": "1s"}, "test: sources.src", str(tmp_path))
    initial = FileSource.enumerate_splits(params, 1)

    async def drain(reader: Any, n: int) -> list[Any]:
        """``n`` records, then check that the reader waits for new splits (it never ends)."""
        out: list[Any] = []
        while len(out) < n:
            batch = reader.poll()
            assert batch is not None, "a watching reader never ends its input"
            if batch:
                out.extend(batch)
            else:
                await asyncio.wait_for(reader.wait_available(), 5)
        # the reads after the last line come to nothing; then nothing is in flight
        while reader.poll() == [] and (reader._pending is not None or reader._cur is not None):
            await asyncio.wait_for(reader.wait_available(), 5)
        assert reader.poll() == []
        waiter = asyncio.ensure_future(reader.wait_available())
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()  # nothing in flight: it waits for add_splits
        waiter.cancel()
        return out

    async def first() -> tuple[list[Any], list[dict[str, Any]]]:
        reader = await _reader(params, initial, batch_size=16)
        try:
            got = await drain(reader, len(a))
            assert reader.progress() is None
            _drop(tmp_path, "b.jsonl", b)
            found = FileSource.discover_splits(params, 1, initial)
            waiter = asyncio.ensure_future(reader.wait_available())
            await asyncio.sleep(0)
            assert not waiter.done()
            reader.add_splits(found)  # as the task's mailbox does for the coordinator
            await asyncio.wait_for(waiter, 5)
            got += await drain(reader, len(b))
            return got, reader.snapshot_state(7)
        finally:
            await reader.close()

    got, state = asyncio.run(first())
    assert got == a + b
    assert {Path(s["path"]).name for s in state} == {"a.jsonl", "b.jsonl"} and all(s["done"] for s in state)

    async def restored() -> list[Any]:
        # a restore: the reader gets the states; the coordinator knows what they hold
        reader = await _reader(params, state, batch_size=16)
        try:
            got = await drain(reader, 0)  # restored: nothing to read again
            _drop(tmp_path, "c.jsonl", c)
            found = FileSource.discover_splits(params, 1, state)
            assert [Path(s["path"]).name for s in found] == ["c.jsonl"]
            reader.add_splits(found)
            return got + await drain(reader, len(c))
        finally:
            await reader.close()

    assert asyncio.run(restored()) == c


def test_a_snapshot_mid_file_restores_the_position_in_that_file(tmp_path: Path) -> None:
    a = [{"f": "a", "i": i} for i in range(500)]
    _drop(tmp_path, "a.jsonl", a)
    params = FileSource.validate({"path": str(tmp_path), "watch": "1s"}, "test: sources.src", str(tmp_path))
    splits = FileSource.discover_splits(params, 1, [])

    async def first() -> tuple[list[Any], list[dict[str, Any]]]:
        reader = await _reader(params, splits, batch_size=16)
        try:
            got = [r for batch in await read_batches(reader, max_records=100) for r in batch]
            return got, reader.snapshot_state(1)
        finally:
            await reader.close()

    got, state = asyncio.run(first())
    assert got == a[:len(got)] and 100 <= len(got) < 500
    assert not state[0]["done"] and 0 < state[0]["offset"] < state[0]["end"]

    async def rest() -> list[Any]:
        reader = await _reader(params, state, batch_size=16)
        out: list[Any] = []
        try:
            while len(out) < 500 - len(got):
                batch = reader.poll()
                assert batch is not None
                if batch:
                    out.extend(batch)
                else:
                    await asyncio.wait_for(reader.wait_available(), 5)
        finally:
            await reader.close()
        return out

    assert asyncio.run(rest()) == a[len(got):]
