"""The stack sampler against tasks whose stacks are known: one spinning on the loop (on-CPU), one
suspended on an event (off-CPU); and the flame graph tree built from samples."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from streamlet.runtime.jobmanager.flame_graph import build_flame_graph
from streamlet.runtime.taskmanager.stack_sampler import sample_stacks


def spin(seconds: float) -> int:
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


async def busy(stop: asyncio.Event) -> None:
    while not stop.is_set():
        spin(0.02)
        await asyncio.sleep(0)


async def parked(event: asyncio.Event) -> None:
    await event.wait()


def test_a_running_task_is_sampled_on_cpu_and_a_suspended_one_off_cpu() -> None:
    async def main() -> list[dict]:
        stop, never = asyncio.Event(), asyncio.Event()
        tasks = {0: asyncio.create_task(busy(stop)), 1: asyncio.create_task(parked(never))}
        await asyncio.sleep(0)
        try:
            return await asyncio.to_thread(sample_stacks, asyncio.get_running_loop(), threading.get_ident(),
                                           tasks, 50, 0.005, 100)
        finally:
            stop.set()
            never.set()
            await asyncio.gather(*tasks.values())

    samples = asyncio.run(main())
    by = {0: [s for s in samples if s["subtask"] == 0], 1: [s for s in samples if s["subtask"] == 1]}
    assert sum(s["count"] for s in by[0]) == 50 and sum(s["count"] for s in by[1]) == 50
    on = sum(s["count"] for s in by[0] if s["on_cpu"])
    # the loop thread spends nearly all its time in spin(); some samples land on its awaits (the
    # sampler gets the GIL more easily when the loop releases it in select, the more so on a
    # loaded host: see stack_sampler)
    in_spin = sum(s["count"] for s in by[0] if s["on_cpu"] and any(f.startswith("spin (") for f in s["stack"]))
    assert on >= 10 and in_spin >= 10, by[0]
    for s in by[0]:
        if s["on_cpu"]:
            # running: in spin(), or (rarely, it is also on-CPU) in the asyncio.sleep(0) between spins
            assert s["stack"][0].startswith("busy ("), s["stack"]
            assert "test_stack_sampler.py:" in s["stack"][0]
            assert any(f.startswith(("spin (", "sleep (")) for f in s["stack"][1:]), s["stack"]
    assert all(not s["on_cpu"] for s in by[1])
    stacks = {tuple(f.split(" (")[0] for f in s["stack"]) for s in by[1]}
    assert stacks == {("parked", "Event.wait")}, stacks


def test_a_stop_event_ends_sampling_early_and_ended_tasks_are_not_sampled() -> None:
    async def main() -> tuple[list[dict], float]:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        stop = threading.Event()
        stop.set()
        t0 = time.perf_counter()
        out = await asyncio.to_thread(sample_stacks, asyncio.get_running_loop(), threading.get_ident(),
                                      {0: task}, 100, 1.0, 10, stop)
        return out, time.perf_counter() - t0

    samples, took = asyncio.run(main())
    assert samples == [] and took < 0.5


def test_flame_graph_tree_counts_every_sample_through_every_frame() -> None:
    samples = [
        {"subtask": 0, "on_cpu": True, "stack": ["run", "process", "map"], "count": 5},
        {"subtask": 0, "on_cpu": False, "stack": ["run", "wait"], "count": 3},
        {"subtask": 1, "on_cpu": True, "stack": ["run", "process", "filter"], "count": 2},
    ]
    full = build_flame_graph(samples)
    assert full["name"] == "root" and full["value"] == 10
    (run,) = full["children"]
    assert run == {"name": "run", "value": 10, "children": [
        {"name": "process", "value": 7, "children": [{"name": "map", "value": 5, "children": []},
                                                     {"name": "filter", "value": 2, "children": []}]},
        {"name": "wait", "value": 3, "children": []}]}
    assert build_flame_graph(samples, "ON_CPU")["value"] == 7
    off = build_flame_graph(samples, "OFF_CPU")
    assert off["value"] == 3 and off["children"][0]["children"][0]["name"] == "wait"
    one = build_flame_graph(samples, "FULL", subtask=1)
    assert one["value"] == 2 and one["children"][0]["children"][0]["children"][0]["name"] == "filter"


def test_a_vertex_sampled_with_refresh_interval_zero_keeps_its_last_graph() -> None:
    from streamlet.clock import ManualClock
    from streamlet.runtime.jobmanager.flame_graph import FlameGraphConfig, FlameGraphTracker, VertexStackSamples

    class _Ex:
        class tdd:
            vertex_id = "v"
            subtask_index = 0

        class state:
            is_terminal = False

        slot = None

    class _Job:
        job_id = "j"
        is_terminal = False
        executions = [_Ex()]

    started: list[object] = []
    clock = ManualClock()
    tracker = FlameGraphTracker(FlameGraphConfig(refresh_interval=0.0), clock, lambda coro: (started.append(coro),
                                                                                             coro.close()))
    tracker._stats[("j", "v")] = VertexStackSamples(clock.time_ms() - 1000, [
        {"subtask": 0, "on_cpu": True, "stack": ["run"], "count": 4}])
    answer = tracker.flame_graph(_Job(), "v")  # type: ignore[arg-type]
    # the old graph is served while a new round (started here) samples again
    assert answer["data"]["value"] == 4 and len(started) == 1


SIGNAL_CHILD = r'''
import asyncio, json, signal, sys, threading, time
from streamlet.runtime.taskmanager import stack_sampler


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def busy(stop):
    while not stop.is_set():
        spin(0.02)
        await asyncio.sleep(0)


async def parked(event):
    await event.wait()


async def main():
    stop, never = asyncio.Event(), asyncio.Event()
    tasks = {0: asyncio.create_task(busy(stop)), 1: asyncio.create_task(parked(never))}
    await asyncio.sleep(0)
    usable = stack_sampler.signals_usable()
    in_thread = await asyncio.to_thread(stack_sampler.signals_usable)
    try:
        samples = await stack_sampler.sample_stacks_on_signals(tasks, 50, 0.005, 100)
    finally:
        stop.set()
        never.set()
        await asyncio.gather(*tasks.values())
    restored = signal.getsignal(signal.SIGALRM) == signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    print(json.dumps({"usable": usable, "in_thread": in_thread, "restored": restored,
                      "again": stack_sampler.signals_usable(), "samples": samples}))


if sys.argv[1] == "uvloop":  # a TaskManager's loop
    import uvloop
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
else:
    asyncio.run(main())
'''


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_samples_on_signals_in_a_main_thread_loop_catch_the_running_task_in_its_code(loop: str) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    # a process of its own: the signal way needs the main thread and a free SIGALRM, which the test
    # runner's timeout uses here
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, loop], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["usable"] and not out["in_thread"], out
    assert out["restored"] and out["again"], out
    samples = out["samples"]
    by = {0: [s for s in samples if s["subtask"] == 0], 1: [s for s in samples if s["subtask"] == 1]}
    assert sum(s["count"] for s in by[0]) == 50 and sum(s["count"] for s in by[1]) == 50
    # the signal interrupts the loop thread wherever it is, and it is nearly always in spin()
    # (else in busy's own loop, between two spins)
    on = sum(s["count"] for s in by[0] if s["on_cpu"])
    in_spin = sum(s["count"] for s in by[0] if s["on_cpu"] and any(f.startswith("spin (") for f in s["stack"]))
    assert on >= 25 and in_spin >= on // 2, by[0]
    assert all(s["stack"][0].startswith("busy (") for s in by[0] if s["on_cpu"]), by[0]
    assert all(not s["on_cpu"] for s in by[1])
    assert {tuple(f.split(" (")[0] for f in s["stack"]) for s in by[1]} == {("parked", "Event.wait")}
