"""Key groups: a stable hash (same in every process), Flink's contiguous key-group ranges, and
every key group owned by exactly one subtask."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections import Counter

import orjson
import pytest

from streamlet.keys import (
    DEFAULT_MAX_PARALLELISM, KeyGroupRange, freeze, key_bytes, key_group_for, operator_index_for, stable_hash,
    subtask_for_key,
)

KEYS = ["", "a", "user-1", "ünïcödé ✓", 0, 1, -1, 2**40, 3.5, True, None, ("a", 1), ("a", (1, 2)), [1, "x"]]


def _reference_hash(data: bytes) -> int:
    """The documented hash written out independently: CRC-32, then MurmurHash3's fmix32."""
    h = zlib.crc32(data)
    for shift, mul in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h ^= h >> shift
        h = (h * mul) % 2**32
    return h ^ (h >> 16)


def test_default_max_parallelism_is_flinks() -> None:
    assert DEFAULT_MAX_PARALLELISM == 128


def test_key_bytes_are_canonical_json() -> None:
    assert key_bytes("a") == b'"a"'
    assert key_bytes(7) == b"7"
    assert key_bytes(("a", 1)) == key_bytes(["a", 1]) == b'["a",1]'
    assert key_bytes({"b": 1, "a": 2}) == key_bytes({"a": 2, "b": 1}) == b'{"a":2,"b":1}'
    # equal by == in Python but different keys on the wire, as in Flink (Integer vs String)
    assert key_bytes(1) != key_bytes("1")


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_stable_hash_matches_the_documented_function(key: object) -> None:
    data = key_bytes(key)
    assert stable_hash(data) == _reference_hash(data)
    assert 0 <= stable_hash(data) < 2**32
    assert key_group_for(key, 128) == _reference_hash(data) % 128


def test_key_groups_are_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; key groups must not be."""
    program = (
        "import orjson, sys\n"
        "from streamlet.keys import key_group_for, subtask_for_key\n"
        "keys = orjson.loads(sys.stdin.buffer.read())\n"
        "keys = [tuple(k) if isinstance(k, list) else k for k in keys]\n"
        "out = [[key_group_for(k, 128), key_group_for(k, 4096), subtask_for_key(k, 3, 128)] for k in keys]\n"
        "sys.stdout.buffer.write(orjson.dumps([out, hash('salted')]))\n"
    )
    keys = [k for k in KEYS if not isinstance(k, list)] + [f"user-{i}" for i in range(500)]
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", program], input=orjson.dumps(keys), capture_output=True,
                              env=env, timeout=60, check=True)
        results.append(orjson.loads(proc.stdout))
    (groups_1, salted_1), (groups_2, salted_2) = results
    assert salted_1 != salted_2, "the two interpreters must really hash differently"
    here = [[key_group_for(k, 128), key_group_for(k, 4096), subtask_for_key(k, 3, 128)] for k in keys]
    assert groups_1 == groups_2 == here


def test_keys_spread_over_key_groups() -> None:
    counts = Counter(key_group_for(f"user-{i}", 128) for i in range(12_800))
    assert len(counts) == 128
    # 100 expected per group; a binomial spread stays far inside this band
    assert 50 <= min(counts.values()) and max(counts.values()) <= 150
    ints = Counter(key_group_for(i, 128) for i in range(12_800))
    assert len(ints) == 128 and max(ints.values()) <= 150


@pytest.mark.parametrize("parallelism, max_parallelism", [
    (p, m) for m in (1, 7, 128, 1000) for p in (1, 2, 3, 5, 7) if p <= m])
def test_every_key_group_has_exactly_one_owner(parallelism: int, max_parallelism: int) -> None:
    ranges = [KeyGroupRange.for_subtask(i, parallelism, max_parallelism) for i in range(parallelism)]
    # contiguous, in subtask order, covering 0..max-1 without overlap
    assert ranges[0].start == 0 and ranges[-1].end == max_parallelism - 1
    for a, b in zip(ranges, ranges[1:]):
        assert b.start == a.end + 1
    assert sum(len(r) for r in ranges) == max_parallelism
    # balanced: sizes differ by at most one
    assert max(map(len, ranges)) - min(map(len, ranges)) <= 1
    for kg in range(max_parallelism):
        owners = [i for i, r in enumerate(ranges) if kg in r]
        assert owners == [operator_index_for(kg, parallelism, max_parallelism)]


def test_ranges_are_flinks() -> None:
    """KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex(128, 3, i)."""
    assert [(r.start, r.end) for r in (KeyGroupRange.for_subtask(i, 3, 128) for i in range(3))] == [
        (0, 42), (43, 85), (86, 127)]
    # computeOperatorIndexForKeyGroup(128, 3, kg) = kg * 3 / 128
    assert [operator_index_for(kg, 3, 128) for kg in (0, 42, 43, 85, 86, 127)] == [0, 0, 1, 1, 2, 2]
    assert 5 not in KeyGroupRange(6, 9) and "6" not in KeyGroupRange(6, 9) and len(KeyGroupRange(3, 2)) == 0


def test_subtask_for_key_composes_key_group_and_owner() -> None:
    for i in range(200):
        key = f"k{i}"
        kg = key_group_for(key, 128)
        assert subtask_for_key(key, 4, 128) == kg * 4 // 128
        assert kg in KeyGroupRange.for_subtask(subtask_for_key(key, 4, 128), 4, 128)


def test_freeze_makes_keys_hashable() -> None:
    assert freeze([1, [2, 3]]) == (1, (2, 3))
    assert freeze("a") == "a"
    assert key_bytes(freeze([1, [2, 3]])) == orjson.dumps([1, [2, 3]])
    with pytest.raises(TypeError, match="cannot be a dict"):
        freeze({"a": 1})


def test_keys_equal_in_python_share_a_key_group() -> None:
    from streamlet.keys import key_bytes, key_group_for

    assert key_bytes(1) == key_bytes(1.0) == key_bytes(True)
    assert key_bytes((1, "a")) == key_bytes([1.0, "a"])
    assert key_bytes(1.5) != key_bytes(1)
    assert {key_group_for(k) for k in (7, 7.0)} == {key_group_for(7)}
