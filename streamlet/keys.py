"""Stable keys, key groups and their assignment to subtasks.

A key's identity across processes is its canonical JSON bytes (orjson, sorted dict keys); its
hash is CRC-32 of those bytes finished with MurmurHash3's ``fmix32`` avalanche, so it is the same
in every process and every run (Python's ``hash()`` is salted per process and never used).

``key_group = stable_hash(key_bytes(key)) % max_parallelism`` and the subtask that owns a key
group is ``key_group * parallelism // max_parallelism``: contiguous ranges, as in Flink, so a
rescale moves whole key groups.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

_DUMPS = orjson.dumps
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
DEFAULT_MAX_PARALLELISM = 128


def _canonical(key: object) -> object:
    # keys that Python's dicts treat as equal (1, 1.0, True) must land in the same key group,
    # because keyed state holds them under one dict key
    t = type(key)
    if t is int or t is str:
        return key
    if t is bool:
        return int(key)  # type: ignore[arg-type]
    if t is float:
        # an integral float beyond 64 bits (1e300) stays a float: no int key can equal it (orjson
        # writes no such int), and int() of it would not serialize
        return int(key) if key.is_integer() and -2**63 <= key < 2**64 else key  # type: ignore[union-attr,operator]
    if t is tuple or t is list:
        return [_canonical(k) for k in key]  # type: ignore[union-attr]
    return key


def key_bytes(key: object) -> bytes:
    """Canonical bytes of ``key`` (a JSON value or a tuple of them).

    Keys equal in Python (``1``, ``1.0``, ``True``) have equal bytes.
    """
    return _DUMPS(_canonical(key), option=_OPTS)


def stable_hash(data: bytes) -> int:
    """A 32-bit hash of ``data`` that is identical in every process."""
    h = zlib.crc32(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def key_group_for(key: object, max_parallelism: int = DEFAULT_MAX_PARALLELISM) -> int:
    """The key group (0 .. max_parallelism-1) of ``key``."""
    return stable_hash(key_bytes(key)) % max_parallelism


def operator_index_for(key_group: int, parallelism: int, max_parallelism: int) -> int:
    """The subtask index (0 .. parallelism-1) that owns ``key_group``."""
    return key_group * parallelism // max_parallelism


def subtask_for_key(key: object, parallelism: int, max_parallelism: int) -> int:
    """The subtask index that owns ``key``."""
    return operator_index_for(key_group_for(key, max_parallelism), parallelism, max_parallelism)


@dataclass(frozen=True)
class KeyGroupRange:
    """An inclusive range of key groups owned by one subtask."""

    start: int
    end: int

    def __contains__(self, key_group: object) -> bool:
        return isinstance(key_group, int) and self.start <= key_group <= self.end

    def __len__(self) -> int:
        return max(0, self.end - self.start + 1)

    @classmethod
    def for_subtask(cls, index: int, parallelism: int, max_parallelism: int) -> KeyGroupRange:
        """The key groups subtask ``index`` owns (the inverse of :func:`operator_index_for`)."""
        start = (index * max_parallelism + parallelism - 1) // parallelism
        end = ((index + 1) * max_parallelism - 1) // parallelism
        return cls(start, end)


def freeze(value: object) -> object:
    """Make a key hashable: lists become tuples, recursively; dicts are rejected."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        raise TypeError(f"a key cannot be a dict ({value!r}); key by its fields instead")
    return value
