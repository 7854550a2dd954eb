"""Idle splits through the runtime, at parallelism 1, 2 and 4 (issue 10).

A source with four splits (``s0``..``s3``, read together as Kafka partitions are) feeds a keyed
1 s tumbling event-time window; the test drives each split (:class:`~tests.support.connectors.ScriptedSource`)
and the MiniCluster's clock (a ManualClock: watermarks every 100 ms, ``idle_timeout: 1s``), one
watermark interval per step, waiting after each step until the sources read what it pushed.
At parallelism 1 and 2 the silent split shares a source subtask with active ones (the source
leaves it out of its watermark); at 4 it is a whole source subtask, whose channel the window
subtasks leave out (IDLE status).

1. every split reaches 5 s: the windows up to 5 s fire;
2. ``s3`` falls silent, the others go on to 10 s: the windows up to 10 s fire, and not before
   ``s3`` was silent for ``idle_timeout`` of the (manual) clock;
3. ``s3`` sends again (10-10.5 s) and counts again: once the source counts it, the others jump
   to 15 s while ``s3`` creeps to 12 s; the windows fire up to 12 s only, and hold every record
   ``s3`` sent meanwhile (none is late): had ``s3`` not counted, the watermark would have jumped
   to 15 s, making them late;
4. every split ends: the final watermark fires the rest.

Window outputs are compared, complete, with windows computed here from the pushed records.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.runtime.minicluster import MiniCluster
from tests.support.checkpoints import until
from tests.support.connectors import COLLECTED, SCRIPT
from tests.support.pipelines import canonical, plan_file, write_pipeline

INTERVAL = 0.1  # pipeline.auto-watermark-interval, seconds: one step of the manual clock
IDLE_MS = 1000
SPLITS = [f"s{i}" for i in range(4)]


def windows(records: list[dict[str, Any]], up_to: int | None = None) -> list[dict[str, Any]]:
    """The 1 s windows per user of ``records`` that end at ``up_to`` or earlier (None: all)."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for r in records:
        groups[(r["user"], r["ts"] - r["ts"] % 1000)].append(r["value"])
    return [{"user": u, "window_start": s, "window_end": s + 1000, "n": len(vs), "total": sum(vs)}
            for (u, s), vs in groups.items() if up_to is None or s + 1000 <= up_to]


