#!/usr/bin/env python3
"""What observing a job costs W1 and W2 (issue 12: under 2%): metrics, a Prometheus scrape every
second and the dashboard open on the job, together.

Runs each workload alternately plain and observed (``--scrape`` and ``--dashboard``, see
scripts/bench.py: the REST API served on the job's event loop, ``GET /metrics`` every second
from another process, and the job page open in headless Chromium, or a client polling what the
page polls), ``--rounds`` times, each run in a fresh process, and reports the median records/s
of both and their difference.  Alternating and taking medians keeps a noisy shared machine
from deciding the result.  The metrics themselves (counters, meters, the per-interval sampling)
are always on, in both.  Chromium runs in processes of its own and takes CPU that the job does
not get on a loaded host: what is measured is the job's throughput with all of that running.

The runs must be long enough for the observers to matter: at W1's rate, ``--records 30000000``
is about 10 s (a 1.3 GB input, written once into bench-data/).

  flock /work/notes/cpu.lock python scripts/bench_metrics.py --records 30000000 --rounds 3
  flock /work/notes/cpu.lock python scripts/bench_metrics.py --dashboard poll --records 30000000
  flock /work/notes/cpu.lock python scripts/bench_metrics.py --dashboard none   # the scrape only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(workload: str, records: int, observed: bool, dashboard: str, defines: list[str]) -> dict:
    extra = ["--scrape", *(["--dashboard", dashboard] if dashboard != "none" else [])] if observed else []
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--child", "streamlet", workload,
           "--records", str(records), *[f"-D{d}" for d in defines], *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{workload} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["W1", "W2"])
    ap.add_argument("--records", type=int, default=30_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dashboard", choices=["browser", "poll", "none"], default="browser",
                    help="the dashboard in the observed runs (default: headless Chromium)")
    ap.add_argument("-D", dest="define", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import make_input

    make_input(args.records)
    results = []
    print(f"observed: scrape every 1 s + dashboard {args.dashboard}")
    print(f"{'workload':<10} {'plain rec/s':>12} {'observed rec/s':>15} {'cost':>7}  run s  scrapes  polls  runs")
    for w in args.workloads:
        plain, observed, scrapes, polls, secs = [], [], [], [], []
        for i in range(args.rounds):
            # alternate the order, so a trend of the machine's load favours neither side
            for obs in ((False, True) if i % 2 == 0 else (True, False)):
                r = run(w, args.records, obs, args.dashboard, args.define)
                (observed if obs else plain).append(r["rate"])
                secs.append(r["run_s"])
                if obs:
                    scrapes.append(r.get("scrapes", 0))
                    polls.append(r.get("dashboard", {}).get("polls", 0))
                print(f"  round {i + 1} {'observed' if obs else 'plain':<8} {r['rate']:>12,.0f} rec/s "
                      f"{r['run_s']:>6.1f} s {r.get('scrapes', '')} {r.get('dashboard', '')}", flush=True)
        p, o = statistics.median(plain), statistics.median(observed)
        cost = (p - o) / p * 100
        results.append({"workload": w, "dashboard": args.dashboard, "plain": plain, "observed": observed,
                        "scrapes": scrapes, "polls": polls, "median_plain": p, "median_observed": o,
                        "cost_percent": cost})
        print(f"{w:<10} {p:>12,.0f} {o:>15,.0f} {cost:>6.2f}%  {statistics.median(secs):>5.1f}  "
              f"{statistics.median(scrapes):>7.0f}  {statistics.median(polls):>5.0f}  {args.rounds}+{args.rounds}",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
