"""``kafka`` sink: records to a topic, at-least-once or exactly-once with the checkpoints.

YAML::

    sinks:
      out:
        input: counts
        type: kafka
        bootstrap: 127.0.0.1:9092
        topic: results
        key: auction               # a field (or a list of fields: the key is a JSON array)
        format: json               # json | text | raw
        guarantee: exactly_once    # at_least_once (default) | exactly_once | none

* ``at_least_once``: every checkpoint waits until the broker acknowledged everything written
  before its barrier (``prepare_commit`` flushes); after a restore the records since the last
  checkpoint are written again.
* ``exactly_once``: the records between two checkpoints go into one Kafka transaction of their
  own producer, id ``<prefix>-<token>-<subtask>-<k>`` (a new ``k`` per transaction).  The barrier
  flushes it; the checkpoint records the transaction (id, producer id and epoch); when the
  checkpoint completes, it is committed.  A restored job commits the transactions of the
  checkpoint it restores again by sending EndTxn with the recorded producer id and epoch
  (:mod:`.protocol`, as Flink's resumed transactions do): committing twice is a no-op.  Before
  writing, a restored writer aborts the transactions a failed attempt left open after that
  checkpoint (it initializes the following ids until it finds one never used), so
  ``read_committed`` consumers are not held back until the transaction timeout.
  Readers must use ``isolation.level=read_committed`` (librdkafka's default).

Limits of the test broker (tansu 0.6): it shows aborted and open transactional records to
``read_committed`` consumers (so on tansu exactly-once output looks like at-least-once output
after a failure), answers EndTxn for a transaction already committed with success, and cannot
add partitions to a topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import Param, SinkWriterBase, not_json, validate_params
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.kafka import common, protocol
from streamlet.errors import PipelineDefinitionError, SinkRecordError
from streamlet.time.durations import duration_ms

logger = logging.getLogger(__name__)

GUARANTEES = ("at_least_once", "exactly_once", "none")
#: at most this many transactional ids are probed for transactions a failed attempt left open
_MAX_PROBE = 64


def _node_of(where: str) -> str:
    return where.rsplit("sinks.", 1)[-1] if "sinks." in where else where


class KafkaSink:
    """Writes a topic (``type: kafka``); see the module docstring for the guarantees."""

    PARAMS = {
        "bootstrap": Param("str", "broker addresses, host:port[,host:port...]", required=True),
        "topic": Param("str", "the topic written", required=True),
        "format": Param("str", "how records are encoded: json, text (str(record)) or raw (bytes as they are)",
                        "json", choices=("json", "text", "raw")),
        "key": Param("str|list", "field whose value is the record key (a list: a JSON array of the fields)"),
        "key_format": Param("str", "how a key value is encoded: text (str) or json", "text", choices=("text", "json")),
        "guarantee": Param("str", "at_least_once (flush at checkpoints), exactly_once (transactions committed with "
                                  "the checkpoints) or none", "at_least_once", choices=GUARANTEES),
        "transactional_id": Param("str", "prefix of the transactional ids (exactly_once)"),
        "transaction_timeout": Param("any", "how long the broker keeps a transaction open; longer than a "
                                            "checkpoint interval plus a restart", "15min"),
        "properties": Param("map", "librdkafka producer properties, passed through", {}),
        "create_topic": Param("bool", "create the topic (partitions: N) when it does not exist", False),
        "partitions": Param("int", "partitions of a topic made by create_topic", 1),
        "broker_timeout": Param("any", "how long to wait for a broker at the start", "10s"),
    }
    GUARANTEE = "exactly_once"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check and normalize the keys (the broker is contacted when the writer opens)."""
        out = validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))
        common.validate_topics(out["topic"], where)
        if common.is_pattern(out["topic"]):
            raise PipelineDefinitionError("a sink writes one topic, not a pattern", f"{where}.topic")
        key = out["key"]
        if key is not None:
            keys = key if isinstance(key, list) else [key]
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise PipelineDefinitionError(f"expected a field name or a list of them, got {key!r}; compute other "
                                              "keys in a map step before the sink", f"{where}.key")
        if out["partitions"] < 1:
            raise PipelineDefinitionError(f"expected partitions >= 1, got {out['partitions']!r}", f"{where}.partitions")
        out["transaction_timeout"] = duration_ms(out["transaction_timeout"], f"{where}.transaction_timeout",
                                                 allow_zero=False)
        out["broker_timeout"] = duration_ms(out["broker_timeout"], f"{where}.broker_timeout", allow_zero=False)
        out["node_id"] = _node_of(where)
        out["pipeline"] = where.split(":", 1)[0] if ":" in where else "job"
        return out

    @classmethod
    def guarantee(cls, params: Mapping[str, Any]) -> str:
        """What this sink gives a job with these params."""
        return params["guarantee"]

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> KafkaWriter:
        return KafkaWriter(params, ctx)


