#!/usr/bin/env python3
"""What metrics and a Prometheus scrape every second cost W1 and W2 (issue 12: under 2%).

Runs each workload alternately without and with ``--scrape`` (the REST API served and
``GET /metrics`` every second from another process; see scripts/bench.py), ``--rounds`` times,
each run in a fresh process, and reports the median records/s of both and their difference.
Alternating and taking medians keeps a noisy shared machine from deciding the result.
The metrics themselves (counters, meters, the per-interval sampling) are always on, in both.

  flock /work/notes/cpu.lock python scripts/bench_metrics.py --records 1000000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(workload: str, records: int, scrape: bool, defines: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--child", "streamlet", workload,
           "--records", str(records), *[f"-D{d}" for d in defines], *(["--scrape"] if scrape else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{workload} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["W1", "W2"])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-D", dest="define", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import make_input

    make_input(args.records)
    results = []
    print(f"{'workload':<10} {'plain rec/s':>12} {'scraped rec/s':>14} {'cost':>7}  scrapes/run  runs")
    for w in args.workloads:
        plain, scraped, scrapes = [], [], []
        for i in range(args.rounds):
            # alternate the order, so a trend of the machine's load favours neither side
            for scrape in ((False, True) if i % 2 == 0 else (True, False)):
                r = run(w, args.records, scrape, args.define)
                (scraped if scrape else plain).append(r["rate"])
                if scrape:
                    scrapes.append(r.get("scrapes", 0))
        p, s = statistics.median(plain), statistics.median(scraped)
        cost = (p - s) / p * 100
        results.append({"workload": w, "plain": plain, "scraped": scraped, "scrapes": scrapes,
                        "median_plain": p, "median_scraped": s, "cost_percent": cost})
        print(f"{w:<10} {p:>12,.0f} {s:>14,.0f} {cost:>6.2f}%  {statistics.median(scrapes):>11.0f}  "
              f"{args.rounds}+{args.rounds}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
