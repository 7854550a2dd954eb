"""The kafka source's reader on a real broker (tansu): splits, offsets, restores, decoding, errors.

The reader is driven as the source task drives it (``read_batches``: poll, ``wait_available`` on
``[]``); expected records are the ones the test produced, compared independently.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamlet.clock import ManualClock
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.kafka.source import KafkaSource
from streamlet.errors import DecodeError, PipelineDefinitionError
from streamlet.testing.sources import TestingSourceContext, read_batches
from tests.support.services import Broker, free_port

WHERE = "test.yaml: sources.bids"


def _params(broker: Broker | str, topic: Any, **kw: Any) -> dict[str, Any]:
    bootstrap = broker if isinstance(broker, str) else broker.bootstrap
    return KafkaSource.validate({"bootstrap": bootstrap, "topic": topic, **kw}, WHERE, ".")


def _fill(broker: Broker, topic: str, partitions: int, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` JSON records ``{"i": k, "p": k % partitions}`` produced to partition ``k % partitions``."""
    recs = [{"i": k, "p": k % partitions} for k in range(start, start + n)]
    for p in range(partitions):
        broker.produce(topic, [orjson.dumps(r) for r in recs if r["p"] == p], partition=p)
    return recs


async def _open(params: dict[str, Any], splits: list[dict[str, Any]], batch_size: int = 100,
                clock: Any = None, sub: int = 0, parallelism: int = 1) -> Any:
    reader = KafkaSource.create_reader(params, TestingSourceContext(sub, parallelism, batch_size, clock=clock,
                                                                    node_id="bids"))
    await reader.open()
    reader.add_splits(splits)
    return reader


async def _read(params: dict[str, Any], splits: list[dict[str, Any]], **kw: Any) -> list[tuple[str, list[Any]]]:
    reader = await _open(params, splits, **kw)
    out = []
    try:
        while True:
            batch = reader.poll()
            if batch is None:
                break
            if not batch:
                await asyncio.wait_for(reader.wait_available(), 10)
                continue
            out.append((reader.current_split, batch))
        assert reader.progress() == 1.0
    finally:
        await reader.close()
    return out


async def _read_until(reader: Any, n: int, timeout: float = 10) -> list[Any]:
    """Records of an unbounded reader until ``n`` came (a batch may bring more)."""
    out: list[Any] = []

    async def go() -> None:
        while len(out) < n:
            batch = reader.poll()
            assert batch is not None, "an unbounded reader ended"
            if batch:
                out.extend(batch)
            else:
                await reader.wait_available()

    await asyncio.wait_for(go(), timeout)
    return out


