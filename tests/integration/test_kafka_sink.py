"""The kafka sink on a real broker (tansu): records, keys, guarantees, transactions, restores, errors.

The writer is driven as the sink task drives it (write, prepare_commit at a barrier, commit when
the checkpoint completes, restore_state + commit again after a failure); what reached the topic
is read back with a plain consumer and compared with what the test wrote.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.kafka.sink import KafkaSink
from streamlet.errors import PipelineDefinitionError, SinkRecordError
from tests.support.services import Broker, free_port

WHERE = "job.yaml: sinks.out"


def _params(bootstrap: str, topic: str = "out", **kw: Any) -> dict[str, Any]:
    return KafkaSink.validate({"bootstrap": bootstrap, "topic": topic, **kw}, WHERE, ".")


def _writer(params: dict[str, Any], sub: int = 0) -> Any:
    return KafkaSink.create_writer(params, SimpleNamespace(subtask_index=sub, parallelism=1))


def test_at_least_once_flushes_at_the_barrier_with_keys(kafka_broker: Broker) -> None:
    kafka_broker.create_topic("out", 3)
    recs = [{"auction": k % 5, "n": k} for k in range(2000)]

    async def run() -> None:
        w = _writer(_params(kafka_broker.bootstrap, key="auction"))
        await w.open()
        try:
            await w.write(recs[:1500])
            assert await w.prepare_commit(1) == []
            # acknowledged by the broker once prepare_commit returned
            assert len(kafka_broker.consume_all("out", timeout=5)) == 1500
            await w.write(recs[1500:])
            await w.finish()
        finally:
            await w.close()

    asyncio.run(run())
    got = kafka_broker.consume_all("out", expect=2000)
    assert sorted(orjson.loads(m.value())["n"] for m in got) == list(range(2000))
    by_key: dict[bytes, set[int]] = {}
    for m in got:
        assert m.key() == str(orjson.loads(m.value())["auction"]).encode()
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(parts) == 1 for parts in by_key.values())  # one key, one partition


def test_exactly_once_transaction_per_checkpoint_committed_on_completion(kafka_broker: Broker) -> None:
    kafka_broker.create_topic("out", 2)

    async def run() -> list[Any]:
        w = _writer(_params(kafka_broker.bootstrap, guarantee="exactly_once", key="k"))
        await w.open()
        try:
            await w.write([{"k": i, "v": "a"} for i in range(100)])
            first = await w.prepare_commit(1)
            await w.write([{"k": i, "v": "b"} for i in range(50)])
            second = await w.prepare_commit(2)
            assert await w.prepare_commit(3) == []  # nothing written since: no transaction
            await w.commit(first)
            await w.commit(second)
            return first + second
        finally:
            await w.close()

    committed = asyncio.run(run())
    assert [c["transactional_id"].rsplit("-", 1)[1] for c in committed] == ["1", "2"]
    assert all(c["producer_id"] >= 0 and c["producer_epoch"] >= 0 for c in committed)
    got = [orjson.loads(m.value()) for m in kafka_broker.consume_all("out", expect=150)]
    assert sorted((r["v"], r["k"]) for r in got) == sorted([("a", i) for i in range(100)] +
                                                            [("b", i) for i in range(50)])


def test_exactly_once_restore_recommits_and_aborts_lingering(kafka_broker: Broker,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A writer dies after checkpoint 1 was prepared (and completed) but before its commit, with a
    second transaction open; the restored writer commits the first by EndTxn and aborts the second."""
    kafka_broker.create_topic("out", 1)
    params = _params(kafka_broker.bootstrap, guarantee="exactly_once")

    async def crash() -> tuple[list[Any], Any]:
        w = _writer(params)
        await w.open()
        await w.write([{"x": i} for i in range(10)])
        committables = await w.prepare_commit(1)
        state = w.snapshot_state(1)
        await w.write([{"x": 100}])  # in the transaction after checkpoint 1
        # the process dies: no commit, no abort (the producers are dropped without a word)
        for t in [w._txn, *w._pending.values()]:
            t.producer.flush(5)
        return committables, state

    committables, state = asyncio.run(crash())

    async def restore() -> None:
        w = _writer(params)
        w.restore_state(state)
        await w.open()
        try:
            await w.commit(committables)  # the restored checkpoint's transactions again
            await w.commit(committables)  # and once more: a no-op
            await w.write([{"x": 200}])
            await w.commit(await w.prepare_commit(2))
        finally:
            await w.close()

    with caplog.at_level(logging.INFO, logger="streamlet.connectors.kafka.sink"):
        asyncio.run(restore())
    lingering = f"{committables[0]['transactional_id'][:-2]}-2"
    assert any(f"aborted transaction {lingering}" in r.getMessage() for r in caplog.records), caplog.text
    # tansu shows aborted records too; the transactions themselves are what can be checked there
    values = [orjson.loads(m.value())["x"] for m in kafka_broker.consume_all("out", expect=12)]
    assert set(range(10)) | {200} <= set(values)


