"""The most a keyed shuffle over two processes can gain for W2, from the per-record work alone.

W2 (``scripts/bench.py W2``) reads JSONL records {"id", "user", "value"}, keys them by user, keeps a
running sum per user and writes a row per record.  Over two TaskManagers (parallelism 2) each
process decodes half of the lines, splits them by key group, sends the other process's half over a
remote channel (encoded, then decoded there), and aggregates and writes what it owns.

This script does exactly that per-record work with streamlet's own pieces (the file reader's batch
decode, the hash partitioner, the remote channel's encode and decode, the sink's line encoding) and
nothing else: no tasks, queues, event loop, sockets, credits, watermarks or metrics.  The time of
one of the two processes against the time of the one-process pipeline is an upper bound for what
``bench.py W2 --parallelism 2 --taskmanagers 2`` can reach against ``bench.py W2``: the framework
can only add to it.  Both sides run in this one process, one after the other, on CPU time.

  python scripts/bench_shuffle_bound.py                 # 2,000,000 records, 7 rounds, median
  python scripts/bench_shuffle_bound.py --records 4000000 --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time

import orjson

from streamlet.connectors.files import jsonl_run
from streamlet.graph.operators import KeySpec
from streamlet.runtime.taskmanager.network.elements import RecordBatch, from_wire
from streamlet.runtime.taskmanager.network.partitioners import hash_by_key
from streamlet.runtime.taskmanager.network.remote import OutboundLink, _decode_frame, encode_data
from streamlet.serde import dumps_lines

BATCH = 1024  # pipeline.batch-size


def runs_of(records: int) -> list[bytes]:
    """The input as the file reader cuts it: runs of BATCH lines (without the last newline)."""
    lines = [orjson.dumps({"id": i, "user": i % 10000, "value": i % 1000}) for i in range(records)]
    return [b"\n".join(lines[i:i + BATCH]) for i in range(0, records, BATCH)]


def aggregate_and_write(records: list[dict], totals: dict, sink: list[bytes]) -> None:
    rows = []
    for r in records:
        u = r["user"]
        t = totals[u] = totals.get(u, 0) + r["value"]
        rows.append({"user": u, "total": t})
    sink.append(dumps_lines(rows))
    if len(sink) > 64:  # the file sink hands 4 MiB blocks to a thread
        sink.clear()


def one_process(runs: list[bytes]) -> float:
    totals: dict = {}
    sink: list[bytes] = []
    t0 = time.process_time()
    for run in runs:
        aggregate_and_write(jsonl_run(run), totals, sink)
    return time.process_time() - t0


def one_of_two(runs: list[bytes]) -> float:
    """Process 0 of two: its half of the input, split by key group; what goes to process 1 is
    encoded; process 1's half of the input sends process 0 as much (the key groups are balanced),
    modelled by decoding process 0's own outgoing frames."""
    split = hash_by_key(2, KeySpec(fields=("user",)), "sums", 128)
    link = OutboundLink("peer", lambda: None)
    totals: dict = {}
    sink: list[bytes] = []
    mine = runs[: len(runs) // 2]
    t0 = time.process_time()
    for run in mine:
        (local, _), (remote, _) = split(jsonl_run(run), None)
        link.enqueue(encode_data(0, RecordBatch(remote)))
        frame = link.take_frame()
        aggregate_and_write(local, totals, sink)
        received = from_wire(_decode_frame(frame, "peer")[0][2])
        aggregate_and_write(received.records, totals, sink)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    runs = runs_of(args.records)
    ratios = []
    for i in range(args.rounds):
        a, b = one_process(runs), one_of_two(runs)
        ratios.append(a / b)
        print(f"round {i + 1}: one process {a:.3f} s ({a / args.records * 1e9:.0f} ns/record), "
              f"one of two {b:.3f} s: bound {a / b:.2f}x")
    print(f"bound on the two-TaskManager speed-up of W2: median {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x over {args.rounds} rounds)")


if __name__ == "__main__":
    main()
