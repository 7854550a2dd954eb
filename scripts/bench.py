#!/usr/bin/env python3
"""streamlet benchmark: records/s per core and peak memory, against a naive hand-written loop.

Workloads (inputs generated deterministically into ./bench-data/):
  W1        2,000,000 JSONL records {"id", "user", "value"}: map value*2, filter value%3==0, blackhole
  W2        the same records, key_by user, sum of value, file sink, streaming (a row per record)
  W2-batch  W2 with mode: batch (one final row per key)
  q0,q1,q2  Nexmark on the built-in generator (10,000,000 events): pass-through / price*0.908 /
            auction % 123 == 0, blackhole sink
  W3        2,000,000 JSONL records {"id", "user", "value", "ts": i}: 10 s event-time tumbling window,
            count and sum of value, keyed by user % 100, file sink
  W3-slide  W3 with a 10 s window sliding by 1 s;  W3-slide-1h: a 1 h window sliding by 1 s
  q3..q22   the Nexmark suite: configs/pipelines/nexmark/<q>.yaml on the built-in generator
            (--nexmark-events events, Flink's event-time rate of 10M events/s), its sink replaced by a
            blackhole (as Flink's Nexmark runs)

Nexmark rates are events/s of the whole stream (persons, auctions and bids, 1:3:46), as Nexmark
and Flink count them.  The suite's sources generate only the kind they read (``kind:``), so a
query reading bids generates 92% of the events and q3/q8 (persons and auctions) 8%: the column
"gen" shows the share of the stream the sources generated, and "vs flink" is left empty below
100% (Flink's source makes every event and the query filters).  ``--mixed`` runs each query on
one source of the whole stream, each former source becoming a flat_map that keeps its kind (Flink
Nexmark's shape): then every event is generated once and the comparison is printed.

Every measurement runs in a fresh subprocess (peak RSS = that process's ru_maxrss).  Rates
exclude start-up (planning, split enumeration, task deployment), which is reported separately.

  python scripts/bench.py                       # all workloads, parallelism 1
  python scripts/bench.py W1 W2 --records 500000
  python scripts/bench.py W2 --parallelism 2 --taskmanagers 2
  python scripts/bench.py W1 W2 --scrape        # with the REST API up and GET /metrics every second
  python scripts/bench.py W1 --dashboard browser  # the job's dashboard page open in headless Chromium
  python scripts/bench.py W1 --dashboard poll     # a client polling what the job page polls, as often
  (scripts/bench_metrics.py compares runs with and without them)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench-data"

PIPELINES = {
    "W1": """
name: w1
sources: {src: {type: file, path: @INPUT@, format: jsonl}}
transforms:
  doubled: {input: src, map: "dict(r, value=r['value'] * 2)"}
  kept: {input: doubled, filter: "r['value'] % 3 == 0"}
sinks: {out: {input: kept, type: blackhole}}
""",
    "W2": """
name: w2
sources: {src: {type: file, path: @INPUT@, format: jsonl}}
transforms:
  sums: {input: src, key_by: user, aggregate: {total: {sum: value}}}
sinks: {out: {input: sums, type: file, path: @OUT@}}
""",
    "W2-batch": """
name: w2-batch
mode: batch
sources: {src: {type: file, path: @INPUT@, format: jsonl}}
transforms:
  sums: {input: src, key_by: user, aggregate: {total: {sum: value}}}
sinks: {out: {input: sums, type: file, path: @OUT@}}
""",
    "q0": """
name: nexmark-q0
sources: {bids: {type: nexmark, events: @EVENTS@, kind: bid}}
sinks: {out: {input: bids, type: blackhole}}
""",
    "q1": """
name: nexmark-q1
sources: {bids: {type: nexmark, events: @EVENTS@, kind: bid}}
transforms:
  euros: {input: bids, map: "dict(r, price=r['price'] * 0.908)"}
sinks: {out: {input: euros, type: blackhole}}
""",
    "q2": """
name: nexmark-q2
sources: {bids: {type: nexmark, events: @EVENTS@, kind: bid}}
transforms:
  some: {input: bids, filter: "r['auction'] % 123 == 0"}
