"""RocksDB-specific guarantees: key layout, the cached hot path, the memory bound, incremental checkpoints."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamlet.keys import KeyGroupRange, key_bytes, key_group_for
from streamlet.state import VOID, StateDescriptor, StateKind, create_backend
from streamlet.state.storage import open_storage

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[Any]:
    made: list[Any] = []

    def make(key_groups: KeyGroupRange = KeyGroupRange(0, 127), **options: Any) -> Any:
        b = create_backend("rocksdb", key_groups, 128, name=f"t{len(made)}",
                           options={"local_dir": str(tmp_path / "local"), **options})
        made.append(b)
        return b

    yield make

    async def close() -> None:
        for b in made:
            await b.close()

    asyncio.run(close())


def test_hot_path_is_the_cache_dicts_own_methods(backends: Any) -> None:
    v = backends().value_state("counts")
    assert isinstance(v.get.__self__, dict) and v.get.__name__ == "__getitem__"
    assert v.put.__self__ is v.get.__self__ and v.put.__name__ == "__setitem__"


def test_keys_are_prefixed_by_their_key_group(backends: Any) -> None:
    b = backends()
    v = b.value_state("v")
    keys = [f"k{i}" for i in range(300)] + [("t", i) for i in range(50)]
    for k in keys:
        v.put(k, 1)
    v.put_ns("k1", (0, 10), 2)
    asyncio.run(b.maintain())
    asyncio.run(b._off_loop(b.flush_caches, True))
    raw = list(v.cf.keys())
    assert len(raw) == len(keys) + 1
    assert raw == sorted(raw), "RocksDB iterates in key order"
    groups = [int.from_bytes(r[:2], "big") for r in raw]
    assert groups == sorted(groups), "a key-group range is a contiguous key range"
    by_key = {r[2:].split(b"\x00", 1)[0] + b"|" + r[2:].split(b"\x00", 1)[1]: int.from_bytes(r[:2], "big") for r in raw}
    for k in keys:
        assert by_key[key_bytes(k) + b"|"] == key_group_for(k, 128)
    assert by_key[key_bytes("k1") + b"|" + key_bytes((0, 10))] == key_group_for("k1", 128)


def test_write_cache_stays_bounded_and_loses_nothing(backends: Any) -> None:
    b = backends(cache_entries=100)
    v = b.value_state("sums")
    lst = b.state(StateDescriptor("l", StateKind.LIST))
    rnd = random.Random(3)
    model: dict[Any, int] = {}
    lists: dict[Any, list[int]] = {}

    async def drive() -> None:
        for batch in range(60):
            for _ in range(100):
                k = rnd.randrange(2000)
                a = v.get(k)
                v.put(k, 1 if a is None else a + 1)
                model[k] = model.get(k, 0) + 1
                if k % 7 == 0:
                    lst.add(k, batch, (batch % 3, 0))
                    lists.setdefault((k, (batch % 3, 0)), []).append(batch)
            await b.maintain()
            assert b.cached_entries() <= 100

    asyncio.run(drive())
    assert dict(v.items()) == model
    assert {(k, ns): val for ns in lst.namespaces() for k, val in lst.items(ns)} == lists
    assert asyncio.run(v.collect(VOID)) and sorted(asyncio.run(v.collect(VOID))) == sorted(model.items())


_RSS_CHILD = textwrap.dedent("""
    import asyncio, json, resource, sys, tempfile
    sys.path.insert(0, sys.argv[3])
    from streamlet.keys import KeyGroupRange
    from streamlet.state import create_backend

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    async def main(kind, n):
        with tempfile.TemporaryDirectory() as tmp:
            opts = {"local_dir": tmp, "cache_entries": 10000, "write_buffer_mb": 4, "block_cache_mb": 8}
            b = create_backend(kind, KeyGroupRange(0, 127), 128, options=opts if kind == "rocksdb" else {})
            v = b.value_state("v")
            get, put = v.get, v.put
            warm = None
            for i in range(n):
                a = get(i)
                put(i, [i, i + 1, "payload-%d" % i])
                if i % 512 == 0:
                    await b.maintain()
                if i == n // 5:
                    warm = rss_mb()
            assert get(n // 2)[0] == n // 2
            end = rss_mb()
            await b.close()
        print(json.dumps({"warm": warm, "end": end,
                          "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")


def _rss_run(kind: str, n: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", _RSS_CHILD, kind, str(n), str(ROOT)], capture_output=True,
                          text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_state_larger_than_the_cache_keeps_rss_bounded() -> None:
    """400,000 distinct keys through a 10,000-entry cache: rocksdb's RSS stays flat, heap's grows."""
    n = 400_000
    rocks = _rss_run("rocksdb", n)
    heap = _rss_run("heap", n)
    heap_growth = heap["end"] - heap["warm"]
    rocks_growth = rocks["end"] - rocks["warm"]
    assert heap_growth > 60, f"the workload must be big enough to tell ({heap})"
    assert rocks_growth < 25, f"rocksdb RSS grew {rocks_growth:.0f} MiB over 320,000 keys ({rocks})"


def test_incremental_checkpoint_uploads_only_new_files_and_restores_exactly(backends: Any, tmp_path: Path) -> None:
    """100,000 keys, 1% updated between two checkpoints: the second uploads < 10% of the first."""
    storage = open_storage(str(tmp_path / "chk")).scoped("job")
    b = backends(cache_entries=20_000)
    v = b.value_state("v")
    model: dict[str, list[int]] = {}

    async def scenario() -> tuple[dict, dict]:
        for i in range(100_000):
            v.put(f"key-{i}", [i, 0])
            model[f"key-{i}"] = [i, 0]
            if i % 512 == 0:
                await b.maintain()
        h1 = await (await b.snapshot(1)).persist(storage)
        b.notify_checkpoint_complete(1)
        for i in range(0, 100_000, 100):
            v.put(f"key-{i}", [i, 2])
            model[f"key-{i}"] = [i, 2]
        h2 = await (await b.snapshot(2)).persist(storage)
        b.notify_checkpoint_complete(2)
        return h1, h2

    h1, h2 = asyncio.run(scenario())
    assert json.loads(json.dumps(h2)) == h2
    assert h2["bytes_uploaded"] < 0.1 * h1["bytes_uploaded"], (h1["bytes_uploaded"], h2["bytes_uploaded"])
    assert set(h1["shared"]) & set(h2["shared"]), "the second checkpoint references the first one's SSTs"
    assert all(storage.exists(p) for p in h2["shared"]) and all(p.startswith("shared/") for p in h2["shared"])
    restored = backends()
    asyncio.run(restored.restore([h2], storage))
    rv = restored.value_state("v")
    assert dict(rv.items()) == model

    async def after_restore() -> dict:
        for i in range(50, 100_000, 100):
            rv.put(f"key-{i}", [i, 3])
            model[f"key-{i}"] = [i, 3]
        return await (await restored.snapshot(3)).persist(storage)

    h3 = asyncio.run(after_restore())
    assert h3["bytes_uploaded"] < 0.1 * h1["bytes_uploaded"], "a restored backend reuses the SSTs it restored"
    assert set(h2["shared"]) & set(h3["shared"])
    again = backends()
    asyncio.run(again.restore([h3], storage))
    assert dict(again.value_state("v").items()) == model


def test_full_checkpoint_is_self_contained(backends: Any, tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "chk")).scoped("job")
    b = backends(incremental=False)
    v = b.value_state("v")
    for i in range(5000):
        v.put(i, i * 2)

    async def two() -> tuple[dict, dict]:
        h1 = await (await b.snapshot(1)).persist(storage)
        b.notify_checkpoint_complete(1)
        v.put(1, -1)
        return h1, await (await b.snapshot(2)).persist(storage)

    h1, h2 = asyncio.run(two())
    assert h1["shared"] == [] and h2["shared"] == [] and not h2["incremental"]
    assert all(p.startswith("chk-2/") for p in h2["files"].values())
    storage.delete_prefix("chk-1")  # nothing of checkpoint 1 is needed by checkpoint 2
    restored = backends()
    asyncio.run(restored.restore([h2], storage))
    assert dict(restored.value_state("v").items()) == {**{i: i * 2 for i in range(5000)}, 1: -1}
