#!/usr/bin/env python3
"""Chaos run: a keyed running count on a real cluster while processes are killed with SIGKILL.

Starts a JobManager (with ``high-availability.storageDir``) and two TaskManagers on 127.0.0.1,
submits a job that counts ids ``0..rows-1`` per key ``id % keys`` at parallelism 2 with 1 s
checkpoints into an exactly-once file sink, then every ``--interval`` seconds (jittered) kills a
TaskManager with SIGKILL and starts a replacement; every ``--jobmanager-every``-th kill is the
JobManager's (started again with the same recovery directory).  At the end it checks the committed
output against the input definition and prints::

    kills survived: 10 (taskmanagers 8, jobmanager 2)
    rows expected: 1000000, committed: 1000000, lost: 0, duplicated: 0
    recovery time (kill -> all subtasks RUNNING again): worst 1.43 s, median 0.81 s

Exit status 0 when nothing was lost or duplicated and the job FINISHED, else 1.

    python scripts/chaos.py --kills 10 --rows 1000000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAST = ["-D", "heartbeat.interval=200ms", "-D", "heartbeat.timeout=2s", "-D", "taskmanager.registration.max-backoff=300ms",
        "-D", "taskmanager.metrics.interval=250ms", "-D", "taskmanager.cancel.timeout=3s"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Chaos:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.rest = free_port()
        self.rpc = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.n = 0
        self.rng = random.Random(args.seed)

    def spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "streamlet", *argv], stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, cwd=self.work, env=env, start_new_session=True)
        log.close()

    def jobmanager(self) -> None:
        self.spawn("jobmanager", ["jobmanager", "-D", f"rest.port={self.rest}", "-D", f"jobmanager.rpc.port={self.rpc}",
                                  "-D", f"high-availability.storageDir={self.work / 'ha'}",
                                  "-D", f"web.upload.dir={self.work / 'upload'}", *FAST])
        self.wait(lambda: self.get("/overview"), 20, "the jobmanager")

    def taskmanager(self) -> str:
        name = f"taskmanager-{self.n}"
        self.n += 1
        self.spawn(name, ["taskmanager", "--jobmanager", f"127.0.0.1:{self.rpc}", "--slots", "1",
                          "-D", f"taskmanager.tmp.dir={self.work}", *FAST])
        return name

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.kill(name)

    def request(self, method: str, path: str, body: bytes | None = None, ctype: str | None = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.rest}{path}", data=body, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = resp.read()
            return json.loads(data) if data else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    @staticmethod
    def wait(cond: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = cond()
                if value:
                    return value
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")

    def job(self, job: str) -> dict[str, Any]:
        return self.get(f"/jobs/{job}")

    def all_running(self, job: str) -> bool:
        d = self.job(job)
        if d["state"] == "FINISHED":
            return True
        return d["state"] == "RUNNING" and all(
            s["status"] in ("RUNNING", "FINISHED") for v in d["vertices"] for s in v.get("subtasks", []))

    def completed(self, job: str) -> int:
        return int(self.get(f"/jobs/{job}/checkpoints")["counts"]["completed"])


def pipeline(work: Path, rows: int, rate: int, keys: int) -> str:
    return (f"name: chaos\nparallelism: 2\n"
            f"checkpointing: {{interval: 1s, dir: {work / 'chk'}}}\n"
            f"restart: {{strategy: fixed-delay, attempts: 1000, delay: 100ms}}\n"
            f"sources: {{g: {{type: datagen, rows: {rows}, rate: {rate}, fields: {{id: {{kind: sequence}}}}}}}}\n"
            f"transforms:\n  counts: {{input: g, key_by: \"r['id'] % {keys}\", aggregate: {{n: count}}}}\n"
            f"sinks: {{out: {{input: counts, type: file, path: {work / 'out'}}}}}\n")


def check(out: Path, rows: int, keys: int) -> tuple[int, int, int]:
    """(committed rows, lost, duplicated) against the input definition."""
    seen: dict[int, collections.Counter[int]] = collections.defaultdict(collections.Counter)
    committed = 0
    for f in out.glob("part-*"):
        with open(f) as fh:
            for line in fh:
                r = json.loads(line)
                seen[r["key"]][r["n"]] += 1
                committed += 1
    lost = dup = 0
    for key in range(keys):
        n = len(range(key, rows, keys))
        c = seen.get(key, collections.Counter())
        lost += sum(1 for i in range(1, n + 1) if c[i] == 0)
        dup += sum(v - 1 for v in c.values() if v > 1) + sum(v for i, v in c.items() if not 1 <= i <= n)
    return committed, lost, dup


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=None, help="records/s (default: rows spread over the kills)")
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--interval", type=float, default=2.0, help="mean seconds between kills")
    ap.add_argument("--jobmanager-every", type=int, default=4, help="every n-th kill is the JobManager's (0: never)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one, removed)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="streamlet-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    rate = args.rate or max(1000, int(args.rows / (args.kills * args.interval * 1.5 + 5)))
    c = Chaos(work, args)
    recoveries: list[float] = []
    kills = {"taskmanager": 0, "jobmanager": 0}
    ok = False
    try:
        c.jobmanager()
        tms = [c.taskmanager(), c.taskmanager()]
        c.wait(lambda: c.get("/overview")["taskmanagers"] == 2, 20, "two taskmanagers")
        body = pipeline(work, args.rows, rate, args.keys).encode()
        job = c.request("POST", "/jobs", body, "application/x-yaml")["jid"]
        c.wait(lambda: c.all_running(job), 30, "the job to run")
        for i in range(args.kills):
            done = c.completed(job)
            c.wait(lambda: c.completed(job) > done or c.job(job)["state"] == "FINISHED", 30, "a checkpoint")
            time.sleep(c.rng.uniform(0.5, 1.5) * max(0.0, args.interval - 1.0))
            if c.job(job)["state"] == "FINISHED":
                print(f"the job finished after {i} kill(s); raise --rows or lower --rate for more", file=sys.stderr)
                break
            restarts = c.job(job)["numRestarts"]
            t0 = time.monotonic()
            if args.jobmanager_every and (i + 1) % args.jobmanager_every == 0:
                c.kill("jobmanager")
                kills["jobmanager"] += 1
                c.jobmanager()  # the job is resumed by the new JobManager (its restart count starts again)
            else:
                victim = tms.pop(c.rng.randrange(len(tms)))
                c.kill(victim)
                kills["taskmanager"] += 1
                tms.append(c.taskmanager())
                # the restart counter cannot be missed, however fast the restart is
                c.wait(lambda: c.job(job)["numRestarts"] > restarts or c.job(job)["state"] == "FINISHED", 60,
                       "the restart")
            c.wait(lambda: c.all_running(job), 60, "the job to run again")
            recoveries.append(time.monotonic() - t0)
        state = c.wait(lambda: (s := c.job(job)["state"]) in ("FINISHED", "FAILED", "CANCELED") and s, 300,
                       "the job to end")
        committed, lost, dup = check(work / "out", args.rows, args.keys)
        print(f"kills survived: {sum(kills.values())} (taskmanagers {kills['taskmanager']}, "
              f"jobmanager {kills['jobmanager']})")
        print(f"job state: {state}")
        print(f"rows expected: {args.rows}, committed: {committed}, lost: {lost}, duplicated: {dup}")
        if recoveries:
            print(f"recovery time (kill -> all subtasks RUNNING again): worst {max(recoveries):.2f} s, "
                  f"median {statistics.median(recoveries):.2f} s")
        ok = state == "FINISHED" and lost == 0 and dup == 0
    finally:
        c.stop_all()
        if not ok:
            print(f"logs kept in {work}", file=sys.stderr)
        elif args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
