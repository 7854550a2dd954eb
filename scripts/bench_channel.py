"""Throughput of one remote channel between two OS processes.

Starts a receiver process and a sender process (multiprocessing, spawn), each with its own
NetworkEnvironment on 127.0.0.1.  The sender builds records like
``{"id": i, "user": i % 10000, "value": i % 1000}`` in RecordBatches and puts them on one remote
channel, then EndOfPartition; the receiver takes them from an InputGate as a task would.  The
rate is records / (receiver got EndOfPartition - sender started putting), both read from the
system-wide monotonic clock.

    python scripts/bench_channel.py                       # 2M records, batches of 1024
    python scripts/bench_channel.py --records 500000 --capacity 8 --uvloop
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

_JOB, _CHANNEL = "bench", "0.0.0"
_TIMEOUT = 120.0


def _run(main: Any, use_uvloop: bool) -> None:
    if use_uvloop:
        import uvloop  # a benchmark choice, as runtime/*/process.py makes it for real processes
        uvloop.run(main)
    else:
        asyncio.run(main)


async def _receiver(pipe: Connection, capacity: int) -> None:
    from streamlet.runtime.taskmanager.network.channels import InputGate
    from streamlet.runtime.taskmanager.network.elements import EndOfPartition
    from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment

    env = NetworkEnvironment(capacity=capacity)
    await env.start()
    try:
        gate = InputGate([env.create_input_channel(_JOB, _CHANNEL)])
        pipe.send(env.address)
        records = 0
        async with asyncio.timeout(_TIMEOUT):
            while True:
                _, element = await gate.next()
                if type(element) is EndOfPartition:
                    break
                records += len(element.records)
        t_end = time.monotonic()
        pipe.send({"records": records, "t_end": t_end, "stats": env.statistics()["inbound"]})
        # stop after the sender, so its connection ends by its own close, not as a lost peer
        if await asyncio.to_thread(pipe.poll, _TIMEOUT):
            pipe.recv()
    finally:
        await env.stop()


async def _sender(pipe: Connection, address: str, n: int, batch: int, reuse: bool) -> None:
    from streamlet.runtime.taskmanager.network.elements import END_OF_PARTITION, RecordBatch
    from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment

    env = NetworkEnvironment()
    await env.start()
    try:
        out = env.output_channel(_JOB, _CHANNEL, address)
        fixed = [{"id": i, "user": i % 10000, "value": i % 1000} for i in range(batch)]
        t0 = time.monotonic()
        async with asyncio.timeout(_TIMEOUT):
            for start in range(0, n, batch):
                end = min(start + batch, n)
                if reuse:
                    records = fixed[: end - start]
                else:
                    records = [{"id": i, "user": i % 10000, "value": i % 1000} for i in range(start, end)]
                await out.put(RecordBatch(records))
            await out.put(END_OF_PARTITION)
        pipe.send({"t0": t0})
        # keep the connection until the receiver has everything (stop() drops unsent frames)
        if not await asyncio.to_thread(pipe.poll, _TIMEOUT):
            raise TimeoutError("receiver did not finish")
        pipe.recv()
    finally:
        await env.stop()


def receiver_main(pipe: Connection, capacity: int, use_uvloop: bool) -> None:
    _run(_receiver(pipe, capacity), use_uvloop)


def sender_main(pipe: Connection, address: str, n: int, batch: int, reuse: bool, use_uvloop: bool) -> None:
    _run(_sender(pipe, address, n, batch, reuse), use_uvloop)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--capacity", type=int, default=4, help="credits (buffered batches) per channel")
    ap.add_argument("--reuse-batch", action="store_true", help="send one pre-built batch (no record creation)")
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args(argv)

    ctx = mp.get_context("spawn")
    rx_here, rx_there = ctx.Pipe()
    tx_here, tx_there = ctx.Pipe()
    rx = ctx.Process(target=receiver_main, args=(rx_there, args.capacity, args.uvloop), name="bench-receiver")
    rx.start()
    tx = None
    try:
        if not rx_here.poll(30):
            raise SystemExit("receiver did not start")
        address = rx_here.recv()
        tx = ctx.Process(target=sender_main, name="bench-sender",
                         args=(tx_there, address, args.records, args.batch, args.reuse_batch, args.uvloop))
        tx.start()
        if not rx_here.poll(_TIMEOUT):
            raise SystemExit("receiver did not finish")
        got = rx_here.recv()
        if not tx_here.poll(30):
            raise SystemExit("sender did not report")
        sent = tx_here.recv()
        tx_here.send("done")
        tx.join(30)
        rx_here.send("stop")
        seconds = got["t_end"] - sent["t0"]
        st = got["stats"]
        rate = got["records"] / seconds
        print(f"records={got['records']} batch={args.batch} capacity={args.capacity} "
              f"loop={'uvloop' if args.uvloop else 'asyncio'} reuse_batch={args.reuse_batch}")
        print(f"seconds={seconds:.3f} records/s={rate:,.0f} MB/s={st['bytes_received'] / seconds / 1e6:.1f} "
              f"frames={st['frames_received']} messages={st['messages_received']} "
              f"credit_frames={st['frames_sent']}")
        ok = got["records"] == args.records
        if not ok:
            print(f"error: expected {args.records} records, received {got['records']}", file=sys.stderr)
        return 0 if ok else 1
    finally:
        for p in (tx, rx):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()
                    p.join()


if __name__ == "__main__":
    sys.exit(main())
