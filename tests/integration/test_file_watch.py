"""A file source watching a directory (``watch:``) in a running job: files added while it runs are
discovered by the JobMaster's source coordinator, handed to the source subtasks (``AddSplits``
through the TaskManager's gateway and the task's mailbox) and read exactly once.

The job lists the directory every 50 ms of real time; the test waits for the records (an event
set by the sink), never for time, and many discoveries pass while it runs: one that found a file
again would show as a duplicate.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from streamlet import config as cfg
from streamlet.runtime.minicluster import MiniCluster
from tests.support.connectors import COLLECTED
from tests.support.pipelines import plan_file, write_pipeline


@pytest.fixture
def collect_sink(register_connector) -> Iterator[None]:
    register_connector("sink", "collect", "tests.support.connectors:CollectSink")
    COLLECTED.reset()
    yield
    COLLECTED.reset()


def _drop(directory: Path, name: str, recs: list[Any]) -> None:
    """A producer's file: written under a hidden name, then renamed into the watched directory."""
    tmp = directory / f".{name}.tmp"
    tmp.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    tmp.rename(directory / name)


async def _until_count(n: int, timeout: float = 10.0) -> None:
    assert COLLECTED.changed is not None
    async with asyncio.timeout(timeout):
        while len(COLLECTED.records) < n:
            COLLECTED.changed.clear()
            if len(COLLECTED.records) >= n:
                return
            await COLLECTED.changed.wait()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_files_added_while_the_job_runs_are_read_exactly_once(tmp_path: Path, collect_sink: None,
                                                               parallelism: int) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    files = {f"f{k}.jsonl": [{"f": k, "i": i} for i in range(40 * (k + 1))] for k in range(5)}
    _drop(inbox, "f0.jsonl", files["f0.jsonl"])
    graph = plan_file(write_pipeline(tmp_path, """
        name: watched
        sources: {logs: {type: file, path: in, watch: 50ms}}
        sinks: {out: {input: logs, type: collect}}
    """), parallelism=parallelism)

    async def main() -> None:
        COLLECTED.changed = asyncio.Event()
        conf = cfg.load(overrides={"log.level": "WARNING"}, env={})
        async with MiniCluster(conf, slots=parallelism) as cluster:
            job = await cluster.submit(graph)
            await _until_count(len(files["f0.jsonl"]))  # the file present at the start
            expected = list(files["f0.jsonl"])
            for names in (["f1.jsonl", "f2.jsonl"], ["f3.jsonl"], ["f4.jsonl"]):
                for name in names:
                    _drop(inbox, name, files[name])
                    expected += files[name]
                (inbox / "_SUCCESS").write_bytes(b"")  # skipped: starts with _
                await _until_count(len(expected))
            assert cluster.dispatcher.job(job).state == "RUNNING"  # unbounded: it goes on
            cluster.cancel(job)
            assert (await cluster.dispatcher.wait_terminal(job)).state == "CANCELED"
        key = lambda r: (r["f"], r["i"])  # noqa: E731
        assert sorted(COLLECTED.records, key=key) == sorted(expected, key=key)  # each record once

    asyncio.run(main())


def test_new_files_reach_subtasks_on_two_taskmanagers_over_rpc(tmp_path: Path, collect_sink: None) -> None:
    from streamlet.testing.cluster import InProcessCluster

    inbox = tmp_path / "in"
    inbox.mkdir()
    text = """
        name: watched-rpc
        parallelism: 2
        sources: {logs: {type: file, path: in, watch: 50ms, format: jsonl}}
        sinks: {out: {input: logs, type: collect}}
    """

    async def main() -> None:
        COLLECTED.changed = asyncio.Event()
        async with InProcessCluster(taskmanagers=2, slots=1) as cluster:
            job = await cluster.submit_yaml(text, base_dir=str(tmp_path))
            await cluster.wait(job, states=("RUNNING",))
            expected: list[Any] = []
            for k in range(4):  # round-robin: both subtasks, on both TaskManagers, get files
                recs = [{"f": k, "i": i} for i in range(25)]
                _drop(inbox, f"f{k}.jsonl", recs)
                expected += recs
                await _until_count(len(expected))
            held = []
            for tm in cluster.taskmanagers:
                assert tm.executor is not None
                for task in tm.executor.tasks(job):
                    if task.chain.reader is not None:
                        held.append(sorted(Path(s["path"]).name for s in task.chain.reader.snapshot_state(0)))
            assert held == [["f0.jsonl", "f2.jsonl"], ["f1.jsonl", "f3.jsonl"]] or \
                held == [["f1.jsonl", "f3.jsonl"], ["f0.jsonl", "f2.jsonl"]]
            cluster.dispatcher.cancel(job)
            assert (await cluster.wait(job)).state == "CANCELED"
        key = lambda r: (r["f"], r["i"])  # noqa: E731
        assert sorted(COLLECTED.records, key=key) == sorted(expected, key=key)

    asyncio.run(main())
