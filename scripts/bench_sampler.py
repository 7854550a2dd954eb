#!/usr/bin/env python3
"""What the stack sampler costs the event-loop thread, in one process: no cluster, no other
processes, so the host's swings between windows matter less than in scripts/bench_flamegraph.py.

A task on a uvloop loop (the TaskManager's) runs batches of Python per record (the map of
bench_flamegraph.py) under a chain of coroutines as deep as a subtask's; 1 s windows (``--window``)
alternate, in rotating order, between no sampling, samples on timer signals
(:func:`~streamlet.runtime.taskmanager.stack_sampler.sample_stacks_on_signals`, what a
TaskManager process uses) and samples from a sampler thread
(:func:`~streamlet.runtime.taskmanager.stack_sampler.sample_stacks`, used where signals cannot
be), each at one sample every ``--delay``.  Prints, for each way, the median over rounds of
(records/s sampled / records/s unsampled in the same round), on the wall clock and per CPU-second
of the loop thread, and the time the signal handler took per sample.  Run it under the CPU lock:

    flock /work/notes/cpu.lock python scripts/bench_sampler.py [--rounds 40] [--window 1] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from typing import Any

import uvloop

from streamlet.runtime.taskmanager import stack_sampler

count = 0


def work(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r, w=sum(int(c) for c in str(r["v"] * 7919)), s=str(r["k"])) for r in batch]


async def nested(depth: int, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return work(batch) if depth == 0 else await nested(depth - 1, batch)


async def source(stop: asyncio.Event) -> None:
    global count
    k = 0
    while not stop.is_set():
        await nested(12, [{"k": k + i, "v": (k + i) % 1000} for i in range(256)])
        k += 256
        count += 256
        await asyncio.sleep(0)


async def window(kind: str, task: asyncio.Task[None], seconds: float, delay: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    n = int(seconds / delay) + 100  # more than the window takes: the round is ended after it
    round_: asyncio.Future[Any] | None = None
    if kind == "signals":
        round_ = asyncio.ensure_future(stack_sampler.sample_stacks_on_signals({0: task}, n, delay, 100))
    elif kind == "thread":
        round_ = asyncio.ensure_future(asyncio.to_thread(stack_sampler.sample_stacks, loop, threading.get_ident(),
                                                         {0: task}, n, delay, 100, stop))
    await asyncio.sleep(0.1)
    n0, t0, c0 = count, time.perf_counter(), time.thread_time()
    await asyncio.sleep(seconds)
    rate, per_cpu = (count - n0) / (time.perf_counter() - t0), (count - n0) / (time.thread_time() - c0)
    if round_ is not None:
        stop.set()
        if kind == "signals":
            round_.cancel()
        try:
            await round_
        except asyncio.CancelledError:
            pass
    return rate, per_cpu


async def main(rounds: int, seconds: float, delay: float) -> None:
    handler = [0.0, 0]
    record = stack_sampler._record

    def timed(*args: Any) -> None:  # the signal handler's work, timed (the thread's is not the loop's)
        t = time.thread_time()
        record(*args)
        if threading.current_thread() is threading.main_thread():
            handler[0] += time.thread_time() - t
            handler[1] += 1

    stack_sampler._record = timed  # type: ignore[assignment]
    stop = asyncio.Event()
    task = asyncio.create_task(source(stop))
    await asyncio.sleep(0.5)
    kinds = ["none", "signals", "thread"]
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(rounds):
        for kind in kinds[i % 3:] + kinds[:i % 3]:
            r, c = await window(kind, task, seconds, delay)
            rates[kind].append(r)
            cpus[kind].append(c)
    stop.set()
    await task
    print(f"{rounds} rounds of {seconds:g} s windows, one sample every {delay * 1000:g} ms; unsampled median "
          f"{statistics.median(rates['none']):,.0f} records/s")
    for kind in kinds[1:]:
        wall = statistics.median(a / b for a, b in zip(rates[kind], rates["none"]))
        cpu = statistics.median(a / b for a, b in zip(cpus[kind], cpus["none"]))
        print(f"  {kind:<8} slowdown {100 * (1 - wall):+.2f} % (wall clock), {100 * (1 - cpu):+.2f} % "
              f"(per CPU-second of the loop thread)")
    if handler[1]:
        print(f"  signal handler: {handler[1]} samples, {1e6 * handler[0] / handler[1]:.1f} us of CPU each "
              f"({100 * handler[0] / handler[1] / delay:.3f} % of the loop thread at this rate)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--delay", type=float, default=0.05)
    args = ap.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args.rounds, args.window, args.delay))
