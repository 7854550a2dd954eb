"""Connector contracts: sources (split into parallel splits) and sinks.

A connector class declares its YAML keys in ``PARAMS`` (checked by :func:`validate_params`), and
is named from YAML by ``type:`` through :mod:`streamlet.api.registry`.

Sources follow Flink's split model (:class:`Source`, :class:`SourceReader`): splits are
enumerated by the JobMaster, read by non-blocking readers whose split positions go into
checkpoints.  Sinks (:class:`Sink`, :class:`SinkWriter`) write batches and, when exactly-once,
take part in checkpoints by two-phase commit.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import orjson as _orjson

from streamlet.errors import PipelineDefinitionError, SinkRecordError, SinkWriteError

_TYPES = {
    "str": (str,), "int": (int,), "number": (int, float), "bool": (bool,), "map": (dict,),
    "list": (list,), "str|list": (str, list), "any": (object,),
}


@dataclass(frozen=True)
class Param:
    """One YAML key of a connector."""

    type: str
    doc: str
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] = ()


def validate_params(params: Mapping[str, Any], spec: Mapping[str, Param], where: str,
                    common: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``params`` against ``spec``; return them with defaults filled in.

    ``common`` lists keys handled elsewhere (``type``, ``input``, ``parallelism``) that are
    skipped here.  An optional key without a default may be given as null (unset): validated
    params hold such keys, and a client-planned JobGraph is validated again by the JobManager.  Errors name the key, the allowed keys or values, and a close match.
    """
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in common:
            continue
        p = spec.get(key)
        if p is None:
            allowed = sorted(list(spec) + list(common))
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PipelineDefinitionError(
                f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}", f"{where}.{key}")
        if value is None and p.default is None and not p.required:
            out[key] = None  # an optional key written as null is unset (validated params carry them so)
            continue
        types = _TYPES[p.type]
        if (not isinstance(value, types)) or (isinstance(value, bool) and bool not in types
                                               and p.type != "any"):
            raise PipelineDefinitionError(
                f"expected {p.type}, got {type(value).__name__} {value!r}", f"{where}.{key}")
        if p.choices and value not in p.choices:
            raise PipelineDefinitionError(
                f"{value!r} is not one of {', '.join(map(repr, p.choices))}", f"{where}.{key}")
        out[key] = value
    for key, p in spec.items():
        if key not in out:
            if p.required:
                raise PipelineDefinitionError(f"missing required key {key!r} ({p.doc})", where)
            out[key] = p.default
    return out


def slice_splits(parallelism: int) -> list[dict[str, Any]]:
    """One generator slice per subtask: split ``i`` of ``p`` makes items ``i, i + p, i + 2p, ...``.

    Each is ``{"id": "slice-<i>-of-<p>", "index": i, "count": p}``.
    """
    return [{"id": f"slice-{i}-of-{parallelism}", "index": i, "count": parallelism} for i in range(parallelism)]


class SourceContext(Protocol):
    """What a running source reader may use from its task (built by the runtime per subtask)."""

    subtask_index: int
    parallelism: int
    #: records per batch (``pipeline.batch-size``); a reader returns batches of about this size
    batch_size: int
    #: the source's node id, for errors that name it
    node_id: str
    #: the task's injected clock (``streamlet.clock.Clock``): readers pace and time out on it only
    clock: Any

    def time_ms(self) -> int:
        """Wall-clock milliseconds of the task's clock."""


#: what :meth:`SourceReader.poll` returns once every split is exhausted (bounded sources only)
END_OF_INPUT = None


