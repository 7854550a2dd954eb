"""The file source's reader and splits: every line exactly once, decoding edge cases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.connectors.files import FileSource
from streamlet.errors import DecodeError
from streamlet.testing.sources import TestingSourceContext


def _read_all(path: Path, fmt: str, parallelism: int = 1, batch_size: int = 7) -> list[list[Any]]:
    params = FileSource.validate({"path": str(path), "format": fmt}, "test: sources.src", str(path.parent))
    splits = FileSource.enumerate_splits(params, parallelism)

    async def run(sub: int) -> list[Any]:
        mine = [s for i, s in enumerate(splits) if i % parallelism == sub]
        ctx = TestingSourceContext(sub, parallelism, batch_size, node_id="src")
        reader = FileSource.create_reader(params, mine, ctx)
        out: list[Any] = []
        try:
            while (batch := await reader.read()) is not None:
                assert batch, "a reader never returns an empty batch"
                out.extend(batch)
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
    assert isinstance(result.error, DecodeError) and result.error.node_id == "events"
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
