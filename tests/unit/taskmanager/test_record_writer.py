"""RecordWriter batching: batches are sent when full and never hold more than ``batch_size``
records, whatever size of output the chain hands over (a window firing hands over many)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamlet.metrics.registry import MetricGroup, TaskIOMetrics
from streamlet.runtime.taskmanager.network import partitioners
from streamlet.runtime.taskmanager.network.elements import RecordBatch
from streamlet.runtime.taskmanager.task import RecordWriter


class Recording:
    """An output channel that keeps what it is given (always has space)."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def has_space(self) -> bool:
        return True

    async def put(self, element: Any) -> None:
        self.got.append(element)


def writer(batch_size: int) -> tuple[RecordWriter, Recording]:
    out = Recording()
    w = RecordWriter([out], partitioners.build("forward", 1, None, "n", 128), batch_size,
                     TaskIOMetrics(MetricGroup({})), node_id="n")
    return w, out


def sizes(out: Recording) -> list[int]:
    return [len(b.records) for b in out.got]


@pytest.mark.parametrize("with_ts", [False, True])
def test_a_large_output_leaves_in_full_batches_and_the_rest_waits(with_ts: bool) -> None:
    async def main() -> None:
        w, out = writer(4)
        recs = list(range(10))
        await w.emit(recs, [r * 10 for r in recs] if with_ts else None)
        assert sizes(out) == [4, 4]
        assert w.has_pending
        await w.flush()
        assert sizes(out) == [4, 4, 2]
        assert [r for b in out.got for r in b.records] == recs
        for b in out.got:
            assert isinstance(b, RecordBatch)
            assert b.timestamps == ([r * 10 for r in b.records] if with_ts else None)
    asyncio.run(main())


@pytest.mark.parametrize("with_ts", [False, True])
def test_pending_records_plus_a_large_output_are_cut_at_the_batch_size(with_ts: bool) -> None:
    async def main() -> None:
        w, out = writer(4)
        await w.emit([0, 1, 2], [0, 10, 20] if with_ts else None)
        assert out.got == []
        await w.emit(list(range(3, 12)), [r * 10 for r in range(3, 12)] if with_ts else None)
        # 3 pending + 9 = 12 records: three full batches, nothing left
        assert sizes(out) == [4, 4, 4]
        assert not w.has_pending
        await w.emit([12, 13, 14, 15, 16], [120, 130, 140, 150, 160] if with_ts else None)
        await w.flush()
        assert sizes(out) == [4, 4, 4, 4, 1]
        assert [r for b in out.got for r in b.records] == list(range(17))
        for b in out.got:
            assert b.timestamps == ([r * 10 for r in b.records] if with_ts else None)
    asyncio.run(main())


def test_an_output_of_exactly_one_batch_is_sent_as_it_is() -> None:
    async def main() -> None:
        w, out = writer(4)
        recs = [1, 2, 3, 4]
        await w.emit(recs, None)
        assert sizes(out) == [4] and not w.has_pending
    asyncio.run(main())
