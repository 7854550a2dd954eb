"""What a flame graph request costs the sampled vertex: its throughput with and without sampling.

Starts a real ``streamlet jobmanager`` and one ``streamlet taskmanager`` (one slot), runs
``datagen -> map (some Python per record) -> hash -> count -> blackhole`` at full speed, and
measures the records/s the source vertex (source + map, chained) writes over alternating windows
without and with sampling (``rest.flamegraph.refresh-interval: 0``: a new round of
``num-samples`` as soon as the previous one ended, requested every 0.1 s).  Each pair of windows
runs in alternating order (plain first, then sampled first), so a trend of the host's load
favours neither side.  Prints each pair and the slowdown two ways: of the medians
(1 - sampled / plain) and the median of the pairs' ratios, which a shared host's swings
disturb less; and the TaskManager's records per CPU-second, which does not depend on the share
of the cores it got (it hides time the loop thread spends waiting, though).

The cost per second depends on the rate of samples (``--delay``), not on how many a round takes:
shorter rounds (``--samples 20``, 1 s at 50 ms) let windows alternate more often, and add the
per-round work (an RPC, the answer) more often, so they overstate the cost if anything.  Run it
under the CPU lock:

    flock /work/notes/cpu.lock python scripts/bench_flamegraph.py [--window 3] [--rounds 10] [--samples 20] [--delay 50ms]
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window(base: str, jid: str, vid: str, seconds: float, sample: bool, tm_pid: int) -> tuple[float, float]:
    """records/s the vertex wrote over ``seconds`` (metrics are reported every 100 ms), and records
    per CPU-second of the TaskManager."""
    if sample:
        get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")  # starts the first round
        time.sleep(0.3)  # the round is under way before the window opens
    n0, t0, c0 = written(base, jid, vid), time.monotonic(), cpu_seconds(tm_pid)
    end = t0 + seconds
    while time.monotonic() < end:
        if sample:
            get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")  # starts the next round once one ended
        time.sleep(0.1 if sample else 0.5)
    n1, t1, c1 = written(base, jid, vid), time.monotonic(), cpu_seconds(tm_pid)
    if sample:  # let the last round end before the next unsampled window
        time.sleep(max_round + 0.3)
    return (n1 - n0) / (t1 - t0), (n1 - n0) / max(c1 - c0, 1e-9)


def main() -> None:
    global max_round
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--delay", default="50ms", help="rest.flamegraph.delay-between-samples")
    ap.add_argument("--samples", type=int, default=20, help="rest.flamegraph.num-samples (samples per round)")
    args = ap.parse_args()
    delay_s = float(args.delay[:-2]) / 1000 if args.delay.endswith("ms") else float(args.delay.rstrip("s"))
    max_round = args.samples * delay_s * 1.5 + 0.2
    tmp = Path(tempfile.mkdtemp(prefix="bench-flamegraph-"))
    rest, rpc = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = open(tmp / "cluster.log", "wb")  # the processes' output stays out of the results
    common = ["-D", "log.level=WARNING", "-D", "taskmanager.metrics.interval=100ms"]
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
        plain, sampled, plain_cpu, sampled_cpu = [], [], [], []
        for i in range(args.rounds):
            for sample in ((False, True) if i % 2 == 0 else (True, False)):
                rate, per_cpu = window(base, jid, vid, args.window, sample, tm.pid)
                (sampled if sample else plain).append(rate)
                (sampled_cpu if sample else plain_cpu).append(per_cpu)
            print(f"round {i + 1}: unsampled {plain[-1]:,.0f} rec/s, sampled {sampled[-1]:,.0f} rec/s "
                  f"({100 * (1 - sampled[-1] / plain[-1]):+.1f} %); per TaskManager CPU-second "
                  f"{plain_cpu[-1]:,.0f} / {sampled_cpu[-1]:,.0f}", flush=True)
        graph = get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph")
        on_cpu = get(f"{base}/jobs/{jid}/vertices/{vid}/flamegraph?type=ON_CPU").get("data", {}).get("value", 0)
        state = get(f"{base}/jobs/{jid}")["state"]
        p, s = statistics.median(plain), statistics.median(sampled)
        paired = statistics.median(x / y for x, y in zip(sampled, plain))
        pc, sc = statistics.median(plain_cpu), statistics.median(sampled_cpu)
        total = graph.get("data", {}).get("value", 0)
        print(f"samples {args.samples} x {args.delay}, {args.rounds} x {args.window:g} s windows each: median unsampled "
              f"{p:,.0f} rec/s, sampled {s:,.0f} rec/s, slowdown {100 * (1 - s / p):.1f} % (median of pairs "
              f"{100 * (1 - paired):.1f} %; per TaskManager CPU-second {100 * (1 - sc / pc):.1f} %) (job {state}; "
              f"last graph: {total or graph.get('endTimestamp')} samples, {on_cpu} on-CPU; logs in {tmp})")
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
