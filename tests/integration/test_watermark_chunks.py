"""A watermark that fires very many windows does not hold the event loop (issue 10).

The final watermark of a bounded input fires every open window.  The window subtask sends what
it fires in chunks of at most ``FIRE_CHUNK`` windows and lets the loop run between two chunks.
Observed through the runtime (YAML -> planner -> MiniCluster tasks on one loop), by an event, not
by timing: a user aggregate counts the window results it computes (its ``result`` runs as each
window fires) and signals the first one; a coroutine on the same loop then records that count
each time it gets to run, until every window fired.  If the loop were held for the whole firing
it would run only after the last result.  The complete output is compared with windows computed
here from the input alone, and rows leave in timestamp order (as one synchronous firing emits them).
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest

from streamlet import config as cfg
from streamlet.operators.base import FIRE_CHUNK
from streamlet.runtime.minicluster import execute_async
from streamlet.udf import search_path
from tests.support.pipelines import canonical, plan_file, read_output, write_jsonl, write_pipeline

PROBE = """
    STATE = {"results": 0}
    #: set by the test: an asyncio.Event, set at the first window result
    FIRING = None

    class Total:
        # a user aggregate (sum); result() runs once per window as it fires
        def create(self): return 0
        def add(self, acc, v): return acc + v
        def merge(self, acc, other): return acc + other
        def result(self, acc):
            STATE["results"] += 1
            FIRING.set()
            return acc
"""


def reference(records: list[dict[str, Any]], size: int, slide: int) -> list[dict[str, Any]]:
    """Every (user, window) with records: count and sum of value."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in records:
        last = r["ts"] - r["ts"] % slide
        for start in range(last, r["ts"] - size, -slide):
            groups[(r["user"], start)].append(r["value"])
    return [{"user": u, "window_start": s, "window_end": s + size, "n": len(vs), "total": sum(vs)}
            for (u, s), vs in groups.items()]


@pytest.mark.parametrize("kind", ["tumbling", "sliding"])
def test_the_final_watermark_fires_in_chunks_and_the_loop_runs_between_them(
        tmp_path: Path, kind: str, udf_module: Callable[[str], str]) -> None:
    rng = random.Random(7)
    # 3,000 users over 6 s of event time: about 18,000 tumbling 1 s windows, or about 40,000
    # sliding ones (2 s every 500 ms); the watermark lags an hour, so all of them fire at the end
    records = [{"user": f"u{rng.randrange(3000)}", "value": rng.randrange(100),
                "ts": 1_700_000_000_000 + rng.randrange(6000)} for _ in range(20_000)]
    write_jsonl(tmp_path / "events.jsonl", records)
    size, slide = (1000, 1000) if kind == "tumbling" else (2000, 500)
    window = "{type: tumbling, size: 1s}" if kind == "tumbling" else "{type: sliding, size: 2s, slide: 500ms}"
    mod_name = udf_module(PROBE)
    path = write_pipeline(tmp_path, f"""
        batch_size: 200
        sources:
          events: {{type: file, path: events.jsonl, timestamp: ts, watermark: {{max_out_of_orderness: 1h}}}}
        transforms:
          w:
            input: events
            key_by: user
            window: {window}
            aggregate: {{n: count, total: {{"{mod_name}:Total": value}}}}
        sinks: {{out: {{input: w, type: file, path: out}}}}
    """)
    graph = plan_file(path, 1)
    with search_path([str(tmp_path)]):
        probe = importlib.import_module(mod_name)  # the module object the job's tasks import too
    expected = reference(records, size, slide)
    total = len(expected)
    assert total > 10 * FIRE_CHUNK

    async def main() -> tuple[Any, list[int]]:
        probe.FIRING = asyncio.Event()
        done = asyncio.Event()
        seen: list[int] = []

        async def observe() -> None:
            await probe.FIRING.wait()
            while probe.STATE["results"] < total and not done.is_set():
                seen.append(probe.STATE["results"])
                await asyncio.sleep(0)

        conf = cfg.load(overrides={"pipeline.auto-watermark-interval": "5ms"}, env={})
        async with asyncio.TaskGroup() as tg:
            observer = tg.create_task(observe())
            try:
                result = await execute_async(graph, conf)
            finally:
                done.set()
                probe.FIRING.set()  # the observer ends also when the job failed before any window fired
            await observer
        return result, seen

    result, seen = asyncio.run(main())
    assert result.state == "FINISHED", f"job ended {result.state}: {result.error!r}"
    assert probe.STATE["results"] == total, "each window fired once, all of them at the final watermark"
    # the coroutine ran while the firing was under way (from a few chunks in: waking it takes a
    # few turns of the loop), then at least once per FIRE_CHUNK windows
    counts = sorted(set(seen) | {total})
    assert counts[0] <= 4 * FIRE_CHUNK
    gaps = [b - a for a, b in zip(counts, counts[1:])]
    assert max(gaps) <= FIRE_CHUNK, f"{max(gaps)} windows fired without the loop running anything else"
    assert len(counts) >= total // FIRE_CHUNK - 4
    # the output: every window, and in timestamp order (window ends never decrease)
    got = read_output(tmp_path / "out")
    assert canonical(got) == canonical(expected)
    ends = [r["window_end"] for r in got]
    assert ends == sorted(ends)
