"""The file sink's two-phase commit, driven through the writer API on real files.

A "crash" drops a writer without committing (its file handle closed, as the task does on any
failure); a restore is a new writer given the snapshot and the committables its checkpoint
recorded.  What a reader sees is what ``list_files`` (the file source's listing) returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streamlet.clock import ManualClock
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.file_sink import FileSink
from streamlet.connectors.files import list_files
from streamlet.errors import PipelineDefinitionError


def _params(out: Path, **kw: Any) -> dict[str, Any]:
    return FileSink.validate({"path": str(out), **kw}, "sinks.out", str(out.parent))


def _writer(params: dict[str, Any], sub: int = 0, parallelism: int = 1, restored: bool = False,
            clock: Any = None) -> Any:
    ctx = SimpleNamespace(subtask_index=sub, parallelism=parallelism, restored=restored, clock=clock or ManualClock())
    return FileSink.create_writer(params, ctx)


def _visible(out: Path) -> list[Any]:
    """Every record a reader of the directory sees, in file name order."""
    return [orjson.loads(line) for f in list_files([str(out)], "*") for line in Path(f).read_bytes().splitlines()]


def _names(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def _recs(lo: int, hi: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(lo, hi)]


def test_a_bounded_job_commits_at_the_end_of_input(tmp_path: Path) -> None:
    out = tmp_path / "out"

    async def go() -> None:
        w = _writer(_params(out), sub=2, parallelism=3)
        await w.open()
        for lo in range(0, 1000, 100):
            await w.write(_recs(lo, lo + 100))
        assert _visible(out) == []  # nothing visible before the end
        await w.finish()
        await w.close()
    asyncio.run(go())
    assert _names(out) == ["part-2-1-0.jsonl"]
    assert _visible(out) == _recs(0, 1000)


def test_prepare_hides_commit_shows_and_a_crash_loses_only_what_no_checkpoint_completed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = _params(out)

    async def go() -> None:
        w = _writer(params)
        await w.open()
        await w.write(_recs(0, 10))
        c1 = await w.prepare_commit(1)
        assert c1 == [{"pending": ".part-0-1-0.jsonl.pending", "final": "part-0-1-0.jsonl"}]
        assert _visible(out) == [] and (out / c1[0]["pending"]).exists()
        await w.commit(c1)  # checkpoint 1 complete
        assert _visible(out) == _recs(0, 10)
        await w.write(_recs(10, 20))
        c2 = await w.prepare_commit(2)
        state2 = orjson.loads(orjson.dumps(w.snapshot_state(2)))
        await w.write(_recs(20, 30))  # after checkpoint 2: in progress when the writer dies
        await w.close()  # crash: checkpoint 2 completed at the JobManager, but its commit never ran

        # restore from checkpoint 2: a new writer, its state, then the recorded committables again
        again = _writer(params, restored=True)
        again.restore_state(state2)
        await again.open()
        await again.commit(orjson.loads(orjson.dumps(c2)))
        assert _visible(out) == _recs(0, 20)  # exactly the committed data: 20..29 is not there
        await again.commit(c2)  # committing twice is harmless
        await again.commit(c1)  # and so is an old, already committed checkpoint
        assert _visible(out) == _recs(0, 20)
        # the replayed records after checkpoint 2 are written once more, under a new checkpoint
        await again.write(_recs(20, 30))
        await again.commit(await again.prepare_commit(3))
        await again.close()
    asyncio.run(go())
    assert _visible(out) == _recs(0, 30)
    assert _names(out) == ["part-0-1-0.jsonl", "part-0-2-0.jsonl", "part-0-3-0.jsonl"]  # no leftovers


def test_a_restore_from_an_earlier_checkpoint_reuses_its_ids_without_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = _params(out)

    async def go() -> None:
        w = _writer(params)
        await w.open()
        await w.write(_recs(0, 5))
        c1 = await w.prepare_commit(1)
        state1 = w.snapshot_state(1)
        await w.commit(c1)
        await w.write(_recs(5, 9))
        await w.prepare_commit(2)  # checkpoint 2 never completes: its pending file stays hidden
        await w.close()

        again = _writer(params, restored=True)
        again.restore_state(state1)
        await again.open()
        await again.commit(c1)
        assert _visible(out) == _recs(0, 5)
        await again.write(_recs(5, 9))  # the replay
        await again.commit(await again.prepare_commit(2))  # the same checkpoint id again
        await again.close()
    asyncio.run(go())
    assert _visible(out) == _recs(0, 9)


def test_committables_of_other_subtasks_commit_on_any_writer_after_a_rescale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = _params(out)

    async def go() -> None:
        recorded, states = [], []
        for sub in range(3):
            w = _writer(params, sub=sub, parallelism=3)
            await w.open()
            await w.write(_recs(100 * sub, 100 * sub + 7))
            recorded += await w.prepare_commit(4)
            states.append(w.snapshot_state(4))
            await w.close()
        # checkpoint 4 completes, then the job is restored at parallelism 1
        one = _writer(params, sub=0, parallelism=1, restored=True)
        one.restore_state(states)
        await one.open()
        await one.commit(recorded)
        await one.write(_recs(1000, 1003))
        await one.commit(await one.prepare_commit(5))
        await one.close()
    asyncio.run(go())
    assert sorted(r["n"] for r in _visible(out)) == [i for s in range(3) for i in range(100 * s, 100 * s + 7)] + \
        [1000, 1001, 1002]


def test_a_fresh_run_replaces_its_subtask_files_and_a_restored_one_keeps_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    earlier = ["part-0.jsonl", "part-0-1-0.jsonl", ".part-0-2-0.jsonl.pending", ".part-0-abc-0.jsonl.inprogress",
               "part-1-1-0.jsonl", "part-3-7-2.csv", "notes.txt", "part-x.jsonl"]
    for name in earlier:
        (out / name).write_text('{"old": 1}\n')

    async def go(restored: bool) -> None:
        w = _writer(_params(out), sub=0, parallelism=2, restored=restored)
        await w.open()
        await w.close()
    asyncio.run(go(restored=True))
    # restored: only the in-progress leftover of subtask 0 goes (no checkpoint can name it)
    assert _names(out) == sorted(set(earlier) - {".part-0-abc-0.jsonl.inprogress"})
    asyncio.run(go(restored=False))
    # fresh: subtask 0's files and those of subtasks >= the parallelism go; subtask 1 and other files stay
    assert _names(out) == ["notes.txt", "part-1-1-0.jsonl", "part-x.jsonl"]


def test_a_pending_file_that_is_gone_or_would_replace_committed_output_fails_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = _params(out)

    async def go() -> tuple[Any, Any]:
        w = _writer(params)
        await w.open()
        await w.write(_recs(0, 3))
        c = await w.prepare_commit(1)
        (out / "part-0-1-0.jsonl").write_text("{}\n")  # e.g. later output of a newer run
        with pytest.raises(ConnectorError) as replace:
            await w.commit(c)
        (out / "part-0-1-0.jsonl").unlink()
        (out / ".part-0-1-0.jsonl.pending").unlink()
        with pytest.raises(ConnectorError) as gone:
            await w.commit(c)
        await w.close()
        return replace.value, gone.value
    replace, gone = asyncio.run(go())
    assert "would replace the committed file 'part-0-1-0.jsonl'" in str(replace) and "new directory" in str(replace)
    assert "pending file '.part-0-1-0.jsonl.pending'" in str(gone) and "lost" in str(gone)


def test_nothing_written_prepares_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"

    async def go() -> list[Any]:
        w = _writer(_params(out))
        await w.open()
        c = await w.prepare_commit(1)
        await w.finish()
        await w.close()
        return c
    assert asyncio.run(go()) == []
    assert _names(out) == []


def test_the_end_of_input_commits_checkpoints_not_yet_complete_and_the_rest(tmp_path: Path) -> None:
    out = tmp_path / "out"

    async def go() -> None:
        w = _writer(_params(out))
        await w.open()
        await w.write(_recs(0, 4))
        await w.commit(await w.prepare_commit(1))
        await w.write(_recs(4, 8))
        await w.prepare_commit(2)  # its completion would come after the task finished
        await w.write(_recs(8, 12))
        await w.finish()
        await w.close()
    asyncio.run(go())
    assert _visible(out) == _recs(0, 12)
    assert _names(out) == ["part-0-1-0.jsonl", "part-0-2-0.jsonl", "part-0-3-0.jsonl"]


def test_rolling_by_size_cuts_files_in_order(tmp_path: Path) -> None:
    out = tmp_path / "out"
    params = _params(out, rolling={"size": "1KiB"})
    assert params["rolling"] == {"size": 1024, "interval": None}

    async def go() -> None:
        w = _writer(params)
        await w.open()
        for lo in range(0, 600, 20):
            await w.write(_recs(lo, lo + 20))  # ~200 bytes a batch
        await w.commit(await w.prepare_commit(1))
        await w.close()
    asyncio.run(go())
    files = list_files([str(out)], "*")
    assert len(files) >= 6
    assert all(Path(f).stat().st_size < 1024 + 300 for f in files)  # a file rolls once a batch reaches the size
    parts = sorted(files, key=lambda f: int(Path(f).stem.split("-")[3]))
    assert [orjson.loads(line) for f in parts for line in Path(f).read_bytes().splitlines()] == _recs(0, 600)


def test_rolling_by_interval_on_the_clock_and_a_csv_header_in_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    clock = ManualClock()
    params = _params(out, format="csv", rolling={"interval": "10s"})
    assert params["rolling"]["interval"] == "10.0s"
    assert FileSink.validate(params, "sinks.out", str(tmp_path)) == params  # normalized form validates again

    async def go() -> None:
        w = _writer(params, clock=clock)
        await w.open()
        await w.write([{"a": 1, "b": "x"}])
        await clock.advance(9)
        await w.write([{"a": 2, "b": "y"}])  # 9 s: same file
        await clock.advance(1)
        await w.write([{"a": 3, "b": "z"}])  # 10 s after the first record: this file is rolled
        await w.write([{"a": 4, "b": "w"}])
        await w.finish()
        await w.close()
    asyncio.run(go())
    assert [Path(f).read_text() for f in list_files([str(out)], "*")] == ["a,b\n1,x\n2,y\n3,z\n", "a,b\n4,w\n"]


@pytest.mark.parametrize("rolling, where, needle", [
    ({"size": "big"}, "sinks.out.rolling.size", "expected a size like '128MB'"),
    ({"size": 0}, "sinks.out.rolling.size", "expected a size"),
    ({"interval": "soon"}, "sinks.out.rolling.interval", "expected a duration"),
    ({"sise": "1MB"}, "sinks.out.rolling.sise", "did you mean 'size'"),
    ("1MB", "sinks.out.rolling", "expected a map"),
])
def test_rolling_errors_name_the_key(tmp_path: Path, rolling: Any, where: str, needle: str) -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        _params(tmp_path / "out", rolling=rolling)
    assert e.value.where == where and needle in str(e.value)


def test_a_rerun_of_a_pipeline_replaces_its_output(tmp_path: Path) -> None:
    from tests.support.pipelines import plan_file, run_graph, write_jsonl, write_pipeline

    write_jsonl(tmp_path / "in.jsonl", _recs(0, 500))
    pipeline = write_pipeline(tmp_path, """
        parallelism: 2
        sources: {src: {type: file, path: in.jsonl}}
        sinks: {out: {input: src, type: file, path: out}}
    """)
    for _ in range(2):
        assert run_graph(plan_file(pipeline)).state == "FINISHED"
        assert sorted(r["n"] for r in _visible(tmp_path / "out")) == list(range(500))  # once, not twice
        assert _names(tmp_path / "out") == ["part-0-1-0.jsonl", "part-1-1-0.jsonl"]
