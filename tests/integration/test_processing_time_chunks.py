"""A processing-time tick that fires very many timers does not hold the event loop (issue 10).

A processing-time window (or a keyed process function's processing-time timers) over many keys
fires every key's timer at the same instant of the task's clock.  The operator's timer handler
returns its output in chunks of at most ``FIRE_CHUNK`` fired timers, and the task sends each
chunk on and lets the loop run before it asks for the next, as a watermark's firing does.

Through the runtime (YAML -> planner -> MiniCluster with a ManualClock): the test pushes records
to a scripted source, waits (by an event the user code sets) until the keyed operator processed
all of them, then moves the clock past the end of the second: the timers fire.  User code counts
what fired and signals the first one; a coroutine on the same loop records that count each time it
gets to run.  If the loop were held for the whole firing it would run only after the last one.
Two rounds (two seconds of the clock) check that the next timer is scheduled once a chunked
firing ends; the complete output is compared with per-key counts computed here from the pushed
records.
"""

from __future__ import annotations

import asyncio
import importlib
import random
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.operators.base import FIRE_CHUNK
from streamlet.runtime.minicluster import MiniCluster
from streamlet.udf import search_path
from tests.support.checkpoints import until
from tests.support.connectors import COLLECTED, SCRIPT
from tests.support.pipelines import canonical, plan_file, write_pipeline

PROBE = """
    import asyncio

    #: adds: records the keyed operator took; fired: timers fired (windows or on_timer calls)
    STATE = {"adds": 0, "fired": 0}
    #: set by the test: asyncio.Events (ADDED when adds reaches TARGET, FIRING at a firing)
    ADDED = None
    FIRING = None
    TARGET = [0]

    def _added():
        STATE["adds"] += 1
        if STATE["adds"] == TARGET[0]:
            ADDED.set()

    def _fired():
        STATE["fired"] += 1
        FIRING.set()

    class Count:
        # a user aggregate: count; result() runs once per window as it fires
        def create(self): return 0
        def add(self, acc, v):
            _added()
            return acc + 1
        def merge(self, acc, other): return acc + other
        def result(self, acc):
            _fired()
            return acc

    class PerSecond:
        # a keyed process function: counts a key's records until the end of the current second
        # of processing time, then emits the count
        def open(self, ctx):
            self.n = ctx.value_state("n")

        def process_element(self, record, ctx):
            _added()
            self.n.update((self.n.value() or 0) + 1)
            now = ctx.current_processing_time
            ctx.timers.register_processing_time(now - now % 1000 + 999)
            return None

        def on_timer(self, timestamp, ctx):
            _fired()
            n = self.n.value()
            self.n.clear()
            return [{"user": ctx.key, "window_end": timestamp + 1, "n": n}]
"""

USERS = 12_000


@pytest.mark.parametrize("kind", ["window", "process"])
def test_a_processing_time_tick_fires_in_chunks_and_the_loop_runs_between_them(
        tmp_path: Path, kind: str, scripted: None, udf_module: Callable[[str], str]) -> None:
    mod_name = udf_module(PROBE)
    if kind == "window":
        node = f"""
            window: {{type: tumbling, size: 1s, time: processing}}
            aggregate: {{n: {{"{mod_name}:Count": value}}}}"""
    else:
        node = f"""
            process: {mod_name}:PerSecond"""
    graph = plan_file(write_pipeline(tmp_path, f"""
        batch_size: 500
        sources:
          events: {{type: scripted, splits: 1}}
        transforms:
          w:
            input: events
            key_by: user{node}
        sinks: {{out: {{input: w, type: collect}}}}
    """), 1)
    with search_path([str(tmp_path)]):
        probe = importlib.import_module(mod_name)  # the module object the job's tasks import too
    rng = random.Random(11)

    async def main() -> list[tuple[list[int], int]]:
        clock = ManualClock()  # starts at a whole second: the first second's windows end at +1 s
        SCRIPT.changed = asyncio.Event()
        COLLECTED.changed = asyncio.Event()
        probe.ADDED, probe.FIRING = asyncio.Event(), asyncio.Event()
        conf = cfg.load(overrides={"log.level": "WARNING", "execution.buffer-timeout": "10ms"}, env={})
        rounds: list[tuple[list[int], int]] = []
        async with MiniCluster(conf, slots=1, clock=clock) as cluster:
            job = await cluster.submit(graph)
            for second in range(2):
                users = [f"u{rng.randrange(USERS)}" for _ in range(3 * USERS)]
                start = clock.time_ms()
                expected = [{"user": u, "window_end": start + 1000, "n": n} for u, n in Counter(users).items()]
                before_adds, before_fired = probe.STATE["adds"], probe.STATE["fired"]
                probe.TARGET[0] = before_adds + len(users)
                probe.ADDED.clear()
                probe.FIRING.clear()
                COLLECTED.records.clear()
                for i in range(0, len(users), 1000):
                    SCRIPT.push("s0", [{"user": u, "value": 1} for u in users[i:i + 1000]])
                await until(lambda: probe.STATE["adds"] >= probe.TARGET[0], probe.ADDED,
                            "the keyed operator to take every record pushed")
                assert probe.STATE["fired"] == before_fired, "nothing fires before the clock moves"
                total = before_fired + len(expected)
                seen: list[int] = []
                done = asyncio.Event()

                async def observe() -> None:
                    await probe.FIRING.wait()
                    while probe.STATE["fired"] < total and not done.is_set():
                        seen.append(probe.STATE["fired"] - before_fired)
                        await asyncio.sleep(0)

                observer = asyncio.ensure_future(observe())
                try:
                    await clock.advance(1.0)  # past the end of the second: every key's timer is due
                    await until(lambda: len(COLLECTED.records) >= len(expected), COLLECTED.changed,
                                f"second {second}: every key's result")
                finally:
                    done.set()
                    probe.FIRING.set()
                    await observer
                assert probe.STATE["fired"] == total, "each key's timer fired once"
                got = [{k: r[k] for k in ("user", "window_end", "n")} for r in COLLECTED.records]
                assert canonical(got) == canonical(expected)
                rounds.append((seen, len(expected)))
            SCRIPT.close("s0")
            result = await asyncio.wait_for(cluster.dispatcher.wait_terminal(job), 30)
            assert result.state == "FINISHED", f"job ended {result.state}"
        return rounds

    for seen, total in asyncio.run(main()):
        assert total > 5 * FIRE_CHUNK
        # the coroutine ran while the firing was under way (from a few chunks in: waking it takes
        # a few turns of the loop), then at least once per FIRE_CHUNK timers
        counts = sorted(set(seen) | {total})
        assert counts[0] <= 4 * FIRE_CHUNK
        gaps = [b - a for a, b in zip(counts, counts[1:])]
        assert max(gaps) <= FIRE_CHUNK, f"{max(gaps)} timers fired without the loop running anything else"
