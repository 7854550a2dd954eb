"""A running keyed aggregate snapshotted mid-input through its state backend, restored at another
parallelism by key-group ranges, finishes the input with exactly the output of a straight run."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from streamlet.graph.operators import AggregateSpec, KeySpec, ReduceSpec
from streamlet.keys import KeyGroupRange, subtask_for_key
from streamlet.operators.aggregate import KeyedAggregateOperator, KeyedReduceOperator
from streamlet.operators.base import RuntimeContext
from streamlet.state.factory import create_backend
from streamlet.state.storage.filesystem import FileSystemCheckpointStorage

MAXP = 128
RECORDS = [{"user": f"u{(i * 7) % 41}", "v": (i * 13) % 17 - 5} for i in range(4000)]


def _expected_rows() -> dict[str, list[dict[str, Any]]]:
    """Per key, the running rows a straight run emits (computed here, in plain Python)."""
    n: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    avg: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in RECORDS:
        k = r["user"]
        n[k] += 1
        total[k] += r["v"]
        avg[k][0] += r["v"]
        avg[k][1] += 1
        out[k].append({"user": k, "n": n[k], "total": total[k], "mean": avg[k][0] / avg[k][1]})
    return out


class _Subtask:
    def __init__(self, index: int, parallelism: int, backend_kind: str, tmp: Path) -> None:
        self.range = KeyGroupRange.for_subtask(index, parallelism, MAXP)
        self.backend = create_backend(backend_kind, self.range, MAXP,
                                      options={"local_dir": str(tmp)} if backend_kind == "rocksdb" else None)
        ctx = RuntimeContext("j", "agg", index, parallelism, MAXP, "streaming", self.backend)
        spec = AggregateSpec("agg", KeySpec(("user",)),
                             (("n", "count", None), ("total", "sum", "v"), ("mean", "avg", "v")))
        self.op = KeyedAggregateOperator(spec, ctx)

    async def open(self, handles: list[dict[str, Any]] | None, storage: Any) -> None:
        if handles is not None:
            await self.backend.restore(handles, storage)
        self.op.initialize_state(None)
        self.op.open()


async def _run_phase(subtasks: list[_Subtask], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Route records to the subtask owning their key group (as the hash partitioner does), in batches."""
    p = len(subtasks)
    out: list[dict[str, Any]] = []
    for lo in range(0, len(records), 256):
        per: list[list[dict[str, Any]]] = [[] for _ in range(p)]
        for r in records[lo:lo + 256]:
            per[subtask_for_key(r["user"], p, MAXP)].append(r)
        for st, batch in zip(subtasks, per):
            if batch:
                rows, _ = st.op.process(batch, None)
                out.extend(rows)
                await st.backend.maintain()
    return out


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@pytest.mark.parametrize("before, after", [(2, 3), (3, 1), (1, 4)])
def test_snapshot_mid_input_then_restore_at_another_parallelism(tmp_path: Path, backend: str, before: int,
                                                                after: int) -> None:
    cut = 1500

    async def main() -> list[dict[str, Any]]:
        storage = FileSystemCheckpointStorage(tmp_path / "chk")
        first = [_Subtask(i, before, backend, tmp_path / f"a{i}") for i in range(before)]
        for st in first:
            await st.open(None, storage)
        out = await _run_phase(first, RECORDS[:cut])
        handles = []
        for st in first:
            snap = await st.backend.snapshot(1)
            handles.append(await snap.persist(storage))
            await st.backend.close()
        second = [_Subtask(i, after, backend, tmp_path / f"b{i}") for i in range(after)]
        for st in second:
            await st.open(handles, storage)
        out += await _run_phase(second, RECORDS[cut:])
        for st in second:
            await st.backend.close()
        return out

    got: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in asyncio.run(main()):
        got[row["user"]].append(row)
    # every key's rows, in order, equal a straight run's: nothing lost or counted twice at the cut
    assert dict(got) == _expected_rows()


def test_a_restored_reduce_continues_from_its_snapshot(tmp_path: Path) -> None:
    async def main() -> list[dict[str, Any]]:
        storage = FileSystemCheckpointStorage(tmp_path / "chk")

        def reducer(i: int, p: int) -> tuple[Any, KeyedReduceOperator]:
            b = create_backend("heap", KeyGroupRange.for_subtask(i, p, MAXP), MAXP)
            ctx = RuntimeContext("j", "red", i, p, MAXP, "streaming", b)
            return b, KeyedReduceOperator(ReduceSpec("red", KeySpec(("user",)), "dict(a, v=a['v'] + b['v'])"), ctx)

        b0, op0 = reducer(0, 1)
        op0.open()
        out = op0.process(RECORDS[:100], None)[0]
        handle = await (await b0.snapshot(3)).persist(storage)
        parts = [reducer(i, 2) for i in range(2)]
        for b, op in parts:
            await b.restore([handle], storage)
            op.open()
        for r in RECORDS[100:200]:
            b, op = parts[subtask_for_key(r["user"], 2, MAXP)]
            out += op.process([r], None)[0]
        return out

    rows = asyncio.run(main())
    totals: dict[str, int] = defaultdict(int)
    expected = []
    for r in RECORDS[:200]:
        totals[r["user"]] += r["v"]
        expected.append({"user": r["user"], "v": totals[r["user"]]})
    assert [(r["user"], r["v"]) for r in rows] == [(r["user"], r["v"]) for r in expected]