class Feeder:
    """Pushes records to the splits and steps the clock; keeps every record pushed."""

    def __init__(self, clock: ManualClock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.pushed: list[dict[str, Any]] = []
        #: the clock time of the last push to each split
        self.last_push: dict[str, int] = {}

    def _push(self, split: str, stamps: list[int]) -> None:
        recs = [{"split": split, "user": f"u{self.rng.randrange(6)}", "value": self.rng.randrange(100), "ts": t}
                for t in stamps]
        self.pushed += recs
        self.last_push[split] = self.clock.time_ms()
        SCRIPT.push(split, recs)

    def ramp(self, split: str, lo: int, hi: int, n: int = 40) -> None:
        """``n`` records with increasing timestamps in ``[lo, hi)``, then one at ``hi``."""
        self._push(split, sorted(self.rng.randrange(lo, hi) for _ in range(n)) + [hi])

    def keep_alive(self, split: str, ts: int) -> None:
        """One record at ``ts`` (the split's newest timestamp: its watermark stays)."""
        self._push(split, [ts])

    async def step(self, feed: Callable[[int], None], n: int) -> None:
        """Push step ``n``'s records, advance the clock one interval, wait until they were read."""
        feed(n)
        await self.clock.advance(INTERVAL)
        await until(SCRIPT.drained, SCRIPT.changed, "the sources to read the records pushed")

    async def step_until(self, cond: Callable[[], bool], feed: Callable[[int], None], what: str,
                         max_steps: int = 60) -> int:
        """Step until ``cond()`` holds; returns the number of steps taken."""
        for n in range(max_steps):
            if cond():
                return n
            await self.step(feed, n)
        assert cond(), f"{what}: not after {max_steps} steps ({max_steps * INTERVAL:g}s of the clock)"
        return max_steps


def _output() -> list[bytes]:
    return canonical(COLLECTED.records)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_an_idle_split_does_not_hold_the_watermark_back_and_counts_again_when_it_resumes(
        tmp_path: Path, p: int, scripted: None) -> None:
    graph = plan_file(write_pipeline(tmp_path, f"""
        sources:
          events: {{type: scripted, splits: 4, timestamp: ts, watermark: {{idle_timeout: {IDLE_MS}ms}}}}
        transforms:
          w:
            input: events
            key_by: user
            window: {{type: tumbling, size: 1s}}
            aggregate: {{n: count, total: {{sum: value}}}}
        sinks: {{out: {{input: w, type: collect}}}}
    """), p)

    async def main() -> None:
        clock = ManualClock()
        SCRIPT.changed = asyncio.Event()
        COLLECTED.changed = asyncio.Event()
        conf = cfg.load(overrides={"log.level": "WARNING", "pipeline.auto-watermark-interval": f"{int(INTERVAL * 1000)}ms",
                                   "execution.buffer-timeout": "10ms"}, env={})
        f = Feeder(clock, seed=p)
        async with MiniCluster(conf, slots=p, clock=clock) as cluster:
            job = await cluster.submit(graph)
            executor = cluster.task_executor
            assert executor is not None

            # 1. every split reaches 5 s
            for s in SPLITS:
                f.ramp(s, 0, 5000)
            await f.step_until(lambda: _output() == canonical(windows(f.pushed, 5000)),
                               lambda n: [f.keep_alive(s, 5000) for s in SPLITS], "the windows up to 5 s")

            # 2. s3 falls silent; the others go on to 10 s, 1 s of event time per step, then stay
            silent_since = f.last_push["s3"]
            first_fired: list[int] = []

            def phase2(n: int) -> None:
                for s in SPLITS[:3]:
                    if n < 5:
                        f.ramp(s, 5000 + n * 1000, 6000 + n * 1000, 10)
                    else:
                        f.keep_alive(s, 10_000)

            def fired_to_10s() -> bool:
                if not first_fired and any(r["window_end"] > 5000 for r in COLLECTED.records):
                    first_fired.append(clock.time_ms())
                return _output() == canonical(windows(f.pushed, 10_000))

            await f.step_until(fired_to_10s, phase2, "the windows up to 10 s with s3 idle")
            assert first_fired[0] >= silent_since + IDLE_MS, "windows fired before s3 was idle for idle_timeout"

            # 3. s3 sends again, from 10 s (ahead of the watermark, 9,999): wait until its source counts it
            f.ramp("s3", 10_000, 10_500, 10)
            source = next(t for t in executor.tasks(job) if t.chain.reader is not None and "s3" in t.chain.reader.splits)
            window_tasks = [t for t in executor.tasks(job) if t.gate is not None]

            def counted_again() -> bool:
                index = source._split_index["s3"]
                tracker = source._split_tracker
                return (not tracker.is_idle(index) and tracker.watermark_of(index) >= 10_499
                        and not source._idle_out  # (p=4) the source subtask told the windows it is active ...
                        and all(t.gate.statistics()["buffered"] == 0 for t in window_tasks))  # ... and they read it

            # no records meanwhile (the window subtasks' inputs drain); a step or two, far below idle_timeout
            await f.step_until(counted_again, lambda n: None, "s3 to count again", max_steps=5)
            # the others jump to 15 s; s3 creeps to 12 s, 500 ms per step, then stays
            for s in SPLITS[:3]:
                f.ramp(s, 10_000, 15_000)

            def phase3(n: int) -> None:
                for s in SPLITS[:3]:
                    f.keep_alive(s, 15_000)
                if n < 3:
                    f.ramp("s3", 10_500 + n * 500, 11_000 + n * 500, 10)
                else:
                    f.keep_alive("s3", 12_000)

            steps = await f.step_until(lambda: _output() == canonical(windows(f.pushed, 12_000)), phase3,
                                       "the windows up to 12 s")
            for n in range(steps, steps + 5):  # s3 active at 12 s: nothing later fires
                await f.step(phase3, n)
            assert _output() == canonical(windows(f.pushed, 12_000))

            # 4. every split ends: the final watermark fires every window
            for s in SPLITS:
                SCRIPT.close(s)
            done = asyncio.ensure_future(cluster.dispatcher.wait_terminal(job))
            try:
                await f.step_until(done.done, lambda n: None, "the job to finish")
            finally:
                if not done.done():
                    done.cancel()
            assert done.result().state == "FINISHED"
        assert _output() == canonical(windows(f.pushed))

    asyncio.run(main())
