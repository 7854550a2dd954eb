"""Operator contract and the runtime context operators receive.

An operator works on whole batches: ``process(records, timestamps)`` returns the output batch.
``timestamps`` is None, or a list of int milliseconds parallel to ``records`` (event time).
Every hook has a default, so a simple operator overrides only ``process``.

Life cycle on a subtask (Flink's ``StreamOperator`` steps, each a separate call):

1. construction ``Op(spec, ctx)``: keep the spec and the context; no I/O, no state access;
2. ``initialize_state(restored)``: keyed state (``ctx.state``) is already restored when the
   subtask starts from a checkpoint; ``restored`` is what this operator's ``snapshot_state``
   returned in that checkpoint (None on a fresh start, see ``ctx.restored``);
3. ``open()``: compile functions, obtain state handles;
4. per input element, in order: ``process`` for a batch, ``process_watermark`` when the
   subtask's combined input watermark advances (the watermark is forwarded downstream after the
   output this call returns; the runtime calls ``process_watermark_chunks``, see below),
   ``on_timer`` when a timer registered through ``ctx`` fires;
5. at a checkpoint barrier ``snapshot_state(checkpoint_id)`` (after every record before the
   barrier was processed), later ``notify_checkpoint_complete(checkpoint_id)``;
6. ``end_input()`` once every input ended (bounded inputs; batch-mode aggregates emit their
   final rows here), then ``close()`` (also after a failure or cancellation).

A watermark can fire very many windows or timers at once (the final watermark of a bounded
input fires every open window).  An operator that fires timers overrides
``process_watermark_chunks`` (and ``end_input_chunks`` when its end of input fires timers) to
return its output as an iterator of chunks of at most :data:`FIRE_CHUNK` fired timers each,
doing the work lazily, chunk by chunk; the task sends each chunk on and lets the event loop run
(heartbeats, RPC, cancellation, other subtasks) before it asks for the next.  The concatenated
chunks are exactly what one call would return; ``process_watermark`` / ``end_input`` return
that concatenation (:func:`concat`).  No other hook of the operator runs between two chunks.

Output other than the main output goes to a named side output with ``ctx.side_output(tag,
records, timestamps)`` (late records of a window, a process function's extra outputs); nodes
that read ``tag`` receive it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from streamlet.clock import Clock, SystemClock
from streamlet.keys import KeyGroupRange
from streamlet.state.base import KeyedStateBackend

Batch = list[Any]
Timestamps = list[int] | None
#: what operator hooks return: an output batch and its timestamps
Output = tuple[Batch, Timestamps]
NO_OUTPUT: Output = ([], None)
#: timers an operator fires per chunk of a watermark's output (see the module docstring): a few
#: milliseconds of work, so a watermark that fires millions of windows never holds the loop long
FIRE_CHUNK = 1024


def concat(chunks: Iterable[Output]) -> Output:
    """The chunks of one firing as one output (timestamps None only when every chunk has none)."""
    records: Batch = []
    timestamps: list[int] | None = None
    for recs, ts in chunks:
        if not recs:
            continue
        if ts is not None and timestamps is None:
            timestamps = [0] * len(records)
        if timestamps is not None:
            timestamps.extend(ts if ts is not None else [0] * len(recs))
        records.extend(recs)
    return records, timestamps


class SideOutputs(Protocol):
    """Where ``ctx.side_output`` sends records (the runtime routes them to the tag's readers)."""

    def emit(self, tag: str, records: Batch, timestamps: Timestamps) -> None: ...


class ProcessingTimeService(Protocol):
    """Processing-time callbacks served by the subtask's mailbox (never concurrently with a batch)."""

    def register(self, time_ms: int, callback: Callable[[int], Iterable[Output]]) -> None:
        """Call ``callback(time_ms)`` once the clock's ``time_ms()`` reached ``time_ms``.

        The callback returns its output as chunks (like ``process_watermark_chunks``: at most
        :data:`FIRE_CHUNK` fired timers each, made lazily); each chunk enters the chain right after
        the operator that registered it, and the event loop runs between two chunks.
        """


class _NoSideOutputs:
    def emit(self, tag: str, records: Batch, timestamps: Timestamps) -> None:
        raise RuntimeError(f"side output {tag!r} has no reader in this job")


@dataclass
class RuntimeContext:
    """What an operator may use from the subtask running it."""

    job_name: str
    vertex_name: str
    subtask_index: int
    parallelism: int
    max_parallelism: int
    mode: str
    state: KeyedStateBackend
    clock: Clock = field(default_factory=SystemClock)
    console: Any = None
    #: the subtask starts from a checkpoint or savepoint
    restored: bool = False
    side_outputs: SideOutputs = field(default_factory=_NoSideOutputs)
    processing_time: ProcessingTimeService | None = None

    @property
    def key_groups(self) -> KeyGroupRange:
        return KeyGroupRange.for_subtask(self.subtask_index, self.parallelism, self.max_parallelism)

    def side_output(self, tag: str, records: Batch, timestamps: Timestamps = None) -> None:
        """Send ``records`` to the side output ``tag`` (see the module docstring)."""
        if records:
            self.side_outputs.emit(tag, records, timestamps)


class Operator:
    """Base class of operators in a chain (see the module docstring for the life cycle)."""

    #: node ids of the pipeline this operator implements (several when fused)
    node_ids: tuple[str, ...] = ()

    def __init__(self, spec: Any, ctx: RuntimeContext) -> None:
        self.spec = spec
        self.ctx = ctx

    def initialize_state(self, restored: Any) -> None:
        """Take back this operator's own state from a checkpoint (None on a fresh start)."""

    def open(self) -> None:
        """Called once before the first batch."""

    def process(self, records: Batch, timestamps: Timestamps) -> Output:
        """Transform one batch; return the output batch (may be empty)."""
        return records, timestamps

    def process_watermark(self, watermark: int) -> Output:
        """The combined input watermark advanced to ``watermark``; return what it fires."""
        return NO_OUTPUT

    def process_watermark_chunks(self, watermark: int) -> Iterator[Output]:
        """``process_watermark``'s output in chunks, computed lazily (see the module docstring).

        The runtime calls this (never both).  Default: one chunk, ``process_watermark(watermark)``.
        """
        yield self.process_watermark(watermark)

    def end_input_chunks(self) -> Iterator[Output]:
        """``end_input``'s output in chunks, like :meth:`process_watermark_chunks`."""
        yield self.end_input()

    def on_timer(self, timer: Any) -> Output:
        """A timer this operator registered fired; return its output."""
        return NO_OUTPUT

    def snapshot_state(self, checkpoint_id: int) -> Any:
        """JSON-able operator (non-keyed) state for checkpoint ``checkpoint_id`` (default None)."""
        return None

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete (durable on every subtask)."""

    def end_input(self) -> Output:
        """Every input ended; return final output (e.g. batch-mode aggregate rows)."""
        return NO_OUTPUT

    def close(self) -> None:
        """Release resources; called after the last batch and after failures."""
