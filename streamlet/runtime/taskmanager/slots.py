"""SlotTable: the slots of one TaskManager and which job holds each.

A slot is FREE or ALLOCATED to one job (under an allocation id).  The JobManager's
ResourceManager decides the placement; the table checks it (a deployment into a slot held by
another job is refused) and frees a job's slots when the job is released.

    FREE --allocate--> ALLOCATED --release--> FREE
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from streamlet.errors import FatalError
from streamlet.ids import new_id


class SlotState(str, Enum):
    """State of one slot."""

    FREE = "FREE"
    ALLOCATED = "ALLOCATED"


ALLOWED_TRANSITIONS: Mapping[SlotState, frozenset[SlotState]] = {
    SlotState.FREE: frozenset({SlotState.ALLOCATED}),
    SlotState.ALLOCATED: frozenset({SlotState.FREE}),
}


class SlotError(FatalError):
    """A deployment names a slot that does not exist or that another job holds."""


@dataclass
class Slot:
    """One slot."""

    index: int
    state: SlotState = SlotState.FREE
    job_id: str | None = None
    allocation_id: str | None = None

    def _move(self, target: SlotState) -> None:
        if target not in ALLOWED_TRANSITIONS[self.state]:
            raise SlotError(f"slot {self.index}: illegal transition {self.state.value} -> {target.value}")
        self.state = target


class SlotTable:
    """The slots of this TaskManager (indexes ``0 .. n-1``)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise SlotError(f"a taskmanager needs at least one slot, got {slots}")
        self.slots = [Slot(i) for i in range(slots)]

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def free(self) -> int:
        return sum(1 for s in self.slots if s.state is SlotState.FREE)

    def allocate(self, job_id: str, indexes: list[int]) -> str:
        """Give ``indexes`` to ``job_id`` (slots it holds already are fine); returns the allocation id.

        Checks every slot first, so a refused deployment changes nothing.
        """
        for i in set(indexes):
            if not 0 <= i < len(self.slots):
                raise SlotError(f"slot {i} does not exist; this taskmanager has {len(self.slots)} slot(s)")
            s = self.slots[i]
            if s.state is SlotState.ALLOCATED and s.job_id != job_id:
                raise SlotError(f"slot {i} is held by job {s.job_id}; cannot deploy job {job_id} into it")
        allocation_id = next((s.allocation_id for s in self.slots if s.job_id == job_id), None) or new_id()
        for i in set(indexes):
            s = self.slots[i]
            if s.state is SlotState.FREE:
                s._move(SlotState.ALLOCATED)
                s.job_id, s.allocation_id = job_id, allocation_id
        return allocation_id

    def release(self, job_id: str, indexes: list[int] | None = None) -> list[int]:
        """Free the slots of ``job_id`` (only ``indexes`` of them when given); returns their indexes."""
        freed = []
        for s in self.slots:
            if s.job_id == job_id and (indexes is None or s.index in indexes):
                s._move(SlotState.FREE)
                s.job_id = s.allocation_id = None
                freed.append(s.index)
        return freed

    def report(self) -> list[dict[str, Any]]:
        """``[{index, state, job_id}]`` for heartbeats."""
        return [{"index": s.index, "state": s.state.value, "job_id": s.job_id} for s in self.slots]