def test_bounded_read_every_record_once_in_partition_order(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic("bids", 4)
    recs = _fill(kafka_broker, topic, 4, 2000)
    params = _params(kafka_broker, topic, bounded=True)
    splits = KafkaSource.enumerate_splits(params, 2)
    assert [s["id"] for s in splits] == [f"bids:{p}" for p in range(4)]
    assert [s["end"] for s in splits] == [500] * 4
    # records produced after the start are past the bounded end
    _fill(kafka_broker, topic, 4, 40, start=10_000)
    batches = asyncio.run(_read(params, splits, batch_size=64))
    got = [r for _, b in batches for r in b]
    assert sorted(got, key=lambda r: r["i"]) == recs
    for split_id, batch in batches:
        assert all(f"bids:{r['p']}" == split_id for r in batch)  # one partition per batch
        assert len(batch) <= 64
    for p in range(4):
        mine = [r["i"] for r in got if r["p"] == p]
        assert mine == sorted(mine)


def _topic_whose_earliest_answer_is_late(broker: Broker, attempts: int = 150,
                                         writers: int = 6) -> tuple[str, int, int] | None:
    """A one-partition topic written by ``writers`` transactional producers at once, for which tansu's
    ListOffsets(earliest) names a later offset than 0 (it answers with the batch it stored first;
    a batch given a lower offset can be stored after it).  Returns (topic, that offset, records),
    or None when the broker answered right every time."""
    import threading
    import uuid

    from confluent_kafka import Consumer, Producer, TopicPartition

    producers = [Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                           "transactional.id": f"late-{uuid.uuid4().hex}"}) for _ in range(writers)]
    for pr in producers:
        pr.init_transactions(10)
    probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
    try:
        for k in range(attempts):
            topic = broker.create_topic(f"late-{k}", 1)
            start = threading.Barrier(len(producers))

            def write(pr: Any, i: int) -> None:
                pr.begin_transaction()
                start.wait(10)
                for j in range(500):
                    pr.produce(topic, orjson.dumps({"w": i, "j": j, "pad": "x" * 80}), partition=0)
                pr.flush(10)
                pr.commit_transaction(10)

            threads = [threading.Thread(target=write, args=(pr, i)) for i, pr in enumerate(producers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            low = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[0]
            if low > 0:
                return topic, low, 500 * len(producers)
        return None
    finally:
        probe.close()
        for pr in producers:
            pr.flush(1)


def test_earliest_reads_from_offset_zero_when_the_broker_names_a_later_start(kafka_broker: Broker) -> None:
    """The cause of a flaky exactly-once sink test (4332 of 4600 read): the reader started where
    ListOffsets(earliest) said, and tansu said too late.  The source and the tests' reader start at 0."""
    found = _topic_whose_earliest_answer_is_late(kafka_broker)
    if found is None:
        pytest.skip("tansu answered ListOffsets(earliest) right in every attempt")
    topic, low, n = found
    params = _params(kafka_broker, topic, bounded=True)
    got = [r for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert sorted((r["w"], r["j"]) for r in got) == [(w, j) for w in range(6) for j in range(500)], low
    assert len(kafka_broker.consume_all(topic)) == n


def test_restore_from_snapshot_reads_exactly_the_rest_at_another_parallelism(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic("t", 3)
    recs = _fill(kafka_broker, topic, 3, 900)
    params = _params(kafka_broker, topic, bounded=True)
    splits = KafkaSource.enumerate_splits(params, 1)

    async def first() -> tuple[list[Any], list[dict[str, Any]]]:
        reader = await _open(params, splits, batch_size=50)
        try:
            got = [r for b in await read_batches(reader, max_records=400) for r in b]
            return got, reader.snapshot_state(1)
        finally:
            await reader.close()

    got, state = asyncio.run(first())
    assert all(isinstance(s["offset"], int) for s in state if s["offset"] != "earliest")
    rest: list[Any] = []
    for sub in range(2):  # the states spread over two new subtasks
        mine = [s for i, s in enumerate(state) if i % 2 == sub]
        rest += [r for _, b in asyncio.run(_read(params, mine, sub=sub, parallelism=2)) for r in b]
    assert sorted(got + rest, key=lambda r: r["i"]) == recs


def test_starting_offsets_latest_explicit_and_timestamp(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic("s", 2)
    ts = [1_700_000_000_000 + k * 10 for k in range(100)]
    for p in range(2):
        kafka_broker.produce(topic, [orjson.dumps({"k": k}) for k in range(100) if k % 2 == p], partition=p,
                             timestamps=[t for k, t in enumerate(ts) if k % 2 == p])

    async def unbounded(params: dict[str, Any], n: int, then: Any = None) -> list[Any]:
        reader = await _open(params, KafkaSource.enumerate_splits(params, 1))
        try:
            if then is not None:
                then()
            return await _read_until(reader, n)
        finally:
            await reader.close()

    # latest: resolved at the start, so records produced after it (and before the first poll) count
    params = _params(kafka_broker, topic, starting_offsets="latest", discovery_interval=0)
    late = unbounded(params, 1, lambda: kafka_broker.produce(topic, [b'{"k": "late"}'], partition=1))
    assert asyncio.run(late) == [{"k": "late"}]
    # {partition: offset}: partition 0 from offset 40, partition 1 (not named) from the start
    params = _params(kafka_broker, topic, starting_offsets={0: 40}, bounded=True)
    got = [r["k"] for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert "late" in got
    got = [k for k in got if k != "late"]
    assert sorted(k for k in got if k % 2 == 0) == [k for k in range(100) if k % 2 == 0][40:]
    assert sorted(k for k in got if k % 2 == 1) == [k for k in range(100) if k % 2 == 1]
    # timestamp: the first record at or after it, per partition (tansu's offsets_for_times answers 0)
    params = _params(kafka_broker, topic, starting_offsets={"timestamp": ts[61]}, bounded=True)
    got = [r["k"] for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert sorted(k for k in got if k != "late") == list(range(61, 100))


def test_committed_offsets_resume_and_are_committed_on_checkpoint_complete(kafka_broker: Broker) -> None:
    from confluent_kafka import Consumer, TopicPartition

    topic = kafka_broker.create_topic("c", 1)
    _fill(kafka_broker, topic, 1, 300)
    params = _params(kafka_broker, topic, group_id="g1", starting_offsets="committed", discovery_interval=0)

    async def run() -> list[Any]:
        reader = await _open(params, KafkaSource.enumerate_splits(params, 1), batch_size=100)
        try:
            got = await _read_until(reader, 100)
            reader.snapshot_state(7)
            reader.notify_checkpoint_complete(7)
            await _read_until(reader, 1)  # one more job commits
            return got
        finally:
            await reader.close()

    got = asyncio.run(run())
    c = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "g1"})
    committed = c.committed([TopicPartition(topic, 0)], timeout=5)[0].offset
    c.close()
    assert committed == got[-1]["i"] + 1
    # a new job starting from the committed offsets goes on from there
    fresh = _params(kafka_broker, topic, group_id="g1", starting_offsets="committed", bounded=True)
    splits = KafkaSource.enumerate_splits(fresh, 1)
    assert splits[0]["offset"] == committed
    rest = [r["i"] for _, b in asyncio.run(_read(fresh, splits)) for r in b]
    assert rest == list(range(committed, 300))


def test_metadata_fields_key_timestamp_headers(kafka_broker: Broker) -> None:
    topic = kafka_broker.create_topic("m", 1)
    kafka_broker.produce(topic, [b"hello", b"world"], partition=0, keys=[b"k1", None],
                         timestamps=[1_700_000_000_001, 1_700_000_000_002], headers=[[("h", b"x")], None])
    params = _params(kafka_broker, topic, format="text", bounded=True,
                     metadata={"ts": "timestamp", "k": "key", "hd": "headers", "part": "partition", "off": "offset",
                               "top": "topic"})
    got = [r for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert got == [
        {"value": "hello", "ts": 1_700_000_000_001, "k": "k1", "hd": {"h": "x"}, "part": 0, "off": 0, "top": "m"},
        {"value": "world", "ts": 1_700_000_000_002, "k": None, "hd": {}, "part": 0, "off": 1, "top": "m"},
    ]


def test_tombstones_first_last_and_alone_in_a_run_are_skipped(kafka_broker: Broker) -> None:
    """A run's values are decoded as one JSON array; a tombstone (no value) anywhere in it, also
    first or last, sends the run value by value, which skips it."""
    topic = kafka_broker.create_topic("tomb", 1)
    kafka_broker.produce(topic, [None, b'{"a": 1}', b'{"a": 2}', None, b'{"a": 3}', None], partition=0)
    params = _params(kafka_broker, topic, bounded=True)
    for batch_size in (1, 2, 3, 100):
        got = [r for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1), batch_size=batch_size))
               for r in b]
        assert got == [{"a": 1}, {"a": 2}, {"a": 3}], batch_size


def test_bad_json_fail_skip_and_dead_letter(kafka_broker: Broker, tmp_path: Path) -> None:
    topic = kafka_broker.create_topic("bad", 1)
    values = [b'{"a": 1}', b'{"a": 2', b'{"a": 3}', b"\xff", b'{"a": 5}']
    kafka_broker.produce(topic, values, partition=0)
    params = _params(kafka_broker, topic, bounded=True)
    with pytest.raises(DecodeError, match=r"source 'bids': cannot decode kafka record bad:0@1: not a JSON value"):
        asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1)))
    params = _params(kafka_broker, topic, bounded=True, on_error="skip")
    got = [r for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert got == [{"a": 1}, {"a": 3}, {"a": 5}]
    dead_file = tmp_path / "dead" / "bad.jsonl"
    params = _params(kafka_broker, topic, bounded=True, on_error="dead_letter", dead_letter={"path": str(dead_file)})
    got = [r for _, b in asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1))) for r in b]
    assert got == [{"a": 1}, {"a": 3}, {"a": 5}]
    dead = [orjson.loads(line) for line in dead_file.read_bytes().splitlines()]
    assert [(d["topic"], d["partition"], d["offset"], d["value"]) for d in dead] == [
        ("bad", 0, 1, '{"a": 2'), ("bad", 0, 3, "\ufffd")]
    assert all("not a JSON value" in d["error"] for d in dead)
    kafka_broker.create_topic("dlq", 1)
    params = _params(kafka_broker, topic, bounded=True, on_error="dead_letter", dead_letter={"topic": "dlq"})
    asyncio.run(_read(params, KafkaSource.enumerate_splits(params, 1)))
    letters = [orjson.loads(m.value()) for m in kafka_broker.consume_all("dlq", expect=2)]
    assert [d["offset"] for d in letters] == [1, 3]


