"""``kafka`` source: topic partitions as splits, offsets as their state.

YAML::

    sources:
      bids:
        type: kafka
        bootstrap: 127.0.0.1:9092
        topic: bids                     # or [a, b], or "^bids-.*" (a regular expression)
        format: json                    # json | text | raw
        starting_offsets: earliest      # latest | committed | {0: 42, 1: 17} | {timestamp: 1700000000000}
        bounded: false                  # true: stop at the offsets that were the latest at the start
        group_id: streamlet-bids        # optional: commit offsets back when checkpoints complete
        metadata: {ts: timestamp, k: key}   # Kafka metadata as record fields
        properties: {fetch.min.bytes: 1}    # librdkafka properties, passed through
        timestamp: ts
        watermark: {max_out_of_orderness: 2s, idle_timeout: 10s}
        rate: 5000                      # optional: records/s for the whole source (as read: not the broker's pace)

**Splits.**  The JobMaster's enumeration (:meth:`KafkaSource.enumerate_splits`) makes one split per
topic partition, id ``"<topic>:<partition>"``, with its start turned into a concrete offset where
that matters (``latest`` and ``committed`` are resolved once, at the start, so a checkpoint taken
before the first record restores to the same place); ``bounded`` adds each partition's ``end``,
the high watermark at the start.  The state of a split is the same dict with ``offset`` = the next
offset to return.  The checkpoint, not the broker, holds the positions: offsets committed to
``group_id`` are for monitoring only.

**New partitions** (and, for patterns, new topics) are found by the reader holding the one
``"discovery"`` split: its state lists the partitions known so far, so after a restore exactly one
reader goes on looking and nothing is read twice; new partitions are read from their start by that
reader (until a restart redistributes the splits).

**Watermarks** are per split (the task keeps one generator per ``current_split``); a partition
without data goes idle after the watermark's ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import orjson

from streamlet.connectors.base import END_OF_INPUT, Param, validate_params
from streamlet.connectors.errors import ConnectorError
from streamlet.connectors.kafka import common
from streamlet.connectors.pacing import paced_reader, positive_rate
from streamlet.errors import DecodeError, PipelineDefinitionError
from streamlet.time.durations import duration_ms

logger = logging.getLogger(__name__)

_FORMATS = ("json", "text", "raw")
_METADATA = ("key", "timestamp", "headers", "partition", "offset", "topic")
_ON_ERROR = ("fail", "skip", "dead_letter")
#: records one consume call returns at most
CONSUME_BATCH = 10_000
#: seconds a consume call waits for the first record when none is queued
CONSUME_WAIT = 0.25
#: bad records logged in full before only the count goes on
_LOG_FIRST = 5
DISCOVERY = "discovery"


def _node_of(where: str) -> str:
    return where.rsplit("sources.", 1)[-1] if "sources." in where else where


def _starting_offsets(value: Any, where: str) -> Any:
    key = f"{where}.starting_offsets"
    if value in ("earliest", "latest", "committed"):
        return value
    if isinstance(value, dict):
        if set(value) == {"timestamp"}:
            ts = value["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
                raise PipelineDefinitionError(f"expected epoch milliseconds, got {ts!r}", f"{key}.timestamp")
            return {"timestamp": ts}
        out = {}
        for p, off in value.items():
            part = p if isinstance(p, str) and ":" in p else None
            if part is None:
                try:
                    part = int(p)
                except (TypeError, ValueError):
                    raise PipelineDefinitionError(
                        f"expected a partition number or 'topic:partition', got {p!r}", key) from None
            if isinstance(off, bool) or not isinstance(off, int) or off < 0:
                raise PipelineDefinitionError(f"expected an offset >= 0 for partition {p!r}, got {off!r}", key)
            out[str(part)] = off
        return out
    raise PipelineDefinitionError(
        f"expected earliest, latest, committed, {{partition: offset, ...}} or {{timestamp: epoch ms}}, got {value!r}",
        key)


class KafkaSource:
    """Reads Kafka topics (``type: kafka``); see the module docstring for the keys and the split model."""

    PARAMS = {
        "bootstrap": Param("str", "broker addresses, host:port[,host:port...]", required=True),
        "topic": Param("str|list", "a topic, a list of topics, or a regular expression starting with ^",
                       required=True),
        "format": Param("str", "how record values decode: json, text (UTF-8) or raw (bytes)", "json",
                        choices=_FORMATS),
        "key_format": Param("str", "how record keys decode (for metadata: key): text, json or raw", "text",
                            choices=_FORMATS),
        "starting_offsets": Param("any", "earliest | latest | committed | {partition: offset} | "
                                         "{timestamp: epoch ms}", "earliest"),
        "bounded": Param("bool", "stop at the offsets that were the latest at the start (a batch job)", False),
        "group_id": Param("str", "consumer group that completed checkpoints commit offsets to (monitoring); "
                                 "needed by starting_offsets: committed"),
        "properties": Param("map", "librdkafka client properties, passed through", {}),
        "metadata": Param("map", "record field -> key | timestamp | headers | partition | offset | topic", {}),
        "on_error": Param("str", "a value that does not decode: fail, skip, or dead_letter", "fail",
                          choices=_ON_ERROR),
        "dead_letter": Param("map", "with on_error: dead_letter, {topic: name} or {path: file} for bad records"),
        "create_topic": Param("bool", "create missing topics (partitions: N) instead of failing", False),
        "partitions": Param("int", "partitions of a topic made by create_topic", 1),
        "discovery_interval": Param("any", "how often to look for new partitions and topics (0: never)", "10s"),
        "broker_timeout": Param("any", "fail once no broker answered for this long", "30s"),
        "rate": Param("number", "records per second for the whole source, divided over its subtasks (omit: as "
                                "fast as possible)"),
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        """Check and normalize the keys (no broker is contacted here: that happens in the JobMaster)."""
        out = validate_params(params, cls.PARAMS, where, ("type", "parallelism"))
        out["topic"] = common.validate_topics(out["topic"], where)
        positive_rate(out["rate"], f"{where}.rate")
        out["starting_offsets"] = _starting_offsets(out["starting_offsets"], where)
        if out["starting_offsets"] == "committed" and not out["group_id"]:
            raise PipelineDefinitionError("starting_offsets: committed needs group_id (the group whose offsets "
                                          "to start from)", f"{where}.starting_offsets")
        for field, kind in out["metadata"].items():
            if kind not in _METADATA:
                raise PipelineDefinitionError(f"unknown metadata {kind!r} for field {field!r}; allowed: "
                                              f"{', '.join(_METADATA)}", f"{where}.metadata.{field}")
        dl = out["dead_letter"]
        if out["on_error"] == "dead_letter":
            if not isinstance(dl, dict) or len(dl) != 1 or not ({"topic", "path"} & set(dl)) \
                    or not isinstance(next(iter(dl.values())), str):
                raise PipelineDefinitionError("on_error: dead_letter needs dead_letter: {topic: name} or "
                                              "{path: file}", f"{where}.dead_letter")
            if "path" in dl:
                p = Path(dl["path"]).expanduser()
                out["dead_letter"] = {"path": str(p if p.is_absolute() else Path(base_dir) / p)}
        elif dl is not None:
            raise PipelineDefinitionError("dead_letter is only used with on_error: dead_letter", f"{where}.dead_letter")
        if out["partitions"] < 1:
            raise PipelineDefinitionError(f"expected partitions >= 1, got {out['partitions']!r}", f"{where}.partitions")
        out["discovery_interval"] = duration_ms(out["discovery_interval"], f"{where}.discovery_interval")
        out["broker_timeout"] = duration_ms(out["broker_timeout"], f"{where}.broker_timeout", allow_zero=False)
        out["node_id"] = _node_of(where)
        return out

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        """Bounded exactly with ``bounded: true``."""
        return bool(params["bounded"])

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        """One split per partition (plus the discovery split when unbounded); blocks on the broker."""
        try:
            return _enumerate(params)
        except ConnectorError as exc:
            raise PipelineDefinitionError(str(exc)) from None

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> Any:
        """The :class:`KafkaReader` of one subtask (its splits come with ``add_splits``), paced when
        ``rate`` is set."""
        return paced_reader(KafkaReader, params, ctx)


def _what(params: Mapping[str, Any]) -> str:
    return f"source {params['node_id']!r}"


def _enumerate(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    ck = common.client_module()
    what, bootstrap = _what(params), params["bootstrap"]
    cfg = common.base_config(bootstrap, params["properties"])
    admin = common.make_client("AdminClient", cfg, what)
    existing = common.list_topics(admin, what, bootstrap, min(common.METADATA_TIMEOUT, params["broker_timeout"] / 1000))
    missing = [t for t in params["topic"] if not common.is_pattern(t) and t not in existing]
    if missing:
        if not params["create_topic"]:
            raise common.missing_topics_error(what, missing, bootstrap, existing, "create_topic")
        common.create_topics(admin, missing, params["partitions"], what, bootstrap)
        existing = _wait_for_topics(admin, missing, what, bootstrap)
    topics = common.resolve_topics(params["topic"], existing)
    tps = [(t, p) for t in topics for p in range(existing[t])]
    start = params["starting_offsets"]
    offsets: dict[tuple[str, int], Any] = {tp: "earliest" for tp in tps}
    min_ts = None
    if start == "latest" or params["bounded"]:
        ends = high_watermarks(cfg, tps, what, bootstrap)
    if start == "latest":
        offsets = dict(ends)
    elif start == "committed":
        consumer = ck.Consumer({**cfg, "group.id": params["group_id"], "enable.auto.commit": False})
        try:
            got = consumer.committed([ck.TopicPartition(t, p) for t, p in tps], timeout=common.METADATA_TIMEOUT)
        except ck.KafkaException as exc:
            raise ConnectorError(common.unreachable(what, bootstrap, exc)) from None
        finally:
            consumer.close()
        for tp in got:
            if tp.offset >= 0:
                offsets[(tp.topic, tp.partition)] = tp.offset
    elif isinstance(start, dict) and "timestamp" in start:
        min_ts = start["timestamp"]
        offsets = _offsets_for_time(cfg, tps, min_ts, what, bootstrap)
    elif isinstance(start, dict):
        for key, off in start.items():
            for t, p in tps:
                if key == str(p) or key == f"{t}:{p}":
                    offsets[(t, p)] = off
    splits: list[dict[str, Any]] = []
    for t, p in tps:
        split = {"id": f"{t}:{p}", "topic": t, "partition": p, "offset": offsets[(t, p)],
                 "end": ends[(t, p)] if params["bounded"] else None, "min_ts": min_ts}
        splits.append(split)
    if not params["bounded"] and params["discovery_interval"] > 0:
        splits.append({"id": DISCOVERY, "known": {t: existing[t] for t in topics}})
    return splits


def _wait_for_topics(admin: Any, topics: list[str], what: str, bootstrap: str) -> dict[str, int]:
    deadline = time.monotonic() + common.METADATA_TIMEOUT
    while True:
        existing = common.list_topics(admin, what, bootstrap)
        if all(t in existing for t in topics) or time.monotonic() > deadline:
            return existing
        time.sleep(0.05)


def high_watermarks(cfg: Mapping[str, Any], tps: list[tuple[str, int]], what: str,
                    bootstrap: str, timeout: float = common.METADATA_TIMEOUT) -> dict[tuple[str, int], int]:
    """Each partition's high watermark (the offset after its last record), as a fetch reports it.

    Blocking.  A fetch's answer is used rather than ListOffsets, which some brokers (tansu) answer
    wrongly; each partition is fetched once from its start and then paused.
    """
    ck = common.client_module()
    out: dict[tuple[str, int], int] = {}
    if not tps:
        return out
    consumer = ck.Consumer({**cfg, "group.id": "streamlet-offsets", "enable.auto.commit": False,
                            "enable.partition.eof": True, "fetch.queue.backoff.ms": 0,
                            "queued.max.messages.kbytes": 1024, "fetch.max.bytes": 1 << 20})
    try:
        consumer.assign([ck.TopicPartition(t, p, ck.OFFSET_BEGINNING) for t, p in tps])
        pending = set(tps)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.1):
                tp = (m.topic(), m.partition())
                err = m.error()
                if err is not None and err.code() != ck.KafkaError._PARTITION_EOF:
                    if err.fatal() or err.code() in (ck.KafkaError.UNKNOWN_TOPIC_OR_PART,):
                        raise ConnectorError(f"{what}: cannot read {tp[0]}:{tp[1]} on {bootstrap!r}: {err.str()}")
                    continue
                if tp in pending:
                    hi = consumer.get_watermark_offsets(ck.TopicPartition(*tp), cached=True)[1]
                    if hi >= 0:
                        out[tp] = hi
                        pending.discard(tp)
                        consumer.pause([ck.TopicPartition(*tp)])
        if pending:
            names = ", ".join(f"{t}:{p}" for t, p in sorted(pending)[:5])
            raise ConnectorError(f"{what}: no answer from the kafka broker at {bootstrap!r} for the end offsets of "
                                 f"{names} within {timeout:g}s; check that the broker runs")
    except ck.KafkaException as exc:
        raise ConnectorError(common.unreachable(what, bootstrap, exc)) from None
    finally:
        consumer.close()
    return out


def _offsets_for_time(cfg: Mapping[str, Any], tps: list[tuple[str, int]], ts: int, what: str,
                      bootstrap: str) -> dict[tuple[str, int], Any]:
    """The first offset at or after ``ts`` per partition; readers also drop records before ``ts``
    until the first one at or after it, so a broker whose answer is too early (tansu) is still right."""
    ck = common.client_module()
    consumer = ck.Consumer({**cfg, "group.id": "streamlet-offsets", "enable.auto.commit": False})
    try:
        got = consumer.offsets_for_times([ck.TopicPartition(t, p, ts) for t, p in tps],
                                         timeout=common.METADATA_TIMEOUT)
    except ck.KafkaException as exc:
        raise ConnectorError(common.unreachable(what, bootstrap, exc)) from None
    finally:
        consumer.close()
    out: dict[tuple[str, int], Any] = {}
    for tp in got:
        # -1: no record at or after ts yet: read from the start and let the filter drop older ones
        out[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else "earliest"
    return out


def _start_offset(offset: int | str) -> int:
    """Where a consumer starts reading a partition whose position is ``offset``.

    ``"earliest"`` is offset 0, not librdkafka's OFFSET_BEGINNING: that asks the broker with
    ListOffsets, and tansu answers with the offset of the batch it *stored* first, which under
    concurrent producers is not always the lowest (the records before it were skipped, seen as a
    flaky read of a topic written by two transactional sink subtasks).  Where retention removed
    offset 0 (a Kafka broker), the fetch is out of range and ``auto.offset.reset: earliest``
    moves to the log start.
    """
    return 0 if offset == "earliest" else int(offset)


class _Split:
    """Position in one partition: ``offset`` is the next offset to return (or ``"earliest"``)."""

    __slots__ = ("id", "topic", "partition", "offset", "start", "end", "min_ts", "done")

    def __init__(self, s: Mapping[str, Any]) -> None:
        self.id: str = s["id"]
        self.topic: str = s["topic"]
        self.partition: int = s["partition"]
        self.offset: int | str = s["offset"]
        self.start = s.get("start", self.offset if isinstance(self.offset, int) else 0)
        self.end: int | None = s.get("end")
        self.min_ts: int | None = s.get("min_ts")
        self.done: bool = bool(s.get("done")) or (self.end is not None and isinstance(self.offset, int)
                                                   and self.offset >= self.end)

    def state(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "partition": self.partition, "offset": self.offset,
                "start": self.start, "end": self.end, "min_ts": self.min_ts, "done": self.done}


class KafkaReader:
    """Reads the partitions of one subtask (a :class:`~streamlet.connectors.base.SourceReader`).

    Every librdkafka call runs in the reader's own thread (one worker, so calls never overlap):
    :meth:`poll` starts a *job* there -- apply assignment changes and offset commits, look for new
    partitions when due, write dead letters, then ``consume`` up to :data:`CONSUME_BATCH` records
    (waiting at most :data:`CONSUME_WAIT` s for the first) -- and hands out the records of the
    previous job meanwhile, one partition's run of at most ``batch_size`` records per call.
    :meth:`wait_available` awaits the job.

    JSON values of a run are decoded by one ``orjson.loads`` of the run joined into an array; a
    run with a value that does not decode goes value by value, and ``on_error`` decides.
    """

    def __init__(self, params: Mapping[str, Any], ctx: Any) -> None:
        self._params = params
        self._what = _what(params)
        self._bootstrap: str = params["bootstrap"]
        self._format: str = params["format"]
        self._key_format: str = params["key_format"]
        self._meta: list[tuple[str, str]] = list(params["metadata"].items())
        self._on_error: str = params["on_error"]
        self._batch_size: int = ctx.batch_size
        self._clock = ctx.clock
        self._subtask = ctx.subtask_index
        self._splits: dict[tuple[str, int], _Split] = {}
        self._active = 0
        self._discovery: dict[str, Any] | None = None
        self._next_discovery = 0.0
        self._consumer: Any = None
        self._ck: Any = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._job: asyncio.Future[Any] | None = None
        #: assignment changes and commits for the next job: ("assign"|"unassign"|"commit", [TopicPartition])
        self._ops: list[tuple[str, list[Any]]] = []
        self._msgs: list[Any] = []
        self._keys: list[Any] = []
        self._pos = 0
        self._multi_topic = len(params["topic"]) > 1 or any(common.is_pattern(t) for t in params["topic"])
        #: set from librdkafka's error callback (its thread): every broker is down / a fatal error
        self._down = False
        self._down_since: float | None = None
        self._fatal: Any = None
        self._snapshots: dict[int, list[tuple[str, int, int]]] = {}
        #: bounded splits whose end-of-partition event came with the records in the buffer
        self._at_end: list[_Split] = []
        self._bad = 0
        self._dead: list[dict[str, Any]] = []
        self._dlq: Any = None
        #: the id of the split the last batch came from
        self.current_split: str | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Make the consumer (in the reader's thread) and check that a broker answers."""
        self._ck = common.client_module()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{self._params['node_id']}")
        await self._run(self._open_job)

    def _open_job(self) -> None:
        ck, p = self._ck, self._params
        cfg: dict[str, Any] = {
            "group.id": p["group_id"] or f"streamlet-{p['node_id']}",
            "client.id": f"streamlet-{p['node_id']}-{self._subtask}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            # measured: librdkafka's default backoff (1 s) caps one consumer at ~185,000 records/s
            "fetch.queue.backoff.ms": 0,
            # measured: W1 560,000 -> 700,000 records/s; librdkafka keeps fetching ahead until a
            # partition has this many records queued (memory stays within queued.max.messages.kbytes,
            # 64 MiB for the consumer by default)
            "queued.min.messages": 1_000_000,
            # measured on tansu: a fetch waits out fetch.wait.max.ms even when records arrive meanwhile
            # (232 ms median produce-to-consume with librdkafka's 500 ms, 2 ms with 10 ms); a broker
            # that answers at once costs only more idle fetches
            "fetch.wait.max.ms": 50,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": bool(p["bounded"]),
            "error_cb": self._on_client_error,
        }
        cfg.update(common.base_config(self._bootstrap, p["properties"]))  # the user's properties win
        self._consumer = common.make_client("Consumer", cfg, self._what)
        try:
            self._consumer.list_topics(timeout=min(common.METADATA_TIMEOUT, p["broker_timeout"] / 1000))
        except ck.KafkaException as exc:
            raise ConnectorError(common.unreachable(self._what, self._bootstrap, exc)) from None

    def _on_client_error(self, err: Any) -> None:
        # librdkafka's thread (during consume): only record what happened
        if err.fatal():
            self._fatal = err
        elif err.code() == self._ck.KafkaError._ALL_BROKERS_DOWN:
            self._down = True

    async def _run(self, fn: Any, *args: Any) -> Any:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Wait for the job in flight, commit what is pending, flush dead letters, close the consumer."""
        if self._executor is None:
            return
        job, self._job = self._job, None
        if job is not None:
            await asyncio.wait((job,))
        try:
            await self._run(self._close_job)
        finally:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._bad:
            logger.warning("%s: %d record(s) did not decode (on_error: %s)", self._what, self._bad, self._on_error)

    def _close_job(self) -> None:
        try:
            self._apply_ops()
            self._write_dead()
            if self._dlq is not None:
                self._dlq.flush(common.METADATA_TIMEOUT)
        finally:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    # -- splits -----------------------------------------------------------------------------

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """Take partitions (fresh splits or states from any subtask's snapshot) and the discovery split."""
        ck = self._ck or common.client_module()
        assign = []
        for s in splits:
            if s["id"] == DISCOVERY:
                self._discovery = {"id": DISCOVERY, "known": dict(s["known"])}
                continue
            sp = _Split(s)
            key = (sp.topic, sp.partition)
            if key in self._splits:
                continue
            self._splits[key] = sp
            if not sp.done:
                self._active += 1
                assign.append(ck.TopicPartition(sp.topic, sp.partition, _start_offset(sp.offset)))
        if assign:
            self._ops.append(("assign", assign))

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """Every partition with its next offset (finished ones ``done``), plus the discovery split."""
        out = [sp.state() for sp in self._splits.values()]
        if self._discovery is not None:
            out.append({"id": DISCOVERY, "known": dict(self._discovery["known"]), "done": False})
        if self._params["group_id"]:
            self._snapshots[checkpoint_id] = [(sp.topic, sp.partition, sp.offset) for sp in self._splits.values()
                                              if isinstance(sp.offset, int)]
        return out

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Commit the checkpoint's offsets to ``group_id`` (done by the next job; for monitoring only)."""
        offsets = self._snapshots.pop(checkpoint_id, None)
        for n in [n for n in self._snapshots if n < checkpoint_id]:
            del self._snapshots[n]
        if offsets:
            ck = self._ck
            self._ops.append(("commit", [ck.TopicPartition(t, p, o) for t, p, o in offsets]))

    def active_splits(self) -> list[str]:
        """Ids of the partitions being read (all at once, so each holds the watermark back from the
        start; finished bounded partitions leave the minimum).  Called by the source task."""
        return [sp.id for sp in self._splits.values() if not sp.done]

    def decode_stage(self) -> None:
        """Values are decoded in :meth:`poll` (one call per run)."""
        return None

    def progress(self) -> float | None:
        """Bounded: fraction of the offsets between each partition's start and end returned."""
        if not self._params["bounded"]:
            return None
        total = done = 0
        for sp in self._splits.values():
            if sp.end is None:
                continue
            span = max(0, sp.end - sp.start)
            total += span
            done += span if sp.done else max(0, min(span, (sp.offset if isinstance(sp.offset, int) else 0) - sp.start))
        return done / total if total else 1.0

    # -- reading ----------------------------------------------------------------------------

    def poll(self) -> list[Any] | None:
        """The next run of one partition, ``[]`` while a consume is under way, or ``END_OF_INPUT``."""
        while True:
            if self._pos < len(self._msgs):
                batch = self._take()
                if batch:
                    return batch
                continue
            if self._at_end:
                for sp in self._at_end:
                    if not sp.done:
                        self._finish(sp)
                self._at_end.clear()
            job = self._job
            if job is not None:
                if not job.done():
                    return []
                self._job = None
                self._take_job(job)
                continue
            if self._fatal is not None:
                raise ConnectorError(f"{self._what}: the kafka client failed: {self._fatal.str()}")
            if self._active == 0 and self._params["bounded"] and not self._ops:
                return END_OF_INPUT
            if self._inline_consume():
                continue
            self._start_job()
            return []

    def _inline_consume(self) -> bool:
        """Take what librdkafka has already fetched, on the task's thread: ``consume(n, 0)`` never
        waits (librdkafka's own threads fetch ahead), and it spares a thread hand-off and a GIL
        ping-pong per batch (measured with scripts/bench_kappa.py, W1 from Kafka: 573,000 -> 700,000
        records/s together with queued.min.messages).  Only when nothing is queued, or assignment
        changes, dead letters or a discovery are due, does a job in the reader's thread wait."""
        if not self._active or self._ops or self._dead or self._down:
            return False
        disc = self._discovery
        if disc is not None and self._params["discovery_interval"] > 0 and \
                self._clock.monotonic() >= self._next_discovery:
            return False
        msgs = self._consumer.consume(CONSUME_BATCH, 0)
        if not msgs:
            return False
        self._take_msgs(msgs)
        return True

    async def wait_available(self) -> None:
        """Wait for the consume in flight (cancel-safe: the job goes on and its records stay)."""
        job = self._job
        if job is not None and not job.done():
            await asyncio.wait((job,))

    def _start_job(self) -> None:
        discover = False
        if self._discovery is not None and self._params["discovery_interval"] > 0:
            now = self._clock.monotonic()
            if now >= self._next_discovery:
                self._next_discovery = now + self._params["discovery_interval"] / 1000
                discover = True
        ops, self._ops = self._ops, []
        dead, self._dead = self._dead, []
        consume = self._active > 0
        self._job = asyncio.get_running_loop().run_in_executor(self._executor, self._job_body, ops, dead, discover,
                                                               consume)

    def _job_body(self, ops: list[tuple[str, list[Any]]], dead: list[dict[str, Any]], discover: bool,
                  consume: bool) -> tuple[list[Any], dict[str, int] | None, bool]:
        """Runs in the reader's thread; returns (messages, topic metadata or None, brokers reachable)."""
        c = self._consumer
        self._ops_now(ops)
        self._write_dead(dead)
        meta = None
        reachable = True
        if discover or self._down:
            try:
                md = c.list_topics(timeout=min(common.METADATA_TIMEOUT, 2.0))
                meta = {n: len(t.partitions) for n, t in md.topics.items() if t.error is None}
                self._down = False
            except self._ck.KafkaException:
                reachable = False
        if not consume:
            if not discover:
                time.sleep(CONSUME_WAIT)  # nothing assigned: wait as a consume would
            return [], meta, reachable
        msgs = c.consume(CONSUME_BATCH, 0)
        if not msgs:
            msgs = c.consume(1, CONSUME_WAIT)
            if msgs:
                msgs += c.consume(CONSUME_BATCH - 1, 0)
        return msgs, meta, reachable

    def _apply_ops(self) -> None:
        ops, self._ops = self._ops, []
        self._ops_now(ops)

    def _ops_now(self, ops: list[tuple[str, list[Any]]]) -> None:
        c = self._consumer
        for op, tps in ops:
            if op == "assign":
                c.incremental_assign(tps)
            elif op == "unassign":
                c.incremental_unassign(tps)
            else:
                try:
                    c.commit(offsets=tps, asynchronous=True)
                except self._ck.KafkaException as exc:  # monitoring only: never fails the job
                    logger.warning("%s: committing offsets to group %r failed: %s", self._what,
                                   self._params["group_id"], exc)

    def _take_job(self, job: asyncio.Future[Any]) -> None:
        try:
            msgs, meta, reachable = job.result()
        except self._ck.KafkaException as exc:
            raise ConnectorError(common.unreachable(self._what, self._bootstrap, exc)) from None
        self._check_reachable(reachable and not self._down)
        if meta is not None:
            self._discover(meta)
        self._take_msgs(msgs)

    def _take_msgs(self, msgs: list[Any]) -> None:
        if msgs and any(map(self._ck.Message.error, msgs)):
            msgs = self._handle_errors(msgs)
        if not msgs:
            return
        self._down_since = None
        parts = list(map(self._ck.Message.partition, msgs))
        self._keys = list(zip(map(self._ck.Message.topic, msgs), parts)) if self._multi_topic else parts
        self._msgs, self._pos = msgs, 0

    def _check_reachable(self, ok: bool) -> None:
        if ok:
            self._down_since = None
            return
        now = self._clock.monotonic()
        if self._down_since is None:
            self._down_since = now
        elif (now - self._down_since) * 1000 >= self._params["broker_timeout"]:
            raise ConnectorError(f"{self._what}: lost the kafka broker at {self._bootstrap!r}: no broker answered for "
                                 f"{now - self._down_since:.0f}s (broker_timeout); the job restarts from its last "
                                 "checkpoint per its restart strategy")

    def _handle_errors(self, msgs: list[Any]) -> list[Any]:
        ck = self._ck
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
                continue
            code = err.code()
            sp = self._splits.get((m.topic(), m.partition()))
            if code == ck.KafkaError._PARTITION_EOF:
                # the end of a bounded split whose last offsets hold no records (transaction markers, an
                # empty partition); finished once the records before this event are handed out
                if sp is not None and sp.end is not None and not sp.done and m.offset() >= sp.end:
                    self._at_end.append(sp)
                continue
            if code in (ck.KafkaError.UNKNOWN_TOPIC_OR_PART, ck.KafkaError._UNKNOWN_PARTITION,
                        ck.KafkaError._UNKNOWN_TOPIC, ck.KafkaError.TOPIC_AUTHORIZATION_FAILED) or err.fatal():
                raise ConnectorError(f"{self._what}: cannot read {m.topic()}:{m.partition()} on "
                                     f"{self._bootstrap!r}: {err.str()}; check that the topic exists")
            logger.info("%s: kafka client: %s", self._what, err.str())
        return good

    def _finish(self, sp: _Split) -> None:
        sp.done = True
        if sp.end is not None:
            sp.offset = max(sp.offset if isinstance(sp.offset, int) else 0, sp.end)
        self._active -= 1
        self._ops.append(("unassign", [self._ck.TopicPartition(sp.topic, sp.partition)]))

    def _discover(self, meta: Mapping[str, int]) -> None:
        disc = self._discovery
        assert disc is not None
        known: dict[str, int] = disc["known"]
        wanted = self._params["topic"]
        topics = common.resolve_topics(wanted, {t: n for t, n in meta.items() if not t.startswith("__")})
        fresh = []
        for t in topics:
            have = known.get(t, 0)
            for p in range(have, meta[t]):
                fresh.append({"id": f"{t}:{p}", "topic": t, "partition": p, "offset": "earliest", "end": None,
                              "min_ts": None})
            known[t] = max(have, meta[t])
        if fresh:
            logger.info("%s: new partitions %s", self._what, ", ".join(s["id"] for s in fresh))
            self._multi_topic = self._multi_topic or len(known) > 1
            self.add_splits(fresh)

    def _take(self) -> list[Any]:
        """Records of the next run of one partition (at most ``batch_size``) from the buffer."""
        msgs, keys, i = self._msgs, self._keys, self._pos
        j = min(len(msgs), i + self._batch_size)
        key = keys[i]
        if keys[i:j].count(key) != j - i:
            k = i + 1
            while k < j and keys[k] == key:
                k += 1
            j = k
        self._pos = j
        run = msgs[i:j]
        first = run[0]
        sp = self._splits.get((first.topic(), first.partition()))
        if sp is None or sp.done:
            return []  # a partition given up meanwhile
        last = run[-1].offset()
        if isinstance(sp.offset, int) and first.offset() < sp.offset:
            run = [m for m in run if m.offset() >= sp.offset]  # re-delivered after a re-assignment
            if not run:
                return []
        if sp.end is not None and last >= sp.end:
            offs = list(map(self._ck.Message.offset, run))
            run = run[:bisect.bisect_left(offs, sp.end)]
            self._finish(sp)
        else:
            sp.offset = last + 1
        if sp.min_ts is not None and run:
            run = self._drop_before(sp, run)
        if not run:
            return []
        records = self._decode(run, sp)
        if records:
            self.current_split = sp.id
        return records

    def _drop_before(self, sp: _Split, run: list[Any]) -> list[Any]:
        ts = [m.timestamp()[1] for m in run]
        for k, t in enumerate(ts):
            if t >= sp.min_ts:  # type: ignore[operator]
                sp.min_ts = None
                return run[k:]
        return []

    # -- decoding ---------------------------------------------------------------------------

    def _decode(self, run: list[Any], sp: _Split) -> list[Any]:
        values = list(map(self._ck.Message.value, run))
        fmt = self._format
        records: list[Any] | None = None
        try:
            if fmt == "json":
                # one array for the run, copied once: the brackets go on the first and last value
                first, last = values[0], values[-1]
                try:
                    values[0] = b"[" + first
                    values[-1] = values[-1] + b"]"
                    records = orjson.loads(b",".join(values))
                finally:
                    values[0], values[-1] = first, last
                if len(records) != len(values):
                    records = None
            elif fmt == "text":
                records = list(map(bytes.decode, values))
            else:
                records = values if None not in values else None
        except (orjson.JSONDecodeError, TypeError, UnicodeDecodeError):
            records = None
        if records is None:
            run, records = self._decode_each(run, values, sp)
        if self._meta:
            records = self._with_metadata(run, records)
        return records

    def _decode_each(self, run: list[Any], values: list[Any], sp: _Split) -> tuple[list[Any], list[Any]]:
        """Value by value: tombstones (no value) are skipped, bad values go to ``on_error``."""
        keep, out = [], []
        fmt = self._format
        for m, v in zip(run, values):
            if v is None:
                continue
            try:
                rec = orjson.loads(v) if fmt == "json" else v.decode() if fmt == "text" else v
            except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
                self._bad_record(m, v, exc)
                continue
            keep.append(m)
            out.append(rec)
        return keep, out

    def _bad_record(self, m: Any, value: bytes, exc: BaseException) -> None:
        where = f"{m.topic()}:{m.partition()}@{m.offset()}"
        reason = f"not {'a JSON value' if self._format == 'json' else 'UTF-8'} ({exc})"
        text = value.decode("utf-8", "replace")
        if self._on_error == "fail":
            raise DecodeError(self._params["node_id"], f"kafka record {where}", reason, text,
                              "fix the producer, or set on_error: skip or on_error: dead_letter on the source")
        self._bad += 1
        if self._bad <= _LOG_FIRST:
            logger.warning("%s: record %s does not decode: %s: %.200s (on_error: %s)", self._what, where, reason,
                           text, self._on_error)
        elif self._bad % 10_000 == 0:
            logger.warning("%s: %d records did not decode so far", self._what, self._bad)
        if self._on_error == "dead_letter":
            key = m.key()
            self._dead.append({"source": self._params["node_id"], "topic": m.topic(), "partition": m.partition(),
                               "offset": m.offset(), "error": reason, "value": text,
                               "key": key.decode("utf-8", "replace") if key is not None else None})

    def _write_dead(self, dead: list[dict[str, Any]] | None = None) -> None:
        """Runs in the reader's thread: send or append dead letters."""
        if dead is None:
            dead, self._dead = self._dead, []
        if not dead:
            return
        target = self._params["dead_letter"]
        if "path" in target:
            path = Path(target["path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(b"".join(orjson.dumps(d) + b"\n" for d in dead))
            return
        if self._dlq is None:
            self._dlq = common.make_client("Producer", common.base_config(self._bootstrap, self._params["properties"]),
                                           self._what)
        for d in dead:
            while True:
                try:
                    self._dlq.produce(target["topic"], orjson.dumps(d))
                    break
                except BufferError:
                    self._dlq.poll(0.1)
        self._dlq.poll(0)

    def _with_metadata(self, run: list[Any], records: list[Any]) -> list[Any]:
        out = []
        kf = self._key_format
        for m, r in zip(run, records):
            rec = r if type(r) is dict else {"value": r}
            for field, kind in self._meta:
                if kind == "timestamp":
                    rec[field] = m.timestamp()[1]
                elif kind == "key":
                    k = m.key()
                    if k is not None and kf != "raw":
                        try:
                            k = orjson.loads(k) if kf == "json" else k.decode()
                        except (orjson.JSONDecodeError, UnicodeDecodeError):
                            k = k.decode("utf-8", "replace")
                    rec[field] = k
                elif kind == "headers":
                    rec[field] = {h: (v.decode("utf-8", "replace") if v is not None else None)
                                  for h, v in (m.headers() or ())}
                elif kind == "partition":
                    rec[field] = m.partition()
                elif kind == "offset":
                    rec[field] = m.offset()
                else:
                    rec[field] = m.topic()
            out.append(rec)
        return out
