"""What a flame graph request costs the sampled vertex: its throughput with and without sampling.

Starts a real ``streamlet jobmanager`` and one ``streamlet taskmanager`` (one slot), runs
``datagen -> map (some Python per record) -> hash -> count -> blackhole`` at full speed, and
measures the records/s the source vertex (source + map, chained) writes over alternating windows:
no sampling, then sampling without pause (``rest.flamegraph.refresh-interval: 0``, a new round
of ``num-samples`` as soon as the previous one ended, requested every 0.5 s).  Prints each window
and the slowdown (1 - sampled / unsampled, medians).  Run it under the CPU lock:

    flock /work/notes/cpu.lock python scripts/bench_flamegraph.py [--window 8] [--rounds 3] [--delay 50ms]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINE = """name: flamegraph-bench
parallelism: 1
sources: {g: {type: datagen, fields: {k: {kind: sequence}, v: {kind: random, max: 1000}}}}
transforms:
  m: {input: g, map: "dict(r, w=sum(int(c) for c in str(r['v'] * 7919)), s=str(r['k']))"}
  c: {input: m, key_by: "r['k'] % 64", aggregate: {n: count}}
sinks: {o: {input: c, type: blackhole}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def written(base: str, jid: str, vid: str) -> int:
    for v in get(f"{base}/jobs/{jid}")["vertices"]:
        if v["id"] == vid:
            return int(v["metrics"]["write-records"])
    raise SystemExit("vertex vanished")


def window(base: str, jid: str, vid: str, seconds: float, sample: bool) -> float:
    """records/s the vertex wrote over ``seconds`` (metrics are reported every 250 ms)."""
    if sample:
        get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")  # starts the first round
        time.sleep(1.0)  # the round is under way before the window opens
    n0, t0 = written(base, jid, vid), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        if sample:
            get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")  # starts the next round once one ended
        time.sleep(0.5)
    n1, t1 = written(base, jid, vid), time.monotonic()
    if sample:  # let the last round end before the next unsampled window
        time.sleep(max_round + 0.5)
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    global max_round
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--delay", default="50ms", help="rest.flamegraph.delay-between-samples")
    ap.add_argument("--samples", type=int, default=100, help="rest.flamegraph.num-samples")
    args = ap.parse_args()
    delay_s = float(args.delay[:-2]) / 1000 if args.delay.endswith("ms") else float(args.delay.rstrip("s"))
    max_round = args.samples * delay_s * 1.5
    tmp = Path(tempfile.mkdtemp(prefix="bench-flamegraph-"))
    rest, rpc = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp / "cluster.log", "wb")  # the processes' output stays out of the results
    common = ["-D", "log.level=WARNING", "-D", "taskmanager.metrics.interval=250ms"]
    jm = subprocess.Popen([sys.executable, "-m", "streamlet", "jobmanager", "-D", f"rest.port={rest}",
                           "-D", f"jobmanager.rpc.port={rpc}", "-D", "rest.flamegraph.refresh-interval=0s",
                           "-D", f"rest.flamegraph.delay-between-samples={args.delay}",
                           "-D", f"rest.flamegraph.num-samples={args.samples}", *common],
                          env=env, cwd=tmp, start_new_session=True, stdout=log, stderr=log)
    tm = subprocess.Popen([sys.executable, "-m", "streamlet", "taskmanager", "--jobmanager", f"127.0.0.1:{rpc}",
                           "--slots", "1", *common], env=env, cwd=tmp, start_new_session=True, stdout=log,
                          stderr=log)
    base = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(base + "/overview")["taskmanagers"] == 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the cluster did not start")
            time.sleep(0.2)
        req = urllib.request.Request(base + "/jobs", data=PIPELINE.encode(), method="POST",
                                     headers={"Content-Type": "application/x-yaml"})
        with urllib.request.urlopen(req, timeout=30) as r:
            jid = json.loads(r.read())["jid"]
        time.sleep(3.0)  # warm up
        vid = get(f"{base}/jobs/{jid}")["vertices"][0]["id"]
        plain, sampled = [], []
        for i in range(args.rounds):
            plain.append(window(base, jid, vid, args.window, False))
            sampled.append(window(base, jid, vid, args.window, True))
            print(f"round {i + 1}: unsampled {plain[-1]:,.0f} rec/s, sampled {sampled[-1]:,.0f} rec/s", flush=True)
        graph = get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")
        state = get(f"{base}/jobs/{jid}")["state"]
        p, s = statistics.median(plain), statistics.median(sampled)
        print(f"samples {args.samples} x {args.delay}: median unsampled {p:,.0f} rec/s, sampled {s:,.0f} rec/s, "
              f"slowdown {100 * (1 - s / p):.1f} % (job {state}; last graph: "
              f"{graph.get('data', {}).get('value', graph.get('endTimestamp'))} samples; logs in {tmp})")
    finally:
        for proc in (tm, jm):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)


max_round = 0.0

if __name__ == "__main__":
    main()
