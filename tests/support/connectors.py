"""Test-only connectors, registered from YAML by the ``register_connector`` fixture.

* :class:`SlowSink` takes ``delay`` seconds per batch (an awaited sleep: it stands for a slow
  remote write, not for waiting on something) and records what it wrote in :data:`SINK_STATS`.
* :class:`EndlessSource` produces ``{"id": n}`` records as fast as it is allowed to, forever.
* :class:`ScriptedSource` reads what the test pushes to each of its splits (:data:`SCRIPT`),
  its splits together (as Kafka partitions), so a test decides which split sends and when.
* :class:`CommitSink` / :class:`CollectSink` record what they are asked to do / write.

All follow the connector contract of :mod:`streamlet.connectors.base`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Mapping

from streamlet.connectors.base import Param, SinkWriterBase, validate_params


@dataclass
class SinkStats:
    """What every :class:`SlowSink` of the running test wrote."""

    records: int = 0
    batches: int = 0
    largest_batch: int = 0
    #: set once ``batches`` reaches ``target_batches`` (created by the test on its loop)
    reached: asyncio.Event | None = None
    target_batches: int = 0
    samples: list[Any] = field(default_factory=list)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


SINK_STATS = SinkStats()


class SlowSink(SinkWriterBase):
    """A sink that needs ``delay`` seconds for every batch it writes."""

    PARAMS = {"delay": Param("number", "seconds per batch", 0.01)}

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> SlowSink:
        return cls(float(params["delay"]))

    def __init__(self, delay: float) -> None:
        self._delay = delay

    async def write(self, records: list[Any]) -> None:
        await asyncio.sleep(self._delay)
        s = SINK_STATS
        s.records += len(records)
        s.batches += 1
        s.largest_batch = max(s.largest_batch, len(records))
        if s.reached is not None and s.batches >= s.target_batches:
            s.reached.set()

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _UnboundedTestSource:
    """What the unbounded test sources share: their PARAMS validated, never bounded."""

    PARAMS: dict[str, Param] = {}

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "parallelism"))

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        return False


class EndlessSource(_UnboundedTestSource):
    """An unbounded source of ``{"id": n}`` records, one split per subtask."""

    PARAMS: dict[str, Param] = {}

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        return [{"id": f"endless-{i}", "index": i} for i in range(parallelism)]

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> EndlessReader:
        return EndlessReader(getattr(ctx, "batch_size", 1024))


class _TestReader:
    """The reader hooks both test sources leave as they are: no commit on checkpoint completion,
    no decode stage, no progress."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        return None

    def decode_stage(self) -> tuple[str, dict[str, Any]] | None:
        return None

    def progress(self) -> float | None:
        return None


class EndlessReader(_TestReader):
    """Polls batches of ``batch_size`` sequence records forever (its splits only name it)."""

    def __init__(self, batch_size: int) -> None:
        self._batch_size = batch_size
        self._next = 0
        self.current_split: str | None = None

    async def open(self) -> None:
        return None

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        if splits:
            self.current_split = splits[0]["id"]

    def poll(self) -> list[Any] | None:
        n = self._next
        self._next = n + self._batch_size
        return [{"id": i} for i in range(n, n + self._batch_size)]

    async def wait_available(self) -> None:
        return None

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        return [{"id": self.current_split, "next": self._next}] if self.current_split else []

    async def close(self) -> None:
        return None


