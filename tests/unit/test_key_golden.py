"""Golden vectors of the key -> key group -> subtask mapping.

Savepoints hold keyed state by key group (heap sections, RocksDB key prefixes), so this mapping is
part of their format: a later version that changed it would restore state into the wrong
subtasks.  The values below were computed once (2026-12-01) and are written here as literals; the
test never recomputes them with the code under test.  If one of these fails, the change breaks
every existing savepoint: revert it, or version the savepoint format.

* key bytes: canonical JSON (orjson, sorted map keys; 1, 1.0 and True are one key);
* hash: CRC-32 of the bytes, then MurmurHash3's fmix32; key group = hash % max_parallelism;
* ranges: Flink's ``KeyGroupRangeAssignment.computeKeyGroupRangeForOperatorIndex``, operator
  ``i`` of ``p`` owns ``[ceil(i * maxP / p), ceil((i + 1) * maxP / p) - 1]`` (the literal ranges
  were worked out with that ceil formula), and ``computeOperatorIndexForKeyGroup`` is
  ``key_group * p // maxP``.
"""

from __future__ import annotations

import pytest

from streamlet.keys import KeyGroupRange, key_bytes, key_group_for, operator_index_for, stable_hash, subtask_for_key

_LONG = "x" * 300

#: (key, key bytes, 32-bit hash, key group at max_parallelism 128, at 32768)
GOLDEN = [
    ("", b'""', 1166885235, 115, 16755),
    ("a", b'"a"', 868076847, 47, 19759),
    ("A", b'"A"', 4207509756, 124, 252),
    ("user-1", b'"user-1"', 411039393, 33, 30369),
    ("user-2", b'"user-2"', 1459872989, 93, 25821),
    ("ünïcödé ✓", b'"\xc3\xbcn\xc3\xafc\xc3\xb6d\xc3\xa9 \xe2\x9c\x93"', 1314254100, 20, 27924),
    ("日本語", b'"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"', 1551300587, 107, 30699),
    ("🦊", b'"\xf0\x9f\xa6\x8a"', 3181059187, 115, 7283),
    ('a"b\\c\n', b'"a\\"b\\\\c\\n"', 2095854654, 62, 13374),
    (_LONG, b'"' + b"x" * 300 + b'"', 3846315800, 24, 7960),
    (0, b"0", 985228334, 46, 25646),
    (1, b"1", 3360829870, 46, 12718),
    (-1, b"-1", 1093615519, 31, 16287),
    (42, b"42", 2339504796, 28, 668),
    (2147483647, b"2147483647", 2067740420, 4, 14084),
    (2147483648, b"2147483648", 1958013457, 17, 27153),
    (-2147483648, b"-2147483648", 2403330839, 23, 27415),
    (9007199254740993, b"9007199254740993", 1317065912, 56, 21688),
    (9223372036854775807, b"9223372036854775807", 2854203750, 102, 12646),
    (-9223372036854775808, b"-9223372036854775808", 3364746053, 69, 29509),
    (0.0, b"0", 985228334, 46, 25646),
    (1.0, b"1", 3360829870, 46, 12718),
    (1.5, b"1.5", 3079334396, 124, 27132),
    (-2.25, b"-2.25", 1519720509, 61, 6205),
    (3.141592653589793, b"3.141592653589793", 3122798346, 10, 7946),
    (1e300, b"1e+300", 810688262, 6, 7942),
    (-1e-300, b"-1e-300", 744586113, 1, 31617),
    (2.5e-08, b"2.5e-8", 1970282145, 33, 7841),
    (True, b"1", 3360829870, 46, 12718),
    (False, b"0", 985228334, 46, 25646),
    (None, b"null", 1645001824, 96, 15456),
    ((), b"[]", 1233465765, 37, 12709),
    (("a", 1), b'["a",1]', 1542648732, 28, 29596),
    (("a", (1, 2)), b'["a",[1,2]]', 3857998051, 99, 24803),
    ([1, "x"], b'[1,"x"]', 379604800, 64, 20288),
    (("ünï", 2.5, None), b'["\xc3\xbcn\xc3\xaf",2.5,null]', 3227051831, 55, 26423),
    ((1.0, True), b"[1,1]", 1405928035, 99, 16995),
    ([[1, 2], [3, [4, "z"]]], b'[[1,2],[3,[4,"z"]]]', 1747870373, 37, 25253),
]