def test_missing_topic_is_an_error_unless_created(kafka_broker: Broker) -> None:
    kafka_broker.create_topic("other", 1)
    params = _params(kafka_broker, "nope", bounded=True)
    with pytest.raises(PipelineDefinitionError) as exc:
        KafkaSource.enumerate_splits(params, 1)
    msg = str(exc.value)
    assert "topic 'nope' does not exist" in msg and kafka_broker.bootstrap in msg and "create_topic" in msg
    params = _params(kafka_broker, "made", create_topic=True, partitions=3, bounded=True)
    splits = KafkaSource.enumerate_splits(params, 1)
    assert [s["id"] for s in splits] == ["made:0", "made:1", "made:2"]


def test_broker_down_at_start_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    params = _params(address, "t", bounded=True, broker_timeout="1s")
    with pytest.raises(PipelineDefinitionError, match=rf"cannot reach the kafka broker at '{address}'"):
        KafkaSource.enumerate_splits(params, 1)

    async def reader() -> None:
        r = KafkaSource.create_reader(params, TestingSourceContext(node_id="bids"))
        try:
            await r.open()
        finally:
            await r.close()

    with pytest.raises(ConnectorError, match=rf"source 'bids': cannot reach the kafka broker at '{address}'"):
        asyncio.run(reader())