def test_record_without_the_key_field_names_the_record(kafka_broker: Broker) -> None:
    kafka_broker.create_topic("out", 1)

    async def run() -> None:
        w = _writer(_params(kafka_broker.bootstrap, key="user"))
        await w.open()
        try:
            await w.write([{"user": 1}, {"name": "x"}])
        finally:
            await w.close()

    with pytest.raises(SinkRecordError, match=r"cannot write record \{'name': 'x'\}: it has no key field 'user'"):
        asyncio.run(run())


def test_missing_topic_and_unreachable_broker(kafka_broker: Broker) -> None:
    async def open_close(params: dict[str, Any]) -> None:
        w = _writer(params)
        try:
            await w.open()
        finally:
            await w.close()

    with pytest.raises(ConnectorError, match=r"sink 'out': topic 'absent' does not exist on .*create_topic"):
        asyncio.run(open_close(_params(kafka_broker.bootstrap, "absent")))
    asyncio.run(open_close(_params(kafka_broker.bootstrap, "made", create_topic=True, partitions=2)))
    assert len(kafka_broker.consume_all("made")) == 0
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConnectorError, match=rf"sink 'out': cannot reach the kafka broker at '{address}'"):
        asyncio.run(open_close(_params(address, broker_timeout="1s")))
    with pytest.raises(ConnectorError, match=r"sink 'out': invalid kafka client configuration: .*linger\.msec"):
        asyncio.run(open_close(_params(kafka_broker.bootstrap, properties={"linger.msec": 5})))


def test_validation_errors_name_the_key() -> None:
    for kw, where in [({"topic": "^x.*"}, "topic"), ({"key": ["a", 3]}, "key"), ({"guarantee": "twice"}, "guarantee"),
                      ({"transaction_timeout": "soon"}, "transaction_timeout")]:
        with pytest.raises(PipelineDefinitionError) as exc:
            KafkaSink.validate({"bootstrap": "127.0.0.1:9", "topic": "t", **kw}, WHERE, ".")
        assert exc.value.where == f"{WHERE}.{where}", str(exc.value)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_nexmark_into_kafka_pipeline(kafka_broker: Broker, tmp_path: Path, guarantee: str) -> None:
    """The pipeline shape of configs/pipelines/kappa/produce-nexmark.yaml: every event lands once."""
    from tests.support.pipelines import run_pipeline

    kafka_broker.create_topic("bids", 4)
    run_pipeline(tmp_path, f"""
        name: nexmark-to-kafka
        sources:
          events: {{type: nexmark, events: 5000, kind: bid}}
        sinks:
          bids: {{input: events, type: kafka, bootstrap: {kafka_broker.bootstrap}, topic: bids, key: auction,
                  guarantee: {guarantee}}}
        """, parallelism=2)
    got = [orjson.loads(m.value()) for m in kafka_broker.consume_all("bids", timeout=10)]
    assert got and all(set(r) >= {"auction", "bidder", "price", "dateTime"} for r in got)
    assert len(got) == len({(r["auction"], r["bidder"], r["dateTime"], r["price"]) for r in got})
    assert len(got) == sum(1 for e in range(5000) if e % 50 not in (0, 1, 2, 3))