sinks: {out: {input: some, type: blackhole}}
""",
}


W3 = """
name: w3
sources: {src: {type: file, path: @INPUT@, format: jsonl, timestamp: ts}}
transforms:
  w: {input: src, key_by: "r['user'] % 100", window: @WINDOW@, aggregate: {n: count, total: {sum: value}}}
sinks: {out: {input: w, type: file, path: @OUT@}}
"""
PIPELINES["W3"] = W3.replace("@WINDOW@", "{type: tumbling, size: 10s}")
PIPELINES["W3-slide"] = W3.replace("@WINDOW@", "{type: sliding, size: 10s, slide: 1s}")
PIPELINES["W3-slide-1h"] = W3.replace("@WINDOW@", "{type: sliding, size: 1h, slide: 1s}")
NEXMARK_DIR = ROOT / "configs" / "pipelines" / "nexmark"
NEXMARK_QUERIES = [f"q{i}" for i in (3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)]
#: Flink's per-core events/s (the Nexmark project's published V1/V2 runs, the higher of the two)
FLINK_PER_CORE = {"q3": 219_000, "q4": 34_000, "q5": 75_000, "q7": 23_000, "q8": 162_000, "q9": 14_000,
                  "q10": 58_000, "q11": 46_000, "q12": 194_000, "q13": 188_000, "q14": 161_000, "q15": 72_000,
                  "q16": 19_000, "q17": 117_000, "q18": 54_000, "q19": 44_000, "q20": 19_000, "q21": 98_000,
                  "q22": 130_000}


def nexmark_pipeline(query: str, events: int) -> str:
    """A suite pipeline with its sink replaced by a blackhole (Flink's Nexmark measures without sinks)."""
    import yaml

    data = yaml.safe_load((NEXMARK_DIR / f"{query}.yaml").read_text())
    data["sinks"] = {name: {"input": sink["input"], "type": "blackhole"} for name, sink in data["sinks"].items()}
    return yaml.safe_dump(data, sort_keys=False)


#: the mixed stream's event_type of each kind
_EVENT_TYPES = {"person": 0, "auction": 1, "bid": 2}
MIXED_SOURCE = "nexmark_events"


def mixed_pipeline(text: str) -> str:
    """The pipeline with its ``kind:`` nexmark sources replaced by one source of the whole stream
    (every event generated once, wrapped by event_type) and, per former source, a flat_map of that
    id keeping its kind's records (their timestamps taken at the mixed source)."""
    import yaml

    data = yaml.safe_load(text)
    kinds = {sid: src for sid, src in data["sources"].items() if src.get("type") == "nexmark" and src.get("kind")}
    if not kinds:
        return text
    first = next(iter(kinds.values()))
    mixed = {k: v for k, v in first.items() if k not in ("kind", "timestamp")}
    if any(src.get("timestamp") for src in kinds.values()):
        if any(src.get("timestamp") not in (None, "dateTime") for src in kinds.values()):
            raise SystemExit("--mixed: a nexmark source with a timestamp other than dateTime")
        mixed["timestamp"] = "dateTime"  # on the mixed stream: each event's (the reader gives them natively)
    sources = {sid: src for sid, src in data["sources"].items() if sid not in kinds}
    sources[MIXED_SOURCE] = mixed
    unwrap = {sid: {"input": MIXED_SOURCE,
                    "flat_map": f"[r[{src['kind']!r}]] if r['event_type'] == {_EVENT_TYPES[src['kind']]} else []"}
              for sid, src in kinds.items()}
    data["sources"] = sources
    data["transforms"] = {**unwrap, **(data.get("transforms") or {})}
    return yaml.safe_dump(data, sort_keys=False)


def _records_file(name: str, records: int, with_ts: bool) -> Path:
    """``bench-data/<name>-<records>.jsonl`` of deterministic records, written once and reused."""
    DATA.mkdir(exist_ok=True)
    path = DATA / f"{name}-{records}.jsonl"
    if not path.exists():
        import orjson

        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            step = 100_000
            for lo in range(0, records, step):
                rows = ({"id": i, "user": i % 10000, "value": i % 1000} for i in range(lo, min(records, lo + step)))
                f.write(b"".join(orjson.dumps({**r, "ts": r["id"]} if with_ts else r) + b"\n" for r in rows))
        tmp.rename(path)
    return path


def make_input_ts(records: int) -> Path:
    """W3's input: W1's records plus an in-order event time ``ts`` (ms)."""
    return _records_file("records-ts", records, True)


def make_input(records: int) -> Path:
    """Deterministic JSONL input; reused when it already exists with the same size."""
    return _records_file("records", records, False)


# ---------------------------------------------------------------- measured in a child process

#: the scraper process of --scrape: GET the URL every second, print how many scrapes succeeded at the end
SCRAPER = """
import signal, sys, time, urllib.request
n = 0
signal.signal(signal.SIGTERM, lambda *a: (print(n, flush=True), sys.exit(0)))
while True:
    t = time.monotonic()
    try:
        urllib.request.urlopen(sys.argv[1], timeout=5).read()
        n += 1
    except OSError:
        pass
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
"""


#: --dashboard browser: Debian's headless Chromium (playwright) with the job page open, in its own
#: process.  It starts the browser first (outside the measured run), says "ready", reads the job
#: page's URL from stdin, opens it, and at "stop" prints how many polls of the job the page made
#: (GET /jobs/<id>, the first request of each poll), the API requests and the failed ones.
BROWSER = """
import json, sys, threading
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox", "--disable-gpu"])
    page = b.new_page(viewport={"width": 1400, "height": 1000})
    counts = {"polls": 0, "requests": 0, "failed": 0, "errors": []}
    url = None
    def seen(resp):
        path = resp.url.split("#")[0].split("?")[0]
        if "/jobs/" not in path:
            return
        counts["requests"] += 1
        counts["failed"] += resp.status >= 400
        if url and path.endswith(url.rsplit("/", 1)[1]):
            counts["polls"] += 1
    page.on("response", seen)
    page.on("pageerror", lambda e: counts["errors"].append(str(e)))
    print("ready", flush=True)
    url = sys.stdin.readline().strip()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    page.goto(url)
    while not stop.is_set():
        page.wait_for_timeout(100)
    b.close()
print(json.dumps(counts), flush=True)
"""

#: --dashboard poll: what the job page asks for on each poll (streamlet/rest/static/app.js, showJob),
#: in the same order and as often (POLL_MS, 2 s after the previous poll ended); the concurrent
#: requests of the page go out concurrently here too.  Prints the counts as BROWSER does at "stop".
POLLER = """
import json, sys, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, jid = sys.argv[1], sys.argv[2]
counts = {"polls": 0, "requests": 0, "failed": 0, "errors": []}
def get(path):
    counts["requests"] += 1
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return json.loads(r.read())
    except OSError:
        counts["failed"] += 1
        return None
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
with ThreadPoolExecutor(8) as pool:
    for path in ("/", "/static/app.js", "/static/style.css"):  # the page itself, once
        urllib.request.urlopen(base + path, timeout=5).read()
    while not stop.is_set():
        job = get(f"/jobs/{jid}")
        counts["polls"] += 1
        list(pool.map(get, [f"/jobs/{jid}/exceptions", f"/jobs/{jid}/checkpoints"]))
        vs = (job or {}).get("vertices", [])
        list(pool.map(get, [f"/jobs/{jid}/vertices/{v['id']}/{w}" for v in vs for w in ("backpressure", "watermarks")]))
        stop.wait(2.0)
print(json.dumps(counts), flush=True)
"""


def child_streamlet(workload: str, records: int, events: int, parallelism: int, taskmanagers: int,
                    defines: list[str] | None = None, scrape: bool = False, dashboard: str | None = None,
                    mixed: bool = False) -> dict:
    from streamlet import config as cfg
    from streamlet.api.planner import plan
    from streamlet.api.yaml.loader import loads
    from streamlet.runtime import minicluster

    viewer: list = []
    if dashboard == "browser":  # launched first: Chromium's start-up is neither the run nor the job's start-up
        viewer.append(subprocess.Popen([sys.executable, "-c", BROWSER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       text=True))
        if viewer[0].stdout.readline().strip() != "ready":
            raise SystemExit("the browser did not start (playwright and /usr/bin/chromium are needed)")
    out_dir = tempfile.mkdtemp(prefix="streamlet-bench-")
    if workload in NEXMARK_QUERIES:
        text = nexmark_pipeline(workload, events)
        base, variables = str(NEXMARK_DIR), {"EVENTS": str(events), "OUT_DIR": out_dir}
    else:
        data = make_input_ts(records) if workload.startswith("W3") else make_input(records)
        text = (PIPELINES[workload].replace("@INPUT@", str(data)).replace("@OUT@", out_dir)
                .replace("@EVENTS@", str(events)))
        base, variables = str(ROOT), {}
    if mixed:
        text = mixed_pipeline(text)
    t0 = time.perf_counter()
    graph = plan(loads(text, "bench.yaml", base, variables=variables), parallelism_override=parallelism)
    conf = cfg.load(overrides=dict(d.split("=", 1) for d in defines or []))
    started: list = []
    scraper: list = []

    def on_started(cluster, job) -> None:
        started.append((cluster, job))
        base = f"http://127.0.0.1:{cluster.rest_port}"
        if scrape:  # a Prometheus-like scraper in its own process: GET /metrics every second
            scraper.append(subprocess.Popen([sys.executable, "-c", SCRAPER, base + "/metrics"], stdout=subprocess.PIPE,
                                            text=True))
        if dashboard == "browser":
            viewer[0].stdin.write(f"{base}/#/jobs/{job}\n")
            viewer[0].stdin.flush()
        elif dashboard == "poll":
            viewer.append(subprocess.Popen([sys.executable, "-c", POLLER, base, job], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True))

    rest = scrape or dashboard is not None
    if rest:
        conf = conf.with_overrides({"rest.port": 0})
    try:
        result = minicluster.execute(graph, conf, taskmanagers=taskmanagers, rest=rest, on_started=on_started)
    finally:
        for p in scraper:
            p.terminate()
        seen = None
        for p in viewer:
            try:
                seen = json.loads(p.communicate("stop\n", timeout=30)[0].strip().splitlines()[-1])
            except (subprocess.TimeoutExpired, ValueError, IndexError):
                p.kill()
                p.wait()
        shutil.rmtree(out_dir, ignore_errors=True)  # W2's output of a long run is large
    t1 = time.perf_counter()
    if result.state != "FINISHED":
        raise SystemExit(f"{workload} {result.state}: {result.error}")
    src = result.vertices[0]
    # Nexmark rates are events/s of the whole stream (as Nexmark counts), records/s otherwise
    n = events if workload.startswith("q") else src.records_in
    # what the sources read (generated): each source vertex's input
    source_ids = [v.operators[0].id for v in graph.vertices if type(v.operators[0]).__name__ == "SourceSpec"]
    by_name = {v.name: v for v in result.vertices}
    generated = sum(next(r for name, r in by_name.items() if name.split(" -> ")[0] == sid).records_in
                    for sid in source_ids)
    # with --taskmanagers the work runs in child processes: report the largest of them
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    out = {"records": n, "startup_s": round(t1 - t0 - result.run_seconds, 3), "run_s": round(result.run_seconds, 3),
           "rate": n / result.run_seconds, "peak_rss_mb": peak / 1024,
           "out_records": result.vertices[-1].records_out, "generated": generated}
    if scraper:
        out["scrapes"] = int((scraper[0].communicate(timeout=10)[0] or "0").split()[-1])
    if dashboard is not None:
        if seen is None or seen["polls"] == 0 or seen["failed"] or seen["errors"]:
            raise SystemExit(f"the dashboard ({dashboard}) did not poll the job cleanly: {seen}")
        out["dashboard"] = seen
    cluster, job = started[0]
    stats = cluster.dispatcher.checkpoint_stats(job)
    if stats["counts"]["completed"]:
        d, size = stats["summary"]["end_to_end_duration"], stats["summary"]["checkpointed_size"]
        out["checkpoints"] = {"completed": stats["counts"]["completed"], "failed": stats["counts"]["failed"],
                              "duration_ms_p50": d["p50"], "duration_ms_p99": d["p99"], "duration_ms_max": d["max"],
                              "state_bytes_max": stats["summary"]["state_size"]["max"],
                              "uploaded_bytes_avg": size["avg"]}
    return out


def child_hand(workload: str, records: int, events: int, mixed: bool = False) -> dict:
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
    if workload not in ("W1", "W2", "W2-batch", "q0", "q1", "q2"):
        return None
    if workload in ("W1", "W2", "W2-batch"):
        path = make_input(records)
        t0 = time.perf_counter()
        n = 0
        with open(path, "rb") as f:
            if workload == "W1":
                for line in f:
                    r = loads(line)
                    r = dict(r, value=r["value"] * 2)
                    if r["value"] % 3 == 0:
                        n += 1
            elif workload == "W2":
                sums: dict = {}
                with tempfile.TemporaryFile() as out:
                    for line in f:
                        r = loads(line)
                        k = r["user"]
                        s = sums[k] = sums.get(k, 0) + r["value"]
                        out.write(dumps({"user": k, "total": s}) + b"\n")
                        n += 1
            else:
                sums = {}
                for line in f:
                    r = loads(line)
                    k = r["user"]
                    sums[k] = sums.get(k, 0) + r["value"]
                with tempfile.TemporaryFile() as out:
                    out.write(b"".join(dumps({"user": k, "total": s}) + b"\n" for k, s in sums.items()))
                n = records
        elapsed = time.perf_counter() - t0
        return {"records": records, "run_s": round(elapsed, 3), "rate": records / elapsed,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    # Nexmark: the same generator, block by block in a plain loop, with the query's per-record work
    from streamlet.connectors.nexmark import BLOCK, NexmarkGenerator

    gen = NexmarkGenerator(seed=0, kind=None if mixed else "bid")
    t0 = time.perf_counter()
    n = 0
    for b in range((events + BLOCK - 1) // BLOCK):
        for r in gen.block(b, events):
            if mixed:
                if r["event_type"] != 2:
                    continue
                r = r["bid"]
            if workload == "q1":
                r = dict(r, price=r["price"] * 0.908)
            elif workload == "q2" and r["auction"] % 123 != 0:
                continue
            n += 1
    elapsed = time.perf_counter() - t0
    return {"records": events, "out_records": n, "run_s": round(elapsed, 3), "rate": events / elapsed,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def host_loop_seconds() -> float:
    """The best of three timings of a plain loop of 10,000,000 integer additions: how fast this
    host runs Python now (shared hosts drift; figures from different runs compare through it)."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        s = 0
        for i in range(10_000_000):
            s += i
        best = min(best, time.perf_counter() - t0)
    return best


def run_child(kind: str, workload: str, args: argparse.Namespace) -> dict | None:
    events = args.nexmark_events if workload in NEXMARK_QUERIES else args.events
    cmd = [sys.executable, __file__, "--child", kind, workload, "--records", str(args.records),
           "--events", str(events), "--parallelism", str(args.parallelism),
           "--taskmanagers", str(args.taskmanagers), *[f"-D{d}" for d in args.define],
           *(["--scrape"] if getattr(args, "scrape", False) and kind == "streamlet" else []),
           *(["--dashboard", args.dashboard] if getattr(args, "dashboard", None) and kind == "streamlet" else []),
           *(["--mixed"] if getattr(args, "mixed", False) else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {workload} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=list(PIPELINES) + NEXMARK_QUERIES)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--nexmark-events", type=int, default=2_000_000,
                    help="events per run of q3..q22 (default 2,000,000)")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--taskmanagers", type=int, default=0)
    ap.add_argument("--no-hand", action="store_true", help="skip the hand-written loops")
    ap.add_argument("-D", dest="define", action="append", default=[], metavar="KEY=VALUE",
                    help="configuration override for streamlet, e.g. -D execution.checkpointing.interval=1s "
                         "-D state.backend.type=rocksdb (checkpoint figures are then reported)")
    ap.add_argument("--scrape", action="store_true",
                    help="serve the REST API and GET /metrics every second from another process while it runs")
    ap.add_argument("--dashboard", choices=["browser", "poll"],
                    help="serve the REST API with the job's dashboard page open while it runs: in headless Chromium "
                         "(browser: playwright, /usr/bin/chromium) or as a client polling what the page polls (poll)")
    ap.add_argument("--mixed", action="store_true",
                    help="Nexmark: one source generating the whole stream, filtered per kind (Flink Nexmark's shape)")
    ap.add_argument("--child", nargs=2, metavar=("KIND", "WORKLOAD"), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.child:
        kind, workload = args.child
        if kind == "streamlet":
            res = child_streamlet(workload, args.records, args.events, args.parallelism, args.taskmanagers, args.define,
                                  args.scrape, args.dashboard, args.mixed)
        else:
            res = child_hand(workload, args.records, args.events, args.mixed)
        print(json.dumps(res))
        return
    unknown = [w for w in args.workloads if w not in PIPELINES and w not in NEXMARK_QUERIES]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {list(PIPELINES) + NEXMARK_QUERIES}")
    if any(w.startswith(("W1", "W2")) for w in args.workloads):
        make_input(args.records)
    if any(w.startswith("W3") for w in args.workloads):
        make_input_ts(args.records)
    rows = []
    host_before = host_loop_seconds()
    print(f"host: a plain Python loop of 10M additions takes {host_before:.2f} s (the host's speed, to compare runs "
          "on other machines; measured again at the end)", flush=True)
    print(f"{'workload':<12} {'streamlet rec/s':>16} {'per core':>10} {'start-up':>9} {'peak MB':>8} "
          f"{'hand rec/s':>11} {'ratio':>6} {'gen':>5} {'flink/core':>11} {'vs flink':>8}")
    for w in args.workloads:
        s = run_child("streamlet", w, args)
        h = None if args.no_hand else run_child("hand", w, args)
        cores = max(1, args.taskmanagers or 1) if args.taskmanagers else 1
        row = {"workload": w, "parallelism": args.parallelism, "taskmanagers": args.taskmanagers,
               "streamlet": s, "hand": h, "per_core": s["rate"] / min(cores, os.cpu_count() or 1),
               "ratio": (s["rate"] / h["rate"]) if h else None}
        rows.append(row)
        flink = FLINK_PER_CORE.get(w)
        row["flink_per_core"] = flink
        nexmark = w.startswith("q")
        # the share of the whole stream the sources generated (Nexmark); below 1 the rate is not Flink's kind
        row["generated_share"] = share = s["generated"] / s["records"] if nexmark and s["records"] else None
        comparable = flink and (share is None or share >= 0.999)
        row["vs_flink"] = row["per_core"] / flink if comparable else None
        vs = f"{row['vs_flink']:>8.2f}" if comparable else f"{'':>8}"
        gen = f"{share:>5.0%}" if share is not None else f"{'':>5}"
        print(f"{w:<12} {s['rate']:>16,.0f} {row['per_core']:>10,.0f} {s['startup_s']:>8.2f}s "
              f"{s['peak_rss_mb']:>8.0f} {(h['rate'] if h else 0):>11,.0f} "
              f"{(row['ratio'] or 0):>6.2f} {gen} {(flink or 0):>11,} {vs}", flush=True)
        if "checkpoints" in s:
            c = s["checkpoints"]
            print(f"{'':<12} checkpoints: {c['completed']} completed, {c['failed']} failed; duration p50 "
                  f"{c['duration_ms_p50']} ms, p99 {c['duration_ms_p99']} ms, max {c['duration_ms_max']} ms; "
                  f"state {c['state_bytes_max']:,} B, uploaded {c['uploaded_bytes_avg']:,} B/checkpoint", flush=True)
    host_after = host_loop_seconds()
    print(f"host: the same loop at the end takes {host_after:.2f} s", flush=True)
    if args.json:
        for row in rows:
            row["host_loop_s"] = [host_before, host_after]
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
