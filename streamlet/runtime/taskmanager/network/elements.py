"""Elements that travel on channels.

A channel carries :class:`RecordBatch` (records plus optional event timestamps), and control
elements: :class:`Watermark`, :class:`WatermarkStatus`, :class:`CheckpointBarrier`,
:class:`EndOfPartition`, :class:`LatencyMarker`.  Every
element has a JSON form for remote channels (``to_wire`` / :func:`from_wire`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RecordBatch:
    """A batch of records; ``timestamps`` is None or parallel int milliseconds."""

    __slots__ = ("records", "timestamps")

    def __init__(self, records: list[Any], timestamps: list[int] | None = None) -> None:
        self.records = records
        self.timestamps = timestamps

    def __len__(self) -> int:
        return len(self.records)

    def to_wire(self) -> list[Any]:
        return ["b", self.records, self.timestamps]


@dataclass(frozen=True)
class Watermark:
    """Event time has reached ``timestamp`` on this channel."""

    timestamp: int

    def to_wire(self) -> list[Any]:
        return ["w", self.timestamp]


@dataclass(frozen=True)
class WatermarkStatus:
    """The producer of this channel went idle (no watermark for now) or became active again.

    An idle channel is left out of the consumer's watermark minimum (Flink's WatermarkStatus)."""

    idle: bool

    def to_wire(self) -> list[Any]:
        return ["s", self.idle]


IDLE_STATUS = WatermarkStatus(True)
ACTIVE_STATUS = WatermarkStatus(False)


@dataclass(frozen=True)
class CheckpointBarrier:
    """Checkpoint ``checkpoint_id`` boundary."""

    checkpoint_id: int
    timestamp: int
    #: a savepoint: every task takes a self-contained snapshot (no shared files)
    savepoint: bool = False

    def to_wire(self) -> list[Any]:
        return ["c", self.checkpoint_id, self.timestamp, self.savepoint]


@dataclass(frozen=True)
class EndOfPartition:
    """The producer of this channel has finished; nothing follows."""

    def to_wire(self) -> list[Any]:
        return ["e"]


END_OF_PARTITION = EndOfPartition()


@dataclass(frozen=True)
class LatencyMarker:
    """Emitted by source subtask ``subtask_index`` of source ``source_id`` at ``marked_time`` (epoch
    ms, every ``metrics.latency.interval``); each task it reaches records ``now - marked_time`` and
    forwards it on one channel of each output (Flink's LatencyMarker: it measures the time records
    spend queued and in flight, not the time operators take)."""

    marked_time: int
    source_id: str
    subtask_index: int

    def to_wire(self) -> list[Any]:
        return ["l", self.marked_time, self.source_id, self.subtask_index]


def from_wire(data: list[Any]) -> Any:
    """The element a ``to_wire`` list encodes; raises ValueError for anything else (a batch whose
    records are not a list, timestamps not parallel to them, a watermark that is not an int)."""
    tag = data[0]
    if tag == "b":
        records, ts = data[1], data[2]
        if type(records) is not list or (ts is not None and (type(ts) is not list or len(ts) != len(records))):
            raise ValueError("a record batch needs a list of records and null or as many timestamps")
        return RecordBatch(records, ts)
    if tag == "w":
        if type(data[1]) is not int:
            raise ValueError(f"a watermark is an integer, got {data[1]!r}")
        return Watermark(data[1])
    if tag == "c":
        if type(data[1]) is not int or type(data[2]) is not int or (len(data) > 3 and type(data[3]) is not bool):
            raise ValueError("a checkpoint barrier carries two integers and a boolean")
        return CheckpointBarrier(data[1], data[2], len(data) > 3 and data[3])
    if tag == "e":
        return END_OF_PARTITION
    if tag == "l":
        if type(data[1]) is not int or type(data[2]) is not str or type(data[3]) is not int:
            raise ValueError("a latency marker carries a time, a source id and a subtask index")
        return LatencyMarker(data[1], data[2], data[3])
    if tag == "s":
        if type(data[1]) is not bool:
            raise ValueError(f"a watermark status is a boolean, got {data[1]!r}")
        return IDLE_STATUS if data[1] else ACTIVE_STATUS
    raise ValueError(f"unknown element tag {tag!r}")