def test_new_partitions_and_pattern_topics_are_picked_up_once(kafka_broker: Broker) -> None:
    kafka_broker.create_topic("ev-a", 1)
    clock = ManualClock()
    params = _params(kafka_broker, "^ev-.*", discovery_interval="5s")
    splits = KafkaSource.enumerate_splits(params, 2)
    assert [s["id"] for s in splits] == ["ev-a:0", "discovery"]

    async def run() -> tuple[list[Any], list[Any]]:
        # subtask 0 holds the partition, subtask 1 the discovery split (as the coordinator assigns)
        r0 = await _open(params, [splits[0]], clock=clock)
        r1 = await _open(params, [splits[1]], clock=clock, sub=1, parallelism=2)
        try:
            kafka_broker.produce("ev-a", [b'{"n": 1}'], partition=0)
            first = await _read_until(r0, 1)
            kafka_broker.create_topic("ev-b", 2)
            kafka_broker.create_topic("other", 1)
            kafka_broker.produce("ev-b", [b'{"n": 2}'], partition=0)
            kafka_broker.produce("ev-b", [b'{"n": 3}'], partition=1)
            kafka_broker.produce("other", [b'{"n": 4}'])
            found = await _read_until(r1, 0)
            assert r1.snapshot_state(1) == [{"id": "discovery", "known": {"ev-a": 1}, "done": False}]  # not due yet
            await clock.advance(6)
            found = await _read_until(r1, 2)
            state = r1.snapshot_state(2)
            assert {s["id"] for s in state} == {"ev-b:0", "ev-b:1", "discovery"}
            # tansu cannot add partitions (no CreatePartitions): a grown partition count is fed as the
            # metadata answer would bring it; the new partition is taken from its start, once
            r1._discover({"ev-a": 1, "ev-b": 3})
            r1._discover({"ev-a": 1, "ev-b": 3})
            state = r1.snapshot_state(3)
            assert [s["offset"] for s in state if s["id"] == "ev-b:2"] == ["earliest"]
            assert sorted(s["id"] for s in state) == ["discovery", "ev-b:0", "ev-b:1", "ev-b:2"]
            assert [s["known"] for s in state if s["id"] == "discovery"] == [{"ev-a": 1, "ev-b": 3}]
            # a restored discovery split knows them: it adds nothing again
            r2 = await _open(params, [s for s in state if s["id"] == "discovery"], clock=clock)
            try:
                await clock.advance(6)
                assert await _read_until(r2, 0) == [] and r2.snapshot_state(4)[0]["known"] == {"ev-a": 1, "ev-b": 3}
                r2.poll()
                await r2.wait_available()
                r2.poll()
                assert [s["id"] for s in r2.snapshot_state(5)] == ["discovery"]
            finally:
                await r2.close()
            return first, found
        finally:
            await r0.close()
            await r1.close()

    first, found = asyncio.run(run())
    assert first == [{"n": 1}]
    assert sorted(r["n"] for r in found) == [2, 3]


