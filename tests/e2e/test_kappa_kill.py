"""The Kappa example with a TaskManager killed by SIGKILL mid-run (real processes, real services).

A ``streamlet jobmanager`` and two ``streamlet taskmanager`` processes run the example's
bids-per-auction job (configs/pipelines/kappa, unbounded, checkpoints every 500 ms), submitted
over REST, reading a tansu broker and writing the machine's PostgreSQL; the test's pipeline adds
a second sink that appends every window result exactly-once, so a duplicate would show there.
Bids are produced in three chunks; after the first checkpoint with rows was merged, the second
chunk is produced, and once window results of it are staged (pre-committed, checkpoint not yet
complete) one TaskManager is killed with SIGKILL; a replacement is started, the job
restarts from its last completed checkpoint, the third chunk and a closing bid per partition
(far ahead in event time, so every earlier window closes) follow.  Both tables must then hold
exactly the counts computed here from the bids the test produced: one row per window, none lost,
none twice.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streamlet.api.yaml.variables import resolve_text
from tests.e2e.conftest import Cluster, wait_for
from tests.support.services import Broker, pg_rows

KAPPA = Path(__file__).resolve().parents[2] / "configs" / "pipelines" / "kappa"
BASE = 1_700_000_000_000
#: the log sink: every window result appended, exactly-once
LOG_SINK = """
  log:
    input: counts
    type: postgres
    dsn: "{dsn}"
    table: bids_log
    mode: append
    batch_rows: 1          # staged as soon as a window fires: the kill below finds it staged, not merged
    create_table: true
    columns: {{auction: bigint, window_start: bigint, window_end: bigint, num: bigint, max_price: bigint}}
"""


def _bids(start: int, n: int) -> list[dict[str, Any]]:
    # 1 bid per 10 ms of event time: a 10 s window holds 1000 bids over 40 auctions
    return [{"auction": k % 40, "bidder": k, "price": (k * 7919) % 1000, "dateTime": BASE + k * 10}
            for k in range(start, start + n)]


def _produce(broker: Broker, bids: list[dict[str, Any]]) -> None:
    by_part: dict[int, list[bytes]] = {}
    for b in bids:
        by_part.setdefault(b["auction"] % 4, []).append(orjson.dumps(b))
    for part, values in by_part.items():
        broker.produce("bids", values, partition=part)


def _expected(bids: list[dict[str, Any]]) -> set[tuple[int, int, int, int, int]]:
    num = Counter((b["auction"], b["dateTime"] // 10_000 * 10_000) for b in bids)
    top: dict[tuple[int, int], int] = {}
    for b in bids:
        k = (b["auction"], b["dateTime"] // 10_000 * 10_000)
        top[k] = max(top.get(k, b["price"]), b["price"])
    return {(a, ws, ws + 10_000, n, top[(a, ws)]) for (a, ws), n in num.items()}


def test_kappa_with_a_taskmanager_killed_mid_run(cluster: Cluster, kafka_broker: Broker, pg_dsn: str) -> None:
    kafka_broker.create_topic("bids", 4)
    chunks = [_bids(0, 4000), _bids(4000, 4000), _bids(8000, 4000)]
    _produce(kafka_broker, chunks[0])

    text = (KAPPA / "bids-per-auction.yaml").read_text() + LOG_SINK.format(dsn="${PG_DSN}")
    job_yaml = resolve_text(text, {"KAFKA": kafka_broker.bootstrap, "PG_DSN": pg_dsn, "PARALLELISM": "2",
                                   "CHECKPOINT_INTERVAL": "2s", "BOUNDED": "false"})
    cluster.jobmanager()
    cluster.taskmanager(1)
    victim = cluster.taskmanager(1)
    job = cluster.submit(job_yaml)
    cluster.wait_state(job, "RUNNING")

    def merged_rows() -> int:
        rows = pg_rows(pg_dsn, "SELECT coalesce(sum(rows), 0) FROM streamlet_sink_progress")
        return int(rows[0][0])

    # the first checkpoints with window results are merged: the job is mid-run
    wait_for(lambda: merged_rows() > 0, 60, "a merged checkpoint with rows", cluster.logs)
    _produce(kafka_broker, chunks[1])

    def staged_chunk2() -> int:
        names = [n for (n,) in pg_rows(pg_dsn, "SELECT tablename FROM pg_tables WHERE tablename LIKE "
                                               "'\\_streamlet\\_stage\\_bids\\_log%'")]
        return sum(pg_rows(pg_dsn, f'SELECT count(*) FROM "{n}" WHERE window_start >= {BASE + 40_000}')[0][0]
                   for n in names)

    # windows of the second chunk fired and are staged for a checkpoint that has not completed yet:
    # the attempt dies between the pre-commit and the commit
    wait_for(staged_chunk2, 60, "staged window results of the second chunk", cluster.logs)
    victim.kill(signal.SIGKILL)
    victim.popen.wait(10)
    # the JobManager drops the dead TaskManager first, so the replacement's registration is seen
    wait_for(lambda: cluster.get("/overview")["taskmanagers"] == 1, 30, "the lost taskmanager to be removed",
             cluster.logs)
    cluster.taskmanager(1)  # the replacement
    wait_for(lambda: cluster.job(job).get("numRestarts", 0) >= 1, 60, "the job to restart after the lost TaskManager",
             cluster.logs)
    cluster.wait_state(job, "RUNNING", timeout=60)
    assert "lost" in str(cluster.get(f"/jobs/{job}/exceptions")["root-exception"])
    _produce(kafka_broker, chunks[2])
    # a bid per partition far ahead: the watermark passes every window of the chunks
    _produce(kafka_broker, [{"auction": p, "bidder": -1, "price": 0, "dateTime": BASE + 3_600_000} for p in range(4)])

    expected = _expected(chunks[0] + chunks[1] + chunks[2])

    def table(name: str) -> list[tuple[int, ...]]:
        return pg_rows(pg_dsn, f"SELECT auction, window_start, window_end, num, max_price FROM {name}")

    wait_for(lambda: set(table("bids_per_auction")) == expected and len(table("bids_log")) >= len(expected), 90,
             "every window in PostgreSQL", cluster.logs)
    assert set(table("bids_per_auction")) == expected
    log = table("bids_log")
    assert sorted(log) == sorted(expected), "a window result was lost or written twice"
    status, _ = cluster.request("PATCH", f"/jobs/{job}?mode=cancel")
    assert status == 202
    cluster.wait_state(job, "CANCELED", timeout=30)