class Source(Protocol):
    """A source connector class (named from YAML by ``type:``); every method is a classmethod.

    Life cycle, per job (Flink's FLIP-27 split model):

    1. ``validate(params, where, base_dir)`` on the client: check and normalize the keys (make
       paths absolute, check that input files exist); errors are ``PipelineDefinitionError``
       naming ``where`` + the key;
    2. ``enumerate_splits(params, parallelism)`` in the JobMaster's source coordinator, off the
       event loop (it may block on I/O): the splits, each a JSON-able dict with a unique ``"id"``
       (str); the coordinator assigns them to subtasks and records the assignment in checkpoints;
    3. on each subtask ``create_reader(params, ctx)``, then ``await reader.open()``, then
       ``reader.add_splits(splits)`` with fresh splits *or* split states taken by
       :meth:`SourceReader.snapshot_state` (a restore; possibly of another subtask, after a
       rescale); more splits may be added while the reader runs.
    """

    PARAMS: Mapping[str, Param]

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]: ...

    @classmethod
    def is_bounded(cls, params: Mapping[str, Any]) -> bool:
        """True when every split ends (``mode: batch`` requires it)."""

    @classmethod
    def enumerate_splits(cls, params: Mapping[str, Any], parallelism: int) -> list[dict[str, Any]]: ...

    @classmethod
    def create_reader(cls, params: Mapping[str, Any], ctx: SourceContext) -> SourceReader: ...


