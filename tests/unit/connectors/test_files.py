"""The file source's reader and splits: every line exactly once, decoding edge cases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.connectors.files import FileSource
from streamlet.errors import UserFunctionError
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
    with pytest.raises(UserFunctionError) as err:
        _read_all(path, "jsonl")
    assert err.value.node_id == "src"
    assert err.value.record == '{"a": 2}, {"a": 3}'


def test_jsonl_malformed_line_names_source_and_line(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(UserFunctionError, match=r"node 'src'.*not a JSON line.*record '\{\"a\": '"):
        _read_all(path, "jsonl")


def test_text_lines_keep_blank_lines_and_strip_cr(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"one\r\n\r\ntwo\nthree")
    assert _read_all(path, "text")[0] == ["one", "", "two", "three"]


def test_text_that_is_not_utf8_names_the_source(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"fine\nbad \xff\xfe here\n")
    with pytest.raises(UserFunctionError, match="node 'src'.*not UTF-8"):
        _read_all(path, "text")


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
    assert isinstance(result.error, UserFunctionError) and result.error.node_id == "events"
