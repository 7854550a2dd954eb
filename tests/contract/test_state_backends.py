"""One contract, every keyed-state backend: the suite each backend passes unchanged.

Expected values are computed here with plain dicts (a model of what was written), never read
back from another backend.  Time is a ManualClock; storage is a real directory.
"""

from __future__ import annotations

import asyncio
import copy
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pytest

from streamlet.clock import ManualClock
from streamlet.keys import KeyGroupRange, key_group_for, subtask_for_key
from streamlet.state import VOID, StateDescriptor, StateKind, create_backend
from streamlet.state.base import HANDLE_FIELDS
from streamlet.state.errors import StateBackendConfigError, StateDescriptorError, StateRestoreError
from streamlet.state.storage import open_storage

BACKENDS = ["heap", "rocksdb"]
MAXP = 128
ALL = KeyGroupRange(0, MAXP - 1)


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(kind: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make(key_groups=ALL, clock=None)``: a backend of the parametrized kind, closed after the test."""
    made: list[Any] = []

    def factory(key_groups: KeyGroupRange = ALL, clock: ManualClock | None = None) -> Any:
        options: dict[str, Any] = {}
        if kind == "rocksdb":
            # a small write cache: the suite's workloads overflow it, so reads and writes hit RocksDB
            options = {"local_dir": str(tmp_path / f"db-{len(made)}"), "cache_entries": 16}
        backend = create_backend(kind, key_groups, MAXP, clock=clock or ManualClock(), name=f"sub-{len(made)}",
                                 options=options)
        made.append(backend)
        return backend

    yield factory

    async def close_all() -> None:
        for b in made:
            await b.close()

    asyncio.run(close_all())


@pytest.fixture
def storage(tmp_path: Path) -> Any:
    return open_storage((tmp_path / "checkpoints").as_uri()).scoped("job-1")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Avg:
    """An aggregate function with a list accumulator (sum, count), as the avg aggregate keeps."""

    def create_accumulator(self) -> list[float]:
        return [0, 0]

    def add(self, value: float, acc: list[float]) -> list[float]:
        acc[0] += value
        acc[1] += 1
        return acc

    def get_result(self, acc: list[float]) -> float:
        return acc[0] / acc[1]


def descriptors(ttl: float | None = None) -> dict[str, StateDescriptor]:
    return {
        "v": StateDescriptor("v", StateKind.VALUE, ttl),
        "l": StateDescriptor("l", StateKind.LIST, ttl),
        "m": StateDescriptor("m", StateKind.MAP, ttl),
        "r": StateDescriptor("r", StateKind.REDUCING, ttl, reduce=lambda a, b: a + b),
        "a": StateDescriptor("a", StateKind.AGGREGATING, ttl, aggregate=Avg()),
    }


# -- the state kinds, per key and namespace ---------------------------------------------------------


def test_value_state_per_key_and_namespace(make: Callable[..., Any]) -> None:
    b = make()
    v = b.value_state("v")
    get, put = v.get, v.put  # bound once, as the aggregate operator's generated code does
    put("a", 1)
    put(("x", 2), {"n": 1})
    v.put_ns("a", (0, 10), 100)
    v.put_ns("b", (0, 10), 200)
    v.put_ns("a", (10, 20), 300)
    assert get("a") == 1 and get(("x", 2)) == {"n": 1} and get("zzz") is None
    assert v.get_ns("a", VOID) == 1, "the default namespace is VOID"
    assert v.get_ns("a", (0, 10)) == 100 and v.get_ns("a", (10, 20)) == 300 and v.get_ns("b", (10, 20)) is None
    assert sorted(v.items((0, 10))) == [("a", 100), ("b", 200)]
    assert sorted(v.items(), key=repr) == sorted([("a", 1), (("x", 2), {"n": 1})], key=repr)
    assert sorted(v.namespaces(), key=repr) == sorted([VOID, (0, 10), (10, 20)], key=repr)
    v.clear_namespace((0, 10))
    assert list(v.items((0, 10))) == [] and v.get_ns("b", (0, 10)) is None
    assert v.get_ns("a", (10, 20)) == 300 and get("a") == 1
    v.delete_ns("a", (10, 20))
    assert sorted(v.namespaces(), key=repr) == [VOID]
    v.delete("a")
    assert get("a") is None and get(("x", 2)) == {"n": 1}
    put("c", 5)
    v.clear_namespace(VOID)
    assert get("c") is None and list(v.items()) == []
    put("d", 6)  # still bound to the live default namespace after a clear
    assert v.get_ns("d", VOID) == 6
    assert run(v.collect()) == [("d", 6)]


def test_list_map_reducing_aggregating_states(make: Callable[..., Any]) -> None:
    b = make()
    d = descriptors()
    lst, mp, red, agg = (b.state(d[n]) for n in "lmra")
    lst.add("k", 1)
    lst.add_all("k", [2, 3])
    lst.add("k", 9, (0, 5))
    assert lst.get("k") == [1, 2, 3] and lst.get("k", (0, 5)) == [9] and lst.get("none") == []
    lst.update("k", [7])
    assert lst.get("k") == [7]
    lst.update("k", [])
    assert lst.get("k") == [] and sorted(lst.namespaces(), key=repr) == [(0, 5)]
    lst.clear("k", (0, 5))
    assert list(lst.namespaces()) == []

    mp.put("k", "x", 1)
    mp.put("k", ("t", 1), 2)
    mp.put_all("k", {"y": 3}, "ns")
    assert mp.get("k", "x") == 1 and mp.get("k", ("t", 1)) == 2 and mp.get("k", "y") is None
    assert mp.entries("k") == {"x": 1, ("t", 1): 2} and mp.entries("k", "ns") == {"y": 3}
    assert mp.contains("k", "x") and not mp.contains("k", "y") and mp.contains("k", "y", "ns")
    mp.remove("k", "x")
    assert mp.entries("k") == {("t", 1): 2}
    assert dict(mp.items("ns")) == {"k": {"y": 3}}
    mp.clear("k")
    assert mp.entries("k") == {} and mp.get("k", ("t", 1)) is None

    for x in (1, 2, 3):
        red.add("k", x)
    red.add("k", 10, (1, 2))
    assert red.get("k") == 6 and red.get("k", (1, 2)) == 10 and red.get("other") is None
    red.clear("k")
    assert red.get("k") is None

    for x in (1, 2, 6):
        agg.add("k", x)
    assert agg.get("k") == 3 and agg.get("other") is None
    assert dict(agg.items()) == {"k": 3}
    agg.clear("k")
    assert agg.get("k") is None


def test_descriptors_and_factory_errors(make: Callable[..., Any], kind: str) -> None:
    b = make()
    v = b.value_state("s")
    assert b.value_state("s") is v, "the same name gives the same state"
    with pytest.raises(StateDescriptorError, match="'s' is a value state, not list"):
        b.state(StateDescriptor("s", StateKind.LIST))
    with pytest.raises(ValueError, match="no reduce function"):
        StateDescriptor("r", StateKind.REDUCING)
    with pytest.raises(ValueError, match="ttl"):
        StateDescriptor("t", ttl=0)
    with pytest.raises(StateBackendConfigError, match=r"unknown state backend 'memory'; use one of 'heap', 'rocksdb'"):
        create_backend("memory", ALL, MAXP)


# -- TTL ----------------------------------------------------------------------------------------------


def test_ttl_expires_after_last_write_and_is_never_returned(make: Callable[..., Any]) -> None:
    clock = ManualClock()
    b = make(clock=clock)
    d = descriptors(ttl=10)
    v = b.state(d["v"])
    lst, mp, red = b.state(d["l"]), b.state(d["m"]), b.state(d["r"])
    v.put("a", 1)
    v.put("b", 2)
    v.put_ns("a", "w", 3)
    lst.add("a", 1)
    mp.put("a", "u", 1)
    red.add("a", 5)
    run(clock.advance(9.999))
    assert v.get("a") == 1 and v.get_ns("a", "w") == 3 and lst.get("a") == [1]
    v.put("b", 20)  # a write restarts b's ttl
    lst.add("a", 2)
    assert v.get("a") == 1, "reads do not extend the ttl (OnCreateAndWrite)"
    run(clock.advance(0.001))  # 10 s after the first writes
    assert v.get("a") is None and v.get_ns("a", "w") is None
    assert v.get("b") == 20 and lst.get("a") == [1, 2]
    assert mp.get("a", "u") is None and mp.entries("a") == {} and red.get("a") is None
    assert list(v.items("w")) == [] and list(v.items()) == [("b", 20)]
    assert "w" not in list(v.namespaces())
    red.add("a", 7)
    assert red.get("a") == 7, "an expired value is not reduced into a new one"
    run(clock.advance(10))
    assert v.get("b") is None and lst.get("a") == [] and list(v.items()) == []


def test_ttl_entries_expired_at_snapshot_time_are_not_restored(make: Callable[..., Any], storage: Any) -> None:
    clock = ManualClock()
    b = make(clock=clock)
    v = b.value_state("v", ttl=5)
    v.put("old", 1)
    run(clock.advance(3))
    v.put("new", 2)
    run(clock.advance(2.5))  # old expired, new has 2.5 s left
    handle = run(_checkpoint(b, 1, storage))
    restored = make(clock=clock)
    run(restored.restore([handle], storage))
    rv = restored.value_state("v", ttl=5)
    assert rv.get("old") is None and rv.get("new") == 2
    run(clock.advance(2.5))
    assert rv.get("new") is None, "the restored entry keeps its expiry time"


# -- timers ---------------------------------------------------------------------------------------------


def test_timer_queue_order_dedup_delete(make: Callable[..., Any]) -> None:
    q = make().timer_queue("event-time")
    assert q.peek() is None and q.pop_until(10**12) == []
    assert q.add("a", (0, 10), 10)
    assert not q.add("a", (0, 10), 10), "deduplicated per (key, namespace, timestamp)"
    assert q.add("a", (10, 20), 10) and q.add("b", (0, 10), 10)
    assert q.add("c", VOID, 5) and q.add(("k", 1), VOID, 30) and q.add("a", (0, 10), 25)
    assert len(q) == 6 and q.peek() == (5, "c", VOID)
    assert q.delete("c", VOID, 5) and not q.delete("c", VOID, 5)
    assert q.peek()[0] == 10 and not q.contains("c", VOID, 5) and q.contains("a", (0, 10), 25)
    popped = q.pop_until(25)
    assert [t[0] for t in popped] == [10, 10, 10, 25]
    assert sorted(popped, key=repr) == sorted([(10, "a", (0, 10)), (10, "a", (10, 20)), (10, "b", (0, 10)),
                                               (25, "a", (0, 10))], key=repr)
    assert q.peek() == (30, ("k", 1), VOID) and len(q) == 1
    assert q.add("a", (0, 10), 10), "a fired timer can be registered again"
    q.delete(("k", 1), VOID, 30)
    assert q.add(("k", 1), VOID, 30) and q.pop_until(29) == [(10, "a", (0, 10))]
    assert q.pop_until(30) == [(30, ("k", 1), VOID)] and len(q) == 0 and q.peek() is None


def test_timer_queue_random_against_a_model(make: Callable[..., Any]) -> None:
    q = make().timer_queue("t")
    model: set[tuple[int, Any, Any]] = set()
    rnd = random.Random(7)
    for step in range(3000):
        ts, key, ns = rnd.randrange(200), f"k{rnd.randrange(20)}", rnd.choice([VOID, (0, 1), (1, 2)])
        op = rnd.random()
        if op < 0.6:
            assert q.add(key, ns, ts) == ((ts, key, ns) not in model)
            model.add((ts, key, ns))
        elif op < 0.8:
            assert q.delete(key, ns, ts) == ((ts, key, ns) in model)
            model.discard((ts, key, ns))
        elif step % 7 == 0:
            limit = rnd.randrange(200)
            got = q.pop_until(limit)
            due = {t for t in model if t[0] <= limit}
            assert sorted(got, key=repr) == sorted(due, key=repr) and [t[0] for t in got] == sorted(t[0] for t in got)
            model -= due
        assert len(q) == len(model)
        earliest = min((t[0] for t in model), default=None)
        assert (q.peek() or (None,))[0] == earliest


# -- snapshots ------------------------------------------------------------------------------------------


async def _checkpoint(backend: Any, checkpoint_id: int, storage: Any) -> dict[str, Any]:
    snap = await backend.snapshot(checkpoint_id)
    return await snap.persist(storage)


def _fill(backend: Any, rnd: random.Random, keys: list[Any], model: dict[str, dict[Any, Any]], ops: int) -> None:
    """Random writes to every kind; ``model`` mirrors them: name -> {(key, ns): expected get}."""
    d = descriptors()
    v, lst, mp, red, agg = (backend.state(d[n]) for n in "vlmra")
    for _ in range(ops):
        key = rnd.choice(keys)
        ns = rnd.choice([VOID, VOID, (0, 100), (100, 200), "w"])
        which, x = rnd.randrange(6), rnd.randrange(100)
        if which == 0:
            if ns is VOID:
                v.put(key, [x, x])
            else:
                v.put_ns(key, ns, [x, x])
            model["v"][key, ns] = [x, x]
        elif which == 1:
            lst.add(key, x, ns)
            model["l"].setdefault((key, ns), []).append(x)
        elif which == 2:
            uk = rnd.choice(["u", ("u", 1), 3])
            mp.put(key, uk, x, ns)
            model["m"].setdefault((key, ns), {})[uk] = x
        elif which == 3:
            red.add(key, x, ns)
            model["r"][key, ns] = model["r"].get((key, ns), 0) + x
        elif which == 4:
            agg.add(key, x, ns)
            s, n = model["a"].get((key, ns), (0, 0))
            model["a"][key, ns] = (s + x, n + 1)
        else:
            if ns is VOID:
                v.delete(key)
            else:
                v.delete_ns(key, ns)
            model["v"].pop((key, ns), None)


def _read_all(backend: Any) -> dict[str, dict[Any, Any]]:
    """Everything a backend holds, read through the handles' namespace iteration."""
    d = descriptors()
    out: dict[str, dict[Any, Any]] = {}
    for name in "vlmra":
        state = backend.state(d[name])
        out[name] = {(k, ns): val for ns in state.namespaces() for k, val in state.items(ns)}
    return out


def _expected(model: dict[str, dict[Any, Any]]) -> dict[str, dict[Any, Any]]:
    out = {n: dict(model[n]) for n in "vlmr"}
    out["a"] = {k: s / n for k, (s, n) in model["a"].items()}
    return out


KEYS = [f"user-{i}" for i in range(150)] + [("tuple", i) for i in range(50)] + list(range(50))


def test_snapshot_then_mutate_then_restore_gives_the_snapshot(make: Callable[..., Any], storage: Any) -> None:
    b = make()
    rnd = random.Random(1)
    model: dict[str, dict[Any, Any]] = {n: {} for n in "vlmra"}
    for _ in range(4):
        _fill(b, rnd, KEYS, model, 1000)
        run(b.maintain())  # as the task does between batches
    assert _read_all(b) == _expected(model), "reads merge the write cache with what was flushed"
    run(b.maintain())
    q = b.timer_queue("t")
    timers = {(rnd.randrange(1000), k, rnd.choice([VOID, (0, 100)])) for k in KEYS[::3]}
    for ts, k, ns in timers:
        q.add(k, ns, ts)
    expected = copy.deepcopy(_expected(model))

    async def scenario() -> dict[str, Any]:
        snap = await b.snapshot(1)
        # after the synchronous part: mutate in place (as operators do with list accumulators),
        # write, delete, add timers; none of it may reach the snapshot
        v = b.value_state("v")
        for (key, ns), val in list(model["v"].items()):
            got = v.get(key) if ns is VOID else v.get_ns(key, ns)
            got[0] = -1
            if ns is VOID:
                v.put(key, got)
        _fill(b, rnd, KEYS, {n: {} for n in "vlmra"}, 1000)
        await b.maintain()
        _fill(b, rnd, KEYS, {n: {} for n in "vlmra"}, 1000)
        b.state(descriptors()["l"]).clear(KEYS[0])
        q.add("late", VOID, 1)
        return await snap.persist(storage)

    handle = run(scenario())
    restored = make()
    run(restored.restore([handle], storage))
    got = _read_all(restored)
    for n in "vlmra":
        assert got[n] == expected[n], n
    rq = restored.timer_queue("t")
    assert len(rq) == len(timers) and sorted(rq.pop_until(10**9), key=repr) == sorted(timers, key=repr)
    # keys and namespaces are hashable again: direct lookups by the original values hit
    v = restored.value_state("v")
    for (key, ns), val in model["v"].items():
        assert (v.get(key) if ns is VOID else v.get_ns(key, ns)) == val


def test_restore_at_another_parallelism(make: Callable[..., Any], storage: Any) -> None:
    """Parallelism 2 -> 3: every key lands on the subtask owning its key group; nothing is lost."""
    rnd = random.Random(2)
    old_models = []
    handles = []
    expected_timers = set()
    for i in range(2):
        kg = KeyGroupRange.for_subtask(i, 2, MAXP)
        keys = [k for k in KEYS if subtask_for_key(k, 2, MAXP) == i]
        b = make(kg)
        model: dict[str, dict[Any, Any]] = {n: {} for n in "vlmra"}
        _fill(b, rnd, keys, model, 3000)
        for k in keys[::2]:
            b.timer_queue("t").add(k, (0, 100), 42)
            expected_timers.add((42, k, (0, 100)))
        old_models.append(model)
        handles.append(run(_checkpoint(b, 5, storage)))
    for h in handles:
        assert orjson.loads(orjson.dumps(h)) == h, "a handle is JSON"
        assert set(HANDLE_FIELDS) <= set(h) and isinstance(h["shared"], list)
    union: dict[str, dict[Any, Any]] = {n: {} for n in "vlmra"}
    for m in old_models:
        for n in "vlmra":
            union[n].update(m[n])
    expected = _expected(union)

    got_union: dict[str, dict[Any, Any]] = {n: {} for n in "vlmra"}
    timer_union = []
    for i in range(3):
        kg = KeyGroupRange.for_subtask(i, 3, MAXP)
        b = make(kg)
        run(b.restore(handles, storage))
        got = _read_all(b)
        for n in "vlmra":
            for (key, ns) in got[n]:
                assert key_group_for(key, MAXP) in kg, f"key {key!r} restored on subtask {i} of 3"
            got_union[n].update(got[n])
        timers = b.timer_queue("t").pop_until(100)
        assert all(subtask_for_key(k, 3, MAXP) == i for _, k, _ in timers)
        timer_union.extend(timers)
    for n in "vlmra":
        assert got_union[n] == expected[n], n
    assert sorted(timer_union, key=repr) == sorted(expected_timers, key=repr)


def test_restored_state_survives_another_checkpoint_before_it_is_registered(make: Callable[..., Any], storage: Any) -> None:
    b = make()
    b.value_state("v").put(("a", 1), 1)
    b.state(descriptors()["r"]).add("k", 5, (0, 1))
    h1 = run(_checkpoint(b, 1, storage))
    mid = make()
    run(mid.restore([h1], storage))
    h2 = run(_checkpoint(mid, 2, storage))  # nothing registered on mid
    last = make()
    run(last.restore([h2], storage))
    assert last.value_state("v").get(("a", 1)) == 1
    assert last.state(descriptors()["r"]).get("k", (0, 1)) == 5


def test_restore_refuses_a_snapshot_of_another_max_parallelism(make: Callable[..., Any], kind: str, storage: Any) -> None:
    b = make()
    b.value_state("v").put("a", 1)
    handle = run(_checkpoint(b, 1, storage))
    other = create_backend(kind, KeyGroupRange(0, 63), 64, **({"options": {"local_dir": str(Path(storage.root) / "x")}}
                                                                 if kind == "rocksdb" else {}))
    try:
        with pytest.raises(StateRestoreError, match="max_parallelism 128"):
            run(other.restore([handle], storage))
        with pytest.raises(StateRestoreError, match="backend"):
            run(other.restore([dict(handle, backend="unknown")], storage))
    finally:
        run(other.close())


def test_empty_backend_snapshot_restores_empty(make: Callable[..., Any], storage: Any) -> None:
    handle = run(_checkpoint(make(), 1, storage))
    assert orjson.loads(orjson.dumps(handle)) == handle
    restored = make()
    run(restored.restore([handle], storage))
    assert list(restored.value_state("v").items()) == []