class SourceReader(Protocol):
    """Reads the splits of one source subtask, batch by batch, without blocking the event loop.

    The task calls :meth:`poll` between batches: it returns at once, with a batch (a non-empty
    list of raw elements from ONE split, whose id it leaves in :attr:`current_split`), an empty
    list (nothing right now: the task then awaits :meth:`wait_available` together with its
    mailbox), or :data:`END_OF_INPUT` once every split it holds is exhausted and no more can come
    (bounded sources).  Work that blocks (file reads) runs in threads started by ``poll`` and
    awaited by ``wait_available``; pacing (``rate:``) waits on ``ctx.clock`` there too.

    Positions: :meth:`snapshot_state` returns one JSON-able state per split the reader holds
    (finished splits included, marked so), such that a fresh reader given those states by
    :meth:`add_splits` produces exactly the records the first one had not yet returned: no record
    twice, none missing.  The task calls it between batches (never while a poll is under way).
    """

    #: the id of the split the last batch of :meth:`poll` came from
    current_split: str | None

    async def open(self) -> None:
        """Acquire connections and files; called once before the first ``add_splits``."""

    def add_splits(self, splits: list[dict[str, Any]]) -> None:
        """Take over ``splits``: fresh ones from ``enumerate_splits`` or states from ``snapshot_state``."""

    def poll(self) -> list[Any] | None:
        """A batch, ``[]`` (nothing now, see :meth:`wait_available`), or ``END_OF_INPUT``; never blocks."""

    async def wait_available(self) -> None:
        """Return once :meth:`poll` may return something other than ``[]`` (may return early)."""

    def snapshot_state(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """The state of every split held, as JSON-able dicts accepted by :meth:`add_splits`."""

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is durable (e.g. commit offsets back to Kafka for monitoring)."""

    # optional: ``active_splits() -> list[str]``, the ids of the splits whose records may come in
    # any order from now on (read together, as Kafka partitions are); the task then keeps a
    # watermark generator for each from the start, so a split that has not delivered yet holds
    # the watermark back (until the watermark's idle_timeout), and a split that left the list
    # (finished) leaves the minimum.  Without it, a split counts from its first batch.

    # optional: ``timestamp_stage(spec) -> (batch -> list[int]) | None``, for a source with event
    # time: the reader's own event times for the source's ``timestamp:`` spec (see
    # :mod:`streamlet.time.timestamps`), when it knows them without reading records (a generator
    # knows each event's time from its number).  The task calls the function once per batch, right
    # after :meth:`poll` returned that batch (its raw elements), and takes the list (int epoch ms,
    # parallel to the batch) in place of reading the spec from every record.  None (or no method):
    # the task reads the records.

    def decode_stage(self) -> tuple[str, dict[str, Any]] | None:
        """An optional ``(expression over r, globals)`` turning raw elements into records.

        It is fused into the chain's first function, so decoding costs no extra pass.
        """

    def progress(self) -> float | None:
        """Fraction of a bounded input read (0..1), or None when unknown/unbounded."""

    async def close(self) -> None:
        """Release files and connections (also after a failure or cancellation)."""


class Sink(Protocol):
    """A sink connector class (named from YAML by ``type:``).

    ``GUARANTEE`` says what a job gets: ``"exactly_once"`` (two-phase commit with the
    checkpoints), ``"at_least_once"`` (flushed at every checkpoint) or ``"none"``.
    """

    PARAMS: Mapping[str, Param]
    GUARANTEE: str

    @classmethod
    def validate(cls, params: Mapping[str, Any], where: str, base_dir: str) -> dict[str, Any]: ...

    @classmethod
    def create_writer(cls, params: Mapping[str, Any], ctx: Any) -> SinkWriter: ...


class SinkWriter(Protocol):
    """Writes one sink subtask's output; two-phase commit for exactly-once sinks (Flink's SinkV2).

    Checkpoint ``n`` on a sink subtask (steps run on the task, in this order):

    1. the barrier reaches the sink: ``prepare_commit(n)`` flushes what was written since
       checkpoint ``n - 1`` and returns its *committables* (JSON-able: e.g. the names of pending
       files, a transaction id), which go into the checkpoint together with ``snapshot_state(n)``;
    2. once the JobManager declares ``n`` complete, ``commit(committables)`` makes them visible;
    3. after a failure the job restarts from the last completed checkpoint: the writer is
       created again, ``restore_state`` gets its snapshot, and ``commit`` is called again with
       the committables that checkpoint recorded, so ``commit`` must be idempotent (committing
       twice is harmless, committing something already committed is a no-op).

    Writers of ``"none"``/``"at_least_once"`` sinks keep the defaults: no committables.
    """

    async def open(self) -> None:
        """Acquire files and connections; called once before the first ``write``."""

    async def write(self, records: list[Any]) -> None:
        """Write a batch; may wait (backpressure)."""

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        """Flush, and return the committables of checkpoint ``checkpoint_id`` (default ``[]``)."""

    async def commit(self, committables: list[Any]) -> None:
        """Make ``committables`` visible; idempotent (see the class docstring)."""

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """JSON-able writer state for the checkpoint (default None)."""

    def restore_state(self, state: Any) -> None:
        """Take back a state from :meth:`snapshot_state` (a restore); called before ``open``."""

    async def finish(self) -> None:
        """End of input: flush everything (a bounded job's last output becomes visible)."""

    async def close(self) -> None:
        """Release resources (also after a failure or cancellation)."""


class SinkWriterBase:
    """Defaults for the optional :class:`SinkWriter` hooks: subclass and override what you need."""

    async def open(self) -> None:
        return None

    async def write(self, records: list[Any]) -> None:
        return None

    async def prepare_commit(self, checkpoint_id: int) -> list[Any]:
        return []

    async def commit(self, committables: list[Any]) -> None:
        return None

    def snapshot_state(self, checkpoint_id: int) -> Any:
        return None

    def restore_state(self, state: Any) -> None:
        return None

    async def finish(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _NamedWriter:
    """A sink writer whose failures name its node (see :func:`named_writer`)."""

    def __init__(self, writer: Any, node_id: str) -> None:
        self._writer = writer
        self.node_id = node_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    async def _call(self, what: str, method: Any, *args: Any) -> Any:
        try:
            return await method(*args)
        except SinkRecordError as exc:
            raise SinkWriteError(self.node_id, str(exc)) from exc
        except (TypeError, ValueError, OSError) as exc:
            raise SinkWriteError(self.node_id, f"{what} failed: {type(exc).__name__}: {exc}") from exc

    async def write(self, records: list[Any]) -> None:
        await self._call("write", self._writer.write, records)

    async def finish(self) -> None:
        await self._call("finish", self._writer.finish)


def named_writer(writer: Any, node_id: str) -> Any:
    """``writer`` with errors of ``write`` and ``finish`` turned into :class:`SinkWriteError` naming
    ``node_id`` (the record and the fix when the connector raised :class:`SinkRecordError`).

    Called by the operator chain where a sink is built; every other method is the writer's own.
    """
    return _NamedWriter(writer, node_id)


def not_json(records: list[Any], exc: BaseException) -> SinkRecordError:
    """The error for the first record of ``records`` that orjson cannot encode."""
    for r in records:
        try:
            _orjson.dumps(r)
        except TypeError as e:
            return SinkRecordError(r, f"it is not JSON ({e})", "turn the value into a string, number, list or map "
                                   "with string keys before the sink, e.g. map: \"dict(r, tags=sorted(r['tags']))\" "
                                   "for a set")
    return SinkRecordError(records[0] if records else None, f"it is not JSON ({exc})",
                           "turn values into strings, numbers, lists or maps before the sink")
