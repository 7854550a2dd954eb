#!/usr/bin/env python3
"""Keyed-state micro-benchmark: heap vs rocksdb, per-record get/put and checkpoints.

Cases (each in a fresh subprocess, so peak RSS is that case's own ru_maxrss):
  hot         W2's access pattern: 10,000 hot keys, running sum (get, add, put), maintain() every
              512 records as the task does between batches; --ops records
  distinct    --keys distinct keys (default 5,000,000), each written once (get miss + put): state
              larger than the write cache; reports RSS to show it stays bounded for rocksdb
  checkpoint  --keys keys (default 1,000,000) in rocksdb, then checkpoints: full, incremental
              after 1% of keys were updated; durations (sync part, upload) and bytes

  python scripts/bench_state.py hot distinct checkpoint
  python scripts/bench_state.py distinct --keys 500000 --backends rocksdb

Run under the CPU lock (flock /work/notes/cpu.lock ...); report figures with the commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _backend(kind: str, tmp: str, cache: int):
    from streamlet.keys import KeyGroupRange
    from streamlet.state import create_backend

    options = {"local_dir": tmp, "cache_entries": cache} if kind == "rocksdb" else {}
    return create_backend(kind, KeyGroupRange(0, 127), 128, name="bench", options=options)


async def _access(kind: str, keys: list, ops: int, cache: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        b = _backend(kind, tmp, cache)
        v = b.value_state("sums")
        get, put = v.get, v.put
        nkeys = len(keys)
        batch = 512
        t0 = time.perf_counter()
        done = 0
        while done < ops:
            end = min(ops, done + batch)
            for i in range(done, end):
                k = keys[i % nkeys]
                a = get(k)
                put(k, i if a is None else a + i)
            done = end
            await b.maintain()
        elapsed = time.perf_counter() - t0
        # every key must hold its running sum: the benchmark measures correct work
        probe = keys[nkeys // 2]
        expected = sum(range(nkeys // 2, ops, nkeys))
        got = get(probe)
        assert got == expected, (got, expected)
        await b.close()
    return {"backend": kind, "ops": ops, "keys": nkeys, "seconds": round(elapsed, 3),
            "ops_per_s": round(ops / elapsed), "peak_rss_mb": round(_rss_mb(), 1)}


async def _checkpoints(keys: int, cache: int, rounds: int) -> dict:
    from streamlet.state.storage import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(str(Path(tmp) / "chk")).scoped("job")
        out: dict = {"keys": keys}
        for incremental in (False, True):
            b = _backend("rocksdb", str(Path(tmp) / f"local-{incremental}"), cache)
            b.options = type(b.options)(**{**b.options.__dict__, "incremental": incremental})
            v = b.value_state("sums")
            for i in range(keys):
                v.put(f"key-{i}", [i, 1])
                if i % 512 == 0:
                    await b.maintain()
            sync_s, upload_s, sizes = [], [], []
            for n in range(1, rounds + 1):
                if n > 1:  # 1% of the keys change between checkpoints
                    for i in range(n, keys, 100):
                        v.put(f"key-{i}", [i, n])
                    await b.maintain()
                t0 = time.perf_counter()
                snap = await b.snapshot(n)
                t1 = time.perf_counter()
                handle = await snap.persist(storage)
                t2 = time.perf_counter()
                b.notify_checkpoint_complete(n)
                sync_s.append(t1 - t0)
                upload_s.append(t2 - t1)
                sizes.append((handle["bytes_uploaded"], handle["bytes_total"]))
            await b.close()
            total = [s + u for s, u in zip(sync_s, upload_s)]
            out["incremental" if incremental else "full"] = {
                "first": {"sync_s": round(sync_s[0], 3), "upload_s": round(upload_s[0], 3),
                          "bytes_uploaded": sizes[0][0]},
                "later_median": {"sync_s": round(statistics.median(sync_s[1:]), 3),
                                 "upload_s": round(statistics.median(upload_s[1:]), 3),
                                 "bytes_uploaded": int(statistics.median(s[0] for s in sizes[1:])),
                                 "bytes_total": int(statistics.median(s[1] for s in sizes[1:]))},
                "max_total_s_after_first": round(max(total[1:]), 3),
                "max_bytes_uploaded_after_first": max(s[0] for s in sizes[1:]),
            }
        out["peak_rss_mb"] = round(_rss_mb(), 1)
    return out


def child(case: str, kind: str, args: argparse.Namespace) -> dict:
    if case == "hot":
        keys = [f"u{i}" for i in range(10_000)]
        return asyncio.run(_access(kind, keys, args.ops, args.cache))
    if case == "distinct":
        keys = range(args.keys)  # ints: no list of 5M strings in the benchmark's own memory
        return asyncio.run(_access(kind, keys, args.keys, args.cache))  # type: ignore[arg-type]
    return asyncio.run(_checkpoints(args.keys, args.cache, args.rounds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", default=["hot", "distinct", "checkpoint"])
    ap.add_argument("--backends", default="heap,rocksdb")
    ap.add_argument("--ops", type=int, default=2_000_000)
    ap.add_argument("--keys", type=int, default=None)
    ap.add_argument("--cache", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        case, kind = args.child
        args.keys = args.keys or (5_000_000 if case == "distinct" else 1_000_000)
        print(json.dumps(child(case, kind, args)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    print(f"commit {commit}")
    for case in args.cases:
        kinds = ["rocksdb"] if case == "checkpoint" else args.backends.split(",")
        results = {}
        for kind in kinds:
            cmd = [sys.executable, __file__, "--child", case, kind, "--ops", str(args.ops), "--cache", str(args.cache),
                   "--rounds", str(args.rounds)] + (["--keys", str(args.keys)] if args.keys else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"{case} {kind} failed:\n{proc.stderr[-3000:]}")
            results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(case, kind, json.dumps(results[kind]), flush=True)
        if case == "hot" and {"heap", "rocksdb"} <= set(results):
            ratio = results["rocksdb"]["ops_per_s"] / results["heap"]["ops_per_s"]
            print(f"hot: rocksdb / heap = {ratio:.2f}")


if __name__ == "__main__":
    main()