@dataclass
class _Txn:
    """One transaction: its own producer, transactional id, producer id and epoch."""

    producer: Any
    transactional_id: str
    producer_id: int
    producer_epoch: int

    def committable(self) -> dict[str, Any]:
        return {"transactional_id": self.transactional_id, "producer_id": self.producer_id,
                "producer_epoch": self.producer_epoch}


class KafkaWriter(SinkWriterBase):
    """The writer of one sink subtask (a :class:`~streamlet.connectors.base.SinkWriter`).

    ``write`` hands records to librdkafka (``produce`` is a non-blocking C call; a full queue
    waits in a thread); delivery errors are kept by the delivery callback and raised by the
    next call.  Blocking librdkafka calls (flush, transactions, close) run in threads.
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._params = params
        self._what = f"sink {params['node_id']!r}"
        self._bootstrap: str = params["bootstrap"]
        self._topic: str = params["topic"]
        self._format: str = params["format"]
        key = params["key"]
        self._key: list[str] | None = (key if isinstance(key, list) else [key]) if key is not None else None
        self._key_json = params["key_format"] == "json"
        self._guarantee: str = params["guarantee"]
        self._sub: int = ctx.subtask_index
        self._ck: Any = None
        self._producer: Any = None
        self._error: Any = None
        self._token = uuid.uuid4().hex[:8]
        self._prefix = params["transactional_id"] or f"streamlet-{params['pipeline']}-{params['node_id']}"
        self._seq = 1
        self._restored: int | None = None
        self._txn: _Txn | None = None
        #: the next transaction, being started in a thread since the last prepare_commit
        self._next: asyncio.Future[_Txn] | None = None
        self._next_seq = 0
        self._pending: dict[str, _Txn] = {}

    # -- state ------------------------------------------------------------------------------

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """``{"token", "seq"}``: the transactional ids this writer uses next (exactly_once)."""
        if self._guarantee != "exactly_once":
            return None
        # the first id that may hold records written after this checkpoint
        return {"token": self._token, "seq": self._next_seq if self._next is not None else self._seq}

    def restore_state(self, state: Any) -> None:
        """Go on with the restored writer's transactional ids (lingering ones are aborted at open)."""
        if isinstance(state, dict) and "token" in state:
            self._token = state["token"]
            self._seq = self._restored = int(state["seq"])

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Check the broker and the topic; exactly_once after a restore: abort lingering transactions."""
        self._ck = common.client_module()
        await asyncio.to_thread(self._check_topic)
        if self._guarantee == "exactly_once":
            if self._restored is not None:
                await asyncio.to_thread(self._abort_lingering)
        else:
            self._producer = (await asyncio.to_thread(self._new_producer, None))[0]

    def _config(self, transactional_id: str | None, stats: list[tuple[int, int]] | None = None) -> dict[str, Any]:
        p = self._params
        cfg: dict[str, Any] = {
            "client.id": f"streamlet-{p['node_id']}-{self._sub}",
            "linger.ms": 5, "compression.type": "none",
            "delivery.report.only.error": True, "on_delivery": self._on_delivery,
        }
        if self._guarantee != "none":
            cfg["enable.idempotence"] = True
        if transactional_id is not None:
            assert stats is not None

            def on_stats(text: str) -> None:
                # librdkafka tells the producer id and epoch only in its statistics
                if not stats:
                    eos = orjson.loads(text).get("eos") or {}
                    if eos.get("producer_id", -1) >= 0:
                        stats.append((eos["producer_id"], eos["producer_epoch"]))

            cfg.update({"transactional.id": transactional_id, "transaction.timeout.ms": p["transaction_timeout"],
                        "statistics.interval.ms": 100, "stats_cb": on_stats})
        cfg.update(common.base_config(self._bootstrap, p["properties"]))
        return cfg

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None and self._error is None:
            self._error = err

    def _check_topic(self) -> None:
        admin = common.make_client("AdminClient", common.base_config(self._bootstrap, self._params["properties"]),
                                   self._what)
        existing = common.list_topics(admin, self._what, self._bootstrap, self._params["broker_timeout"] / 1000)
        if self._topic not in existing:
            if not self._params["create_topic"]:
                raise common.missing_topics_error(self._what, [self._topic], self._bootstrap, existing, "create_topic")
            common.create_topics(admin, [self._topic], self._params["partitions"], self._what, self._bootstrap)

    def _new_producer(self, transactional_id: str | None) -> tuple[Any, list[tuple[int, int]]]:
        """A producer (blocking); transactional: initialized, and the list its statistics fill
        with (producer id, epoch)."""
        stats: list[tuple[int, int]] = []
        producer = common.make_client("Producer", self._config(transactional_id, stats), self._what)
        if transactional_id is None:
            return producer, stats
        try:
            producer.init_transactions(common.METADATA_TIMEOUT)
        except self._ck.KafkaException as exc:
            producer.close()
            raise ConnectorError(f"{self._what}: cannot start a kafka transaction (transactional id "
                                 f"{transactional_id!r}) on {self._bootstrap!r}: {exc}") from None
        return producer, stats

    def _take_seq(self) -> int:
        """The number of the next transactional id (taken on the task, never in a thread)."""
        k = self._seq
        self._seq += 1
        return k

    def _begin(self, k: int) -> _Txn:
        """Blocking: the producer of transaction ``k``, initialized and in a transaction."""
        tid = f"{self._prefix}-{self._token}-{self._sub}-{k}"
        producer, stats = self._new_producer(tid)
        pid, epoch = self._producer_id(producer, stats, tid)
        producer.begin_transaction()
        return _Txn(producer, tid, pid, epoch)

    def _producer_id(self, producer: Any, stats: list[tuple[int, int]], tid: str) -> tuple[int, int]:
        deadline = time.monotonic() + common.METADATA_TIMEOUT
        while not stats and time.monotonic() < deadline:
            producer.poll(0.02)
        if not stats:
            producer.close()
            raise ConnectorError(f"{self._what}: no producer id for transactional id {tid!r} from {self._bootstrap!r}")
        return stats[0]

    def _abort_lingering(self) -> None:
        """Transactions of a failed attempt after the restored checkpoint: initialize each next id
        (which aborts its open transaction) until one was never used (epoch 0)."""
        assert self._restored is not None
        for k in range(self._restored, self._restored + _MAX_PROBE):
            tid = f"{self._prefix}-{self._token}-{self._sub}-{k}"
            producer, stats = self._new_producer(tid)
            _pid, epoch = self._producer_id(producer, stats, tid)
            producer.close()
            if epoch == 0:
                return
            logger.info("%s: aborted transaction %s left by a failed attempt", self._what, tid)

    async def write(self, records: list[Any]) -> None:
        if self._error is not None:
            self._raise_delivery()
        if self._guarantee == "exactly_once" and self._txn is None:
            nxt, self._next = self._next, None
            self._txn = await nxt if nxt is not None else await asyncio.to_thread(self._begin, self._take_seq())
        producer = self._txn.producer if self._txn is not None else self._producer
        values = self._values(records)
        keys = self._keys(records) if self._key is not None else None
        topic = self._topic
        produce = producer.produce
        i, n = 0, len(values)
        while i < n:
            try:
                if keys is None:
                    for i in range(i, n):  # noqa: B020 - resumes where a full queue stopped it
                        produce(topic, values[i])
                else:
                    for i in range(i, n):  # noqa: B020
                        produce(topic, values[i], keys[i])
                i = n
            except BufferError:
                await asyncio.to_thread(producer.poll, 0.05)  # the queue is full: wait for deliveries
        producer.poll(0)

    def _values(self, records: list[Any]) -> list[Any]:
        fmt = self._format
        if fmt == "json":
            try:
                return list(map(orjson.dumps, records))
            except TypeError as exc:
                raise not_json(records, exc) from exc
        if fmt == "text":
            return [r if type(r) is str else str(r) for r in records]
        for r in records:
            if not isinstance(r, (bytes, str)):
                raise SinkRecordError(r, "format: raw writes bytes or strings", "use format: json or text")
        return records

    def _keys(self, records: list[Any]) -> list[Any]:
        fields = self._key
        assert fields is not None
        try:
            if len(fields) == 1:
                f = fields[0]
                vals = [r[f] for r in records]
            else:
                vals = [[r[f] for f in fields] for r in records]
        except (KeyError, TypeError) as exc:
            bad = next((r for r in records if not isinstance(r, dict) or any(f not in r for f in fields)), None)
            raise SinkRecordError(bad, f"it has no key field {fields if len(fields) > 1 else fields[0]!r} ({exc!r})",
                                  "give every record the key field, or change key:") from None
        if self._key_json or len(fields) > 1:
            return list(map(orjson.dumps, vals))
        return [v if type(v) is str else None if v is None else str(v) for v in vals]

    def _raise_delivery(self) -> None:
        err = self._error
        raise ConnectorError(f"{self._what}: the kafka broker at {self._bootstrap!r} did not take records of topic "
                             f"{self._topic!r}: {err.str() if hasattr(err, 'str') else err}")

    async def _flush(self, producer: Any) -> None:
        left = await asyncio.to_thread(producer.flush, common.METADATA_TIMEOUT)
        if self._error is not None:
            self._raise_delivery()
        if left:
            raise ConnectorError(f"{self._what}: {left} record(s) not acknowledged by the kafka broker at "
                                 f"{self._bootstrap!r} within {common.METADATA_TIMEOUT:g}s; check that it runs")

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        """Flush; exactly_once: the transaction written since the last checkpoint is the committable."""
        if self._guarantee == "exactly_once":
            txn = await self._prepare_txn()
            if txn is None:
                return []
            if self._next is None:
                self._next_seq = self._take_seq()
                self._next = asyncio.get_running_loop().run_in_executor(None, self._begin, self._next_seq)
            return [txn.committable()]
        if self._guarantee == "at_least_once" and self._producer is not None:
            await self._flush(self._producer)
        return []

    async def _prepare_txn(self) -> _Txn | None:
        """Flush the open transaction and keep it with the prepared ones (None: nothing written)."""
        txn, self._txn = self._txn, None
        if txn is None:
            return None
        await self._flush(txn.producer)
        self._pending[txn.transactional_id] = txn
        return txn

    async def commit(self, committables: list[Any]) -> None:
        """Commit transactions: this writer's own by their producer, restored ones by EndTxn."""
        for c in committables:
            txn = self._pending.pop(c["transactional_id"], None)
            if txn is not None:
                await asyncio.to_thread(self._commit_own, txn)
            else:
                await asyncio.to_thread(self._commit_restored, c)

    def _commit_own(self, txn: _Txn) -> None:
        try:
            txn.producer.commit_transaction(common.METADATA_TIMEOUT)
        except self._ck.KafkaException as exc:
            raise ConnectorError(f"{self._what}: committing transaction {txn.transactional_id!r} on "
                                 f"{self._bootstrap!r} failed: {exc}") from None
        finally:
            txn.producer.close()

    def _commit_restored(self, c: Mapping[str, Any]) -> None:
        tid = c["transactional_id"]
        try:
            code = protocol.end_transaction(self._bootstrap, tid, c["producer_id"], c["producer_epoch"], True)
        except (OSError, protocol.ProtocolError) as exc:
            raise ConnectorError(f"{self._what}: re-committing transaction {tid!r} on {self._bootstrap!r} failed: "
                                 f"{exc}") from None
        if code == protocol.INVALID_TXN_STATE:
            logger.info("%s: transaction %s was committed before", self._what, tid)
        elif code != protocol.NONE:
            logger.warning("%s: transaction %s could not be committed again (error %d: it was aborted, e.g. by the "
                           "transaction timeout); its records are lost", self._what, tid, code)

    async def finish(self) -> None:
        """End of input: everything written becomes visible (pending transactions and the open one)."""
        if self._guarantee == "exactly_once":
            # no next transaction is started: nothing is written after the end
            await self._prepare_txn()
            await self.commit([t.committable() for t in list(self._pending.values())])
        elif self._producer is not None:
            await self._flush(self._producer)

    async def close(self) -> None:
        """Close the producers; an open transaction is aborted, prepared ones are left for a restore."""
        txn, self._txn = self._txn, None
        nxt, self._next = self._next, None
        if nxt is not None:
            await asyncio.wait((nxt,))
            if not nxt.cancelled() and nxt.exception() is None:
                txn = txn or nxt.result()
                if txn is not nxt.result():
                    await asyncio.to_thread(nxt.result().producer.close)
        producers = [t.producer for t in self._pending.values()]
        self._pending.clear()
        if self._producer is not None:
            producers.append(self._producer)
            self._producer = None

        def close_all() -> None:
            if txn is not None:
                try:
                    txn.producer.abort_transaction(common.METADATA_TIMEOUT)
                except self._ck.KafkaException as exc:
                    logger.info("%s: aborting transaction %s: %s", self._what, txn.transactional_id, exc)
                producers.append(txn.producer)
            for p in producers:
                p.flush(1)
                p.close()

        if txn is not None or producers:
            await asyncio.to_thread(close_all)
