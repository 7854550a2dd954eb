"""Operator contract and the runtime context operators receive.

An operator works on whole batches: ``process(records, timestamps)`` returns the output batch.
``timestamps`` is None, or a list of int milliseconds parallel to ``records`` (event time).
Every hook has a default so simple operators override only ``process``.

Life cycle on a subtask: ``open(ctx)``, then ``process`` per batch, ``end_input()`` once when
every input has ended (bounded inputs; batch-mode aggregates emit their final rows here), then
``close()`` (also after a failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamlet.clock import Clock, SystemClock
from streamlet.keys import KeyGroupRange
from streamlet.state.base import KeyedStateBackend

Batch = list[Any]
Timestamps = list[int] | None


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

    @property
    def key_groups(self) -> KeyGroupRange:
        return KeyGroupRange.for_subtask(self.subtask_index, self.parallelism, self.max_parallelism)


class Operator:
    """Base class of operators in a chain."""

    #: node ids of the pipeline this operator implements (several when fused)
    node_ids: tuple[str, ...] = ()

    def open(self, ctx: RuntimeContext) -> None:
        """Called once before the first batch."""

    def process(self, records: Batch, timestamps: Timestamps) -> tuple[Batch, Timestamps]:
        """Transform one batch; return the output batch (may be empty)."""
        return records, timestamps

    def end_input(self) -> tuple[Batch, Timestamps]:
        """Every input ended; return final output (e.g. batch-mode aggregate rows)."""
        return [], None

    def close(self) -> None:
        """Release resources; called after the last batch and after failures."""