#: (max_parallelism, parallelism) -> the inclusive key-group range of each operator index
RANGES = {
    (128, 1): [(0, 127)],
    (128, 2): [(0, 63), (64, 127)],
    (128, 3): [(0, 42), (43, 85), (86, 127)],
    (128, 5): [(0, 25), (26, 51), (52, 76), (77, 102), (103, 127)],
    (128, 7): [(0, 18), (19, 36), (37, 54), (55, 73), (74, 91), (92, 109), (110, 127)],
    (32768, 1): [(0, 32767)],
    (32768, 3): [(0, 10922), (10923, 21845), (21846, 32767)],
    (32768, 7): [(0, 4681), (4682, 9362), (9363, 14043), (14044, 18724), (18725, 23405), (23406, 28086),
                 (28087, 32767)],
}

#: (max_parallelism, parallelism, operator index) -> its range, for parallelisms too large to list
SOME_RANGES = [
    (128, 128, 0, (0, 0)), (128, 128, 1, (1, 1)), (128, 128, 127, (127, 127)),
    (128, 100, 0, (0, 1)), (128, 100, 1, (2, 2)), (128, 100, 2, (3, 3)), (128, 100, 3, (4, 5)),
    (128, 100, 4, (6, 6)), (128, 100, 98, (126, 126)), (128, 100, 99, (127, 127)),
    (32768, 100, 0, (0, 327)), (32768, 100, 1, (328, 655)), (32768, 100, 2, (656, 983)),
    (32768, 100, 49, (16057, 16383)), (32768, 100, 50, (16384, 16711)), (32768, 100, 98, (32113, 32440)),
    (32768, 100, 99, (32441, 32767)),
]


@pytest.mark.parametrize(("key", "data", "hashed", "kg128", "kg32768"), GOLDEN,
                         ids=[repr(g[0])[:24] for g in GOLDEN])
def test_key_bytes_hash_and_key_groups_are_pinned(key: object, data: bytes, hashed: int, kg128: int,
                                                  kg32768: int) -> None:
    assert key_bytes(key) == data
    assert stable_hash(data) == hashed
    assert key_group_for(key, 128) == kg128
    assert key_group_for(key, 32768) == kg32768


@pytest.mark.parametrize(("max_parallelism", "parallelism"), sorted(RANGES))
def test_key_group_ranges_per_operator_index_are_flinks(max_parallelism: int, parallelism: int) -> None:
    ranges = RANGES[(max_parallelism, parallelism)]
    got = [KeyGroupRange.for_subtask(i, parallelism, max_parallelism) for i in range(parallelism)]
    assert [(r.start, r.end) for r in got] == ranges
    for index, (start, end) in enumerate(ranges):
        for kg in (start, (start + end) // 2, end):
            assert operator_index_for(kg, parallelism, max_parallelism) == index


@pytest.mark.parametrize(("max_parallelism", "parallelism", "index", "expected"), SOME_RANGES)
def test_some_ranges_of_large_parallelisms(max_parallelism: int, parallelism: int, index: int,
                                          expected: tuple[int, int]) -> None:
    r = KeyGroupRange.for_subtask(index, parallelism, max_parallelism)
    assert (r.start, r.end) == expected
    assert operator_index_for(expected[0], parallelism, max_parallelism) == index
    assert operator_index_for(expected[1], parallelism, max_parallelism) == index


def test_keys_go_to_the_subtask_owning_their_pinned_key_group() -> None:
    ranges = RANGES[(128, 3)]
    for key, _, _, kg128, _ in GOLDEN:
        owner = next(i for i, (start, end) in enumerate(ranges) if start <= kg128 <= end)
        assert subtask_for_key(key, 3, 128) == owner
