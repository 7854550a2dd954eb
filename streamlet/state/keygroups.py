"""Key-group sections: one blob whose per-key-group byte ranges a handle lists (Flink's
KeyGroupsStateHandle offsets), so a restore at another parallelism reads only its key groups.

Used by the heap snapshot (all state) and the rocksdb snapshot (its timers).  A section is any
bytes; the offsets are ``[[key_group, offset, length], ...]`` in ascending key-group order.
"""

from __future__ import annotations

from typing import Any, Mapping

from streamlet.keys import freeze


def thaw(value: Any) -> Any:
    """A key or namespace decoded from JSON, hashable again (lists back to tuples)."""
    return freeze(value) if type(value) is list else value


def join_sections(sections: Mapping[int, bytes]) -> tuple[bytes, list[list[int]]]:
    """One blob of ``sections`` (key group -> bytes) and its offsets."""
    parts, offsets, pos = [], [], 0
    for kg in sorted(sections):
        data = sections[kg]
        parts.append(data)
        offsets.append([kg, pos, len(data)])
        pos += len(data)
    return b"".join(parts), offsets


def read_sections(storage: Any, path: str | None, offsets: list[list[int]], start: int, end: int) -> list[tuple[int, bytes]]:
    """The sections of key groups ``start..end`` from blob ``path``, with one ranged read (blocking)."""
    mine = [(kg, off, n) for kg, off, n in offsets if start <= kg <= end]
    if not mine or path is None:
        return []
    first = mine[0][1]
    blob = storage.get_range(path, first, mine[-1][1] + mine[-1][2] - first)
    return [(kg, blob[off - first:off - first + n]) for kg, off, n in mine]
