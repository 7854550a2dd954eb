"""The file sink under the runtime's checkpoints: a barrier makes its file pending (hidden), the
completion makes it visible, and the end of input commits the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.connectors.file_sink import FileSink, FileWriter
from streamlet.connectors.files import list_files
from streamlet.rpc.messages import TriggerCheckpoint
from streamlet.runtime.minicluster import MiniCluster
from tests.support.checkpoints import RecordingCheckpoints, until
from tests.support.pipelines import plan_file, write_pipeline

#: set after every write / commit of a :class:`_SignalingWriter` (created on the test's loop)
WRITTEN: list[asyncio.Event] = []
COMMITTED: list[asyncio.Event] = []


class _SignalingWriter(FileWriter):
    """The file sink's writer, telling the test when a write or a commit is done (nothing else changes)."""

    async def write(self, records: list[Any]) -> None:
        await super().write(records)
        for e in WRITTEN:
            e.set()

    async def commit(self, committables: list[Any]) -> None:
        await super().commit(committables)
        for e in COMMITTED:
            e.set()


class SignalingFileSink(FileSink):
    @classmethod
    def create_writer(cls, params: Any, ctx: Any) -> FileWriter:
        return _SignalingWriter(params, ctx)


@pytest.fixture
def signaling_sink(register_connector: Any) -> Iterator[None]:
    register_connector("sink", "signaling-file", f"{__name__}:SignalingFileSink")
    yield
    WRITTEN.clear()
    COMMITTED.clear()


def _visible(out: Path) -> list[Any]:
    return [orjson.loads(line) for f in list_files([str(out)], "*") for line in Path(f).read_bytes().splitlines()]


def test_a_checkpoint_hides_then_commits_the_file_of_a_running_job(tmp_path: Path, signaling_sink: None) -> None:
    out = tmp_path / "out"
    graph = plan_file(write_pipeline(tmp_path, """
        name: paced-to-files
        sources: {slow: {type: datagen, rate: 1, fields: {id: {kind: sequence}}}}
        sinks: {out: {input: slow, type: signaling-file, path: out, partition: rebalance}}
    """))

    async def main() -> None:
        clock = ManualClock()
        committed, written = asyncio.Event(), asyncio.Event()
        COMMITTED.append(committed)
        WRITTEN.append(written)
        conf = cfg.load(overrides={"log.level": "WARNING"}, env={})
        async with MiniCluster(conf, slots=1, clock=clock) as cluster:
            job = await cluster.submit(graph)
            executor = cluster.task_executor
            assert executor is not None
            acks = RecordingCheckpoints()
            # the first row is due at once; the next one only after a second of (manual) time
            await until(lambda: written.is_set(), written, "the first row at the sink")
            for task in executor.tasks(job):
                task.checkpoints = acks
            assert executor.trigger_checkpoint(TriggerCheckpoint(job, 1, clock.time_ms(), "unused://", "chk-1")) == 1
            await until(lambda: len(acks.acks) == 2, acks.changed, "both tasks to take checkpoint 1")
            sink_ack = next(a for _, a in acks.acks if a.committables)
            assert sink_ack.committables == [{"pending": ".part-0-1-0.jsonl.pending", "final": "part-0-1-0.jsonl"}]
            assert _visible(out) == [] and (out / ".part-0-1-0.jsonl.pending").exists()

            executor.notify_checkpoint_complete(job, 1)
            await until(lambda: (out / "part-0-1-0.jsonl").exists(), committed, "the commit of checkpoint 1")
            assert _visible(out) == [{"id": 0}]
            cluster.cancel(job)
            assert (await cluster.dispatcher.wait_terminal(job)).state == "CANCELED"
        # what the cancelled job wrote after the checkpoint stays hidden
        assert _visible(out) == [{"id": 0}]

    asyncio.run(main())