def test_validation_errors_name_the_key() -> None:
    cases = [
        ({"topic": "a b"}, "sources.bids.topic"),
        ({"topic": "^(x"}, "sources.bids.topic"),
        ({"topic": "t", "starting_offsets": "middle"}, "sources.bids.starting_offsets"),
        ({"topic": "t", "starting_offsets": "committed"}, "sources.bids.starting_offsets"),
        ({"topic": "t", "metadata": {"x": "size"}}, "sources.bids.metadata.x"),
        ({"topic": "t", "on_error": "dead_letter"}, "sources.bids.dead_letter"),
        ({"topic": "t", "format": "avro"}, "sources.bids.format"),
    ]
    for kw, where in cases:
        with pytest.raises(PipelineDefinitionError) as exc:
            KafkaSource.validate({"bootstrap": "127.0.0.1:9", **kw}, WHERE, ".")
        assert exc.value.where.endswith(where), (kw, str(exc.value))


@pytest.mark.parametrize("p", [1, 2])
def test_bounded_kafka_pipeline_with_event_time_windows(kafka_broker: Broker, tmp_path: Path, p: int) -> None:
    """A batch job over a topic: per-partition watermarks, a tumbling window, the complete output."""
    from collections import Counter

    from tests.support.pipelines import plan_file, read_output, run_graph, write_pipeline

    topic = kafka_broker.create_topic("bids", 4)
    bids = [{"auction": k % 7, "dateTime": 1_700_000_000_000 + k * 37} for k in range(3000)]
    for part in range(4):
        kafka_broker.produce(topic, [orjson.dumps(b) for k, b in enumerate(bids) if k % 4 == part], partition=part)
    path = write_pipeline(tmp_path, f"""
        name: bids-per-auction
        sources:
          bids:
            type: kafka
            bootstrap: {kafka_broker.bootstrap}
            topic: bids
            bounded: true
            timestamp: dateTime
            watermark: {{max_out_of_orderness: 1s}}
        transforms:
          counts:
            input: bids
            key_by: auction
            window: {{type: tumbling, size: 10s}}
            aggregate: {{num: count}}
        sinks:
          out: {{input: counts, type: file, path: out}}
        """)
    # small batches and frequent watermarks: partitions read together must hold the watermark
    # back from the start, or the records of a partition whose first batch comes later are late
    result = run_graph(plan_file(path, p), **{"pipeline.auto-watermark-interval": "1ms", "pipeline.batch-size": 16})
    assert result.state == "FINISHED", result.error
    expected = Counter((b["auction"], b["dateTime"] // 10_000 * 10_000) for b in bids)
    got = {(r["auction"], r["window_start"]): r["num"] for r in read_output(tmp_path / "out")}
    assert got == dict(expected)


def test_rate_paces_the_source_on_the_clock_split_over_subtasks(kafka_broker: Broker) -> None:
    from streamlet.testing.sources import read_paced

    topic = kafka_broker.create_topic("paced", 2)
    recs = _fill(kafka_broker, topic, 2, 4000)
    params = _params(kafka_broker, topic, bounded=True, rate=1000)  # 500/s per subtask of 2
    splits = KafkaSource.enumerate_splits(params, 2)
    seconds = 1.5

    async def run(sub: int) -> tuple[list[tuple[float, int]], list[dict[str, Any]]]:
        clock = ManualClock()
        reader = await _open(params, [splits[sub]], batch_size=500, clock=clock, sub=sub, parallelism=2)
        try:
            return await read_paced(reader, clock, seconds), reader.snapshot_state(1)
        finally:
            await reader.close()

    for sub in range(2):
        batches, state = asyncio.run(run(sub))
        sent = 0
        for t, n in batches:
            assert sent <= 500 * t + 1e-6  # record k leaves at the earliest at k / 500 s
            assert n <= 5  # ~10 ms worth per batch
            sent += n
        assert 500 * seconds <= sent <= 500 * seconds + 5
        # the offset in the snapshot is the next record not handed out, as unpaced
        assert state[0]["offset"] == sent
    assert len(recs) == 4000