@dataclass
class CommitLog:
    """What every :class:`CommitSink` of the running test did, in order."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    written: list[Any] = field(default_factory=list)
    closed: int = 0
    #: set at each event (created by the test on its loop)
    changed: asyncio.Event | None = None

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def add(self, kind: str, value: Any) -> None:
        self.events.append((kind, value))
        if self.changed is not None:
            self.changed.set()


COMMIT_LOG = CommitLog()


class CommitSink(SinkWriterBase):
    """A two-phase-commit sink that records its calls in :data:`COMMIT_LOG`: writes are pending until
    ``prepare_commit(n)`` turns them into committable ``n``, visible (``written``) after ``commit``."""

    PARAMS: dict[str, Param] = {}
    GUARANTEE = "exactly_once"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> CommitSink:
        return cls()

    def __init__(self) -> None:
        self._pending: list[Any] = []
        self._prepared: dict[int, list[Any]] = {}

    async def write(self, records: list[Any]) -> None:
        self._pending.extend(records)
        COMMIT_LOG.add("write", len(records))

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        self._prepared[checkpoint_id], self._pending = self._pending, []
        COMMIT_LOG.add("prepare", checkpoint_id)
        return [checkpoint_id]

    async def commit(self, committables: list[Any]) -> None:
        for n in committables:
            COMMIT_LOG.written.extend(self._prepared.pop(n, []))
            COMMIT_LOG.add("commit", n)

    async def finish(self) -> None:
        # end of a bounded input: everything written becomes visible, prepared or not
        for n in sorted(self._prepared):
            COMMIT_LOG.written.extend(self._prepared.pop(n))
        COMMIT_LOG.written.extend(self._pending)
        self._pending = []

    async def close(self) -> None:
        COMMIT_LOG.closed += 1


@dataclass
class Collected:
    """Every record a :class:`CollectSink` of the running test wrote, in arrival order."""

    records: list[Any] = field(default_factory=list)
    #: set at each write (created by the test on its loop)
    changed: asyncio.Event | None = None

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


COLLECTED = Collected()


class CollectSink(SinkWriterBase):
    """A sink (no guarantee) appending every record to :data:`COLLECTED` as it is written."""

    PARAMS: dict[str, Param] = {}
    GUARANTEE = "none"

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]:
        return validate_params(params, cls.PARAMS, where, ("type", "input", "parallelism", "partition"))

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> CollectSink:
        return cls()

    async def write(self, records: list[Any]) -> None:
        COLLECTED.records.extend(records)
        if COLLECTED.changed is not None:
            COLLECTED.changed.set()


@dataclass
class Script:
    """The records a test hands to each split of a :class:`ScriptedSource`, batch by batch.

    The test calls :meth:`push` (a batch for one split) and :meth:`close` (the split ends once
    its batches were read); readers take batches as they poll, and :attr:`changed` is set
    whenever one was taken, so the test can wait until everything pushed was read
    (:meth:`drained`).  Create the events on the test's loop (``reset`` then set ``changed``).
    """

    queues: dict[str, deque[list[Any]]] = field(default_factory=dict)
    closed: set[str] = field(default_factory=set)
    readers: list[ScriptedReader] = field(default_factory=list)
    #: set whenever a reader took a batch (created by the test on its loop)
    changed: asyncio.Event | None = None

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def push(self, split: str, records: list[Any]) -> None:
        self.queues.setdefault(split, deque()).append(list(records))
        for r in self.readers:
            r.ready.set()

    def close(self, split: str) -> None:
        self.closed.add(split)
        for r in self.readers:
            r.ready.set()

    def drained(self) -> bool:
        """Every batch pushed so far was read."""
        return not any(self.queues.values())


SCRIPT = Script()


class ScriptedSource(_UnboundedTestSource):
    """An unbounded source with ``splits`` splits (``s0``, ``s1``, ...) fed by the test through
    :data:`SCRIPT`; its readers read their splits together (``active_splits``, as Kafka
    partitions), so a split that sends nothing holds the watermark back until its idle_timeout."""

    PARAMS: dict[str, Param] = {"splits": Param("int", "number of splits", default=1)}

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]:
        return [{"id": f"s{i}"} for i in range(params["splits"])]

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: Any) -> ScriptedReader:
        return ScriptedReader()


class ScriptedReader(_TestReader):
    """Polls the batches :data:`SCRIPT` holds for its splits, one split after the other in turn;
    ends once each of its splits is closed and read."""

    def __init__(self) -> None:
        self.splits: list[str] = []
        self.current_split: str | None = None
        self.ready = asyncio.Event()
        self._next = 0

    async def open(self) -> None:
        SCRIPT.readers.append(self)

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        self.splits += [s["id"] for s in splits]

    def _queue(self, split: str) -> deque[list[Any]]:
        return SCRIPT.queues.setdefault(split, deque())

    def active_splits(self) -> list[str]:
        return [s for s in self.splits if s not in SCRIPT.closed or self._queue(s)]

    def poll(self) -> list[Any] | None:
        n = len(self.splits)
        for i in range(n):
            split = self.splits[(self._next + i) % n]
            queue = self._queue(split)
            if queue:
                self._next = (self._next + i + 1) % n
                self.current_split = split
                batch = queue.popleft()
                if SCRIPT.changed is not None:
                    SCRIPT.changed.set()
                return batch
        return [] if self.active_splits() else None

    async def wait_available(self) -> None:
        self.ready.clear()
        if any(self._queue(s) for s in self.splits) or not self.active_splits():
            return
        await self.ready.wait()

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        return [{"id": s} for s in self.splits]

    async def close(self) -> None:
        if self in SCRIPT.readers:
            SCRIPT.readers.remove(self)
