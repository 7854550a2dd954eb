"""The ``nexmark`` source: the Nexmark event mix, ids, times, splits, pacing and validation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest

from streamlet.clock import ManualClock
from streamlet.testing.sources import TestingSourceContext, read_batches
from streamlet.connectors.generator import DEFAULT_BASE_TIME
from streamlet.connectors.nexmark import (
    BLOCK, NexmarkGenerator, NexmarkSource, count_kind, last_base0_auction_id, last_base0_person_id,
)
from streamlet.errors import PipelineDefinitionError

PERSON_KEYS = ["id", "name", "emailAddress", "creditCard", "city", "state", "dateTime", "extra"]
AUCTION_KEYS = ["id", "itemName", "description", "initialBid", "reserve", "dateTime", "expires", "seller",
                "category", "extra"]
BID_KEYS = ["auction", "bidder", "price", "channel", "url", "dateTime", "extra"]


_Ctx = TestingSourceContext


def _params(**kw: Any) -> dict[str, Any]:
    return NexmarkSource.validate({"type": "nexmark", **kw}, "sources.nx", ".")


async def _reader(params: dict[str, Any], splits: list[dict[str, Any]], ctx: Any) -> Any:
    reader = NexmarkSource.create_reader(params, ctx)
    await reader.open()
    reader.add_splits(splits)
    return reader


async def _drain(reader: Any) -> list[list[Any]]:
    batches = await read_batches(reader)
    await reader.close()
    return batches


async def _consume(reader: Any, into: list[Any]) -> None:
    """The source task's loop: poll, and wait when there is nothing."""
    while (batch := reader.poll()) is not None:
        if batch:
            into.append(batch)
        else:
            await reader.wait_available()


def _run_all(params: dict[str, Any], parallelism: int, batch_size: int = 1024) -> list[list[Any]]:
    """Every subtask's records, splits assigned as the runtime does (split i -> subtask i % p)."""
    splits = NexmarkSource.enumerate_splits(params, parallelism)
    per: list[list[dict[str, Any]]] = [[] for _ in range(parallelism)]
    for i, s in enumerate(splits):
        per[i % parallelism].append(s)

    async def go() -> list[list[Any]]:
        out = []
        for i in range(parallelism):
            reader = await _reader(params, per[i], _Ctx(i, parallelism, batch_size))
            out.append([r for b in await _drain(reader) for r in b])
        return out
    return asyncio.run(go())


def _canonical(records: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def test_same_seed_same_events_and_other_seed_other_events() -> None:
    a = NexmarkGenerator(seed=7).generate(0, 5000)
    b = NexmarkGenerator(seed=7).generate(0, 5000)
    c = NexmarkGenerator(seed=8).generate(0, 5000)
    assert a == b
    assert a != c
    # ids and times come from event numbers, so only the random parts differ between seeds
    assert [r["event_type"] for r in a] == [r["event_type"] for r in c]
    prices_a = [r["bid"]["price"] for r in a if r["bid"]]
    prices_c = [r["bid"]["price"] for r in c if r["bid"]]
    assert sum(x != y for x, y in zip(prices_a, prices_c)) > 4000


def test_event_mix_is_1_3_46_in_nexmark_order() -> None:
    events = NexmarkGenerator().generate(0, 5000)
    types = [r["event_type"] for r in events]
    assert Counter(types) == {0: 100, 1: 300, 2: 4600}
    assert types == ([0] + [1] * 3 + [2] * 46) * 100
    for r in events:
        kinds = [k for k in ("person", "auction", "bid") if r[k] is not None]
        assert kinds == [("person", "auction", "bid")[r["event_type"]]]
    assert list(events[0]["person"]) == PERSON_KEYS
    assert list(events[1]["auction"]) == AUCTION_KEYS
    assert list(events[4]["bid"]) == BID_KEYS


def test_ids_follow_event_numbers() -> None:
    events = NexmarkGenerator().generate(0, 50_000)
    persons = [r["person"] for r in events if r["person"]]
    auctions = [r["auction"] for r in events if r["auction"]]
    assert [p["id"] for p in persons] == list(range(1000, 2000))
    assert [a["id"] for a in auctions] == list(range(1000, 4000))
    hot_auction = hot_bidder = bids = 0
    for e, r in enumerate(events):
        k = e // 50
        if r["bid"]:
            bid = r["bid"]
            bids += 1
            newest_auction, newest_person = 3 * k + 2 + 1000, k + 1000
            # an id in flight (the last 100 auctions / 1000 people) or up to 10 ahead (Nexmark's lead)
            assert max(1000, newest_auction - 100) <= bid["auction"] <= newest_auction + 10
            assert max(1000, newest_person - 999) <= bid["bidder"] <= newest_person + 10
            hot_auction += bid["auction"] == (3 * k + 2) // 100 * 100 + 1000
            hot_bidder += bid["bidder"] == k // 100 * 100 + 1001
            assert 100 <= bid["price"] <= 100_000_000
        elif r["auction"]:
            a = r["auction"]
            assert max(1000, k + 1000 - 999) <= a["seller"] <= k + 1000 + 10
            assert 10 <= a["category"] <= 14
            assert a["reserve"] >= a["initialBid"] >= 100
            assert a["expires"] > a["dateTime"]
    # P(hot auction) = 1/2 and P(hot bidder) = 3/4 (plus the odd cold draw that lands on it)
    assert 0.47 < hot_auction / bids < 0.53
    assert 0.72 < hot_bidder / bids < 0.78


def test_last_ids_match_nexmark_definitions() -> None:
    assert [last_base0_person_id(e) for e in (0, 1, 49, 50, 51)] == [0, 0, 0, 1, 1]
    # a person event points back at the previous epoch's last auction
    assert [last_base0_auction_id(e) for e in (1, 2, 3, 4, 49, 50, 51)] == [0, 1, 2, 2, 2, 2, 3]


def test_date_time_is_base_plus_event_number_over_rate() -> None:
    events = NexmarkGenerator(base_time=5_000, event_rate=1000).generate(0, 500)
    for e, r in enumerate(events):
        body = r["person"] or r["auction"] or r["bid"]
        assert body["dateTime"] == 5_000 + e
    default = NexmarkGenerator().generate(0, 200)
    assert [(r["person"] or r["auction"] or r["bid"])["dateTime"] for r in default] == \
        [DEFAULT_BASE_TIME + e // 10 for e in range(200)]


@pytest.mark.parametrize("kind,event_type", [("person", 0), ("auction", 1), ("bid", 2)])
def test_kind_filter_yields_exactly_that_kind_of_the_mixed_stream(kind: str, event_type: int) -> None:
    mixed = NexmarkGenerator(seed=3).generate(0, 3 * BLOCK + 123)
    only = NexmarkGenerator(seed=3, kind=kind).generate(0, 3 * BLOCK + 123)
    assert only == [r[kind] for r in mixed if r["event_type"] == event_type]


def test_events_counts_every_kind() -> None:
    assert count_kind("bid", 0, 10_000_000) == 9_200_000
    assert count_kind("person", 0, 10_000_000) == 200_000
    bids = _run_all(_params(events=10_000, kind="bid"), 1)[0]
    assert len(bids) == 9_200
    assert all(list(b) == BID_KEYS for b in bids)
    mixed = _run_all(_params(events=777), 1)[0]
    assert len(mixed) == 777


@pytest.mark.parametrize("kind", [None, "bid", "auction"])
def test_parallelism_does_not_change_the_events(kind: str | None) -> None:
    params = _params(events=5 * BLOCK + 321, seed=11, **({"kind": kind} if kind else {}))
    one = _run_all(params, 1)
    two = _run_all(params, 2)
    three = _run_all(params, 3, batch_size=100)
    assert _canonical(one[0]) == _canonical(two[0] + two[1]) == _canonical([r for p in three for r in p])
    # and equal to the reference stream, in event order on one subtask
    assert one[0] == NexmarkGenerator(seed=11, kind=kind).generate(0, 5 * BLOCK + 321)
    # every subtask gets work: blocks are dealt round-robin
    assert all(len(p) > 0 for p in three)


def test_batches_are_batch_size_and_progress_reaches_one() -> None:
    params = _params(events=3000, kind="bid")

    async def go() -> tuple[list[int], list[float | None]]:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 1), _Ctx(batch_size=500))
        sizes, progress = [], []
        while (batch := reader.poll()) is not None:
            sizes.append(len(batch))
            progress.append(reader.progress())
            assert reader.current_split == "slice-0-of-1"
        return sizes, progress
    sizes, progress = asyncio.run(go())
    assert sizes == [500] * 5 + [260]
    assert progress[-1] == 1.0
    assert progress == sorted(progress)


def test_endless_without_events() -> None:
    params = _params(kind="bid")
    assert not NexmarkSource.is_bounded(params)
    assert NexmarkSource.is_bounded(_params(events=10))

    async def go() -> tuple[list[Any], Any]:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 2)[1:], _Ctx(1, 2))
        return [reader.poll() for _ in range(30)], reader
    batches, reader = asyncio.run(go())
    assert all(len(b) == 1024 for b in batches)
    assert reader.progress() is None
    # subtask 1 of 2 makes blocks 1, 3, 5, ...: its first bid is event 1004
    assert batches[0][0]["dateTime"] == DEFAULT_BASE_TIME + 1004 // 10


def test_rate_paces_events_on_the_clock() -> None:
    clock = ManualClock()
    # 64 events/s: one event per chunk, due every 1/64 s (exact in binary, as ManualClock adds floats)
    params = _params(events=5000, rate=64)
    got: list[list[Any]] = []

    async def go() -> list[int]:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 1), _Ctx(clock=clock))
        seen = []
        task = asyncio.create_task(_consume(reader, got))
        await asyncio.sleep(0)
        seen.append(sum(map(len, got)))
        for _ in range(100):
            await clock.advance(1 / 64)
            seen.append(sum(map(len, got)))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen
    seen = asyncio.run(go())
    # event j is due at j / 64 s
    assert seen == list(range(1, 102))
    assert max(map(len, got)) == 1
    # dateTime follows the event rate: event e at e / 64 s
    assert [(r["person"] or r["auction"] or r["bid"])["dateTime"] for b in got for r in b] == \
        [DEFAULT_BASE_TIME + e * 1000 // 64 for e in range(101)]


def test_rate_counts_events_of_every_kind_and_divides_over_subtasks() -> None:
    clock = ManualClock()
    params = _params(rate=128, kind="bid")  # 64 events/s per subtask of 2, one per chunk
    got: list[Any] = []

    async def go() -> None:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 2)[:1], _Ctx(0, 2, clock=clock))
        task = asyncio.create_task(_consume(reader, got))
        await asyncio.sleep(0)
        for _ in range(99):
            await clock.advance(1 / 64)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())
    bids = [r for b in got for r in b]
    assert len(bids) == count_kind("bid", 0, 100)  # 100 events paced out, 46 in 50 are bids
    assert bids[-1]["dateTime"] == DEFAULT_BASE_TIME + 99 * 1000 // 128


def test_pools_give_nexmark_shaped_strings() -> None:
    events = NexmarkGenerator().generate(0, 5000)
    for r in events:
        if r["person"]:
            p = r["person"]
            assert p["emailAddress"].endswith(".com") and "@" in p["emailAddress"]
            assert len(p["creditCard"]) == 19 and p["creditCard"].replace(" ", "").isdigit()
            assert p["state"] in ("AZ", "CA", "ID", "OR", "WA", "WY")
        if r["bid"]:
            b = r["bid"]
            assert b["url"].startswith("https://www.nexmark.com/")
            assert b["channel"] in ("Google", "Facebook", "Baidu", "Apple") or b["channel"].startswith("channel-")
            assert 54 <= len(b["extra"]) < 82  # nextExtra for Nexmark's 100-byte bids


def test_validation_errors_name_the_key_and_the_fix() -> None:
    with pytest.raises(PipelineDefinitionError) as e:
        _params(evnets=10)
    assert e.value.where == "sources.nx.evnets"
    assert "did you mean 'events'" in str(e.value)
    with pytest.raises(PipelineDefinitionError) as e:
        _params(events="many")
    assert e.value.where == "sources.nx.events" and "expected int" in str(e.value)
    with pytest.raises(PipelineDefinitionError) as e:
        _params(kind="bids")
    assert e.value.where == "sources.nx.kind" and "'bid'" in str(e.value)
    with pytest.raises(PipelineDefinitionError) as e:
        _params(rate=0)
    assert e.value.where == "sources.nx.rate"
    with pytest.raises(PipelineDefinitionError) as e:
        _params(base_time="yesterday")
    assert e.value.where == "sources.nx.base_time" and "'now'" in str(e.value)


def test_validate_fills_defaults() -> None:
    p = _params()
    assert (p["events"], p["rate"], p["kind"], p["seed"], p["base_time"], p["first_event_rate"]) == \
        (None, None, None, 0, DEFAULT_BASE_TIME, 10_000)
    assert _params(rate=500)["first_event_rate"] == 500
    assert _params(base_time="now")["base_time"] > DEFAULT_BASE_TIME


def test_a_reader_with_several_slices_makes_each_event_once() -> None:
    params = _params(events=7 * BLOCK + 5, kind="auction")
    splits = NexmarkSource.enumerate_splits(params, 4)

    async def go() -> list[Any]:
        out = []
        for mine in (splits[0::2], splits[1::2]):
            reader = await _reader(params, mine, _Ctx(batch_size=50))
            while (batch := reader.poll()) is not None:
                # one slice per batch: the auctions of one block (60 per block) never mix slices
                block = (batch[0]["id"] - 1000) // 60
                assert all((a["id"] - 1000) // 60 == block for a in batch)
                assert reader.current_split == splits[block % 4]["id"]
                out += batch
        return out
    got = asyncio.run(go())
    assert sorted(a["id"] for a in got) == list(range(1000, 1000 + count_kind("auction", 0, 7 * BLOCK + 5)))


async def _read_and_restore(params: dict[str, Any], parallelism: int, new_parallelism: int, cuts: list[int],
                            batch_size: int) -> tuple[list[Any], list[Any]]:
    """Subtask ``i`` reads ``cuts[i]`` records and snapshots; the states (JSON round trip) are
    dealt to ``new_parallelism`` new readers, which read the rest."""
    splits = NexmarkSource.enumerate_splits(params, parallelism)
    first: list[Any] = []
    states: list[dict[str, Any]] = []
    for i, s in enumerate(splits):
        reader = await _reader(params, [s], _Ctx(i, parallelism, batch_size))
        first += [r for b in await read_batches(reader, max_records=cuts[i]) for r in b]
        states += orjson.loads(orjson.dumps(reader.snapshot_state(1)))
        await reader.close()
    rest: list[Any] = []
    for i in range(new_parallelism):
        reader = await _reader(params, states[i::new_parallelism], _Ctx(i, new_parallelism, batch_size))
        rest += [r for b in await _drain(reader) for r in b]
        assert reader.progress() == 1.0
    return first, rest


@pytest.mark.parametrize("kind", [None, "bid", "person"])
@pytest.mark.parametrize("cut", [0, 1, 300, 919, 920, 1500, 10**6])
def test_restore_from_a_snapshot_makes_exactly_the_rest(kind: str | None, cut: int) -> None:
    events = 4 * BLOCK + 77
    params = _params(events=events, seed=2, **({"kind": kind} if kind else {}))
    expected = _canonical(NexmarkGenerator(seed=2, kind=kind).generate(0, events))
    # from one subtask to two, and from three (cut at different points) to two
    first, rest = asyncio.run(_read_and_restore(params, 1, 2, [cut], batch_size=100))
    assert _canonical(first + rest) == expected
    first, rest = asyncio.run(_read_and_restore(params, 3, 2, [cut, 50, 10**6], batch_size=100))
    assert _canonical(first + rest) == expected


def test_a_snapshot_names_the_block_and_position() -> None:
    params = _params(events=3 * BLOCK, kind="bid")

    async def go() -> list[dict[str, Any]]:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 1), _Ctx(batch_size=600))
        assert len(reader.poll()) == 600
        assert len(reader.poll()) == 600  # 320 from block 0, 280 from block 1
        return reader.snapshot_state(1)
    assert asyncio.run(go()) == [{"id": "slice-0-of-1", "index": 0, "count": 1, "block": 1, "pos": 280,
                                  "released": 0, "done": False}]


def test_a_paced_restore_goes_on_where_the_pacing_stopped() -> None:
    clock = ManualClock()
    params = _params(events=2 * BLOCK, rate=100, kind="auction")  # 1 event per chunk
    expected = NexmarkGenerator(kind="auction", event_rate=100).generate(0, 2 * BLOCK)

    async def go() -> tuple[list[Any], list[Any]]:
        reader = await _reader(params, NexmarkSource.enumerate_splits(params, 1), _Ctx(clock=clock))
        first: list[Any] = []
        task = asyncio.create_task(_consume(reader, first))
        for _ in range(75):  # 0.75 s: events 0..75 paced out
            await clock.advance(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state = orjson.loads(orjson.dumps(reader.snapshot_state(1)))
        again = await _reader(params, state, _Ctx(clock=clock))
        rest: list[Any] = []
        task = asyncio.create_task(_consume(again, rest))
        for _ in range(100):  # one more second: events 76..175
            await clock.advance(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [r for b in first for r in b], [r for b in rest for r in b]
    first, rest = asyncio.run(go())
    assert first == expected[:count_kind("auction", 0, 76)]
    assert first + rest == expected[:count_kind("auction", 0, 176)]


def _date_time(r: dict[str, Any]) -> int:
    """A flat record's dateTime, or a mixed-stream event's (its person's, auction's or bid's)."""
    return r["dateTime"] if "dateTime" in r else (r["person"] or r["auction"] or r["bid"])["dateTime"]


@pytest.mark.parametrize("kind", [None, "person", "auction", "bid"])
@pytest.mark.parametrize("rate", [10_000_000, 2_500_000, 123_457, 10_000, 300, 0.5])
def test_block_timestamps_are_the_records_date_times(kind: str | None, rate: float) -> None:
    for base in (0, 1_700_000_000_123):
        gen = NexmarkGenerator(seed=3, base_time=base, event_rate=rate, kind=kind)
        for b, stop in [(0, None), (1, None), (9, None), (4321, None), (3, 3001), (3, 3049), (3, 3777), (3, 3000)]:
            assert gen.block_timestamps(b, stop) == [_date_time(r) for r in gen.block(b, stop)], (b, stop, base)


async def _stamped_batches(params: dict[str, Any], splits: list[dict[str, Any]], ctx: Any,
                           max_records: int | None = None) -> tuple[Any, list[tuple[list[Any], list[int]]]]:
    """Drive a reader with native timestamps: (reader, [(batch, its timestamps)])."""
    reader = NexmarkSource.create_reader(params, ctx)
    stamps = reader.timestamp_stage({"field": "dateTime"})
    await reader.open()
    reader.add_splits(splits)
    out, seen = [], 0
    while max_records is None or seen < max_records:
        batch = reader.poll()
        if batch is None:
            break
        out.append((batch, list(stamps(batch))))
        seen += len(batch)
    return reader, out


@pytest.mark.parametrize("kind", [None, "bid", "person"])
@pytest.mark.parametrize("batch_size", [100, 1000, 2500])
def test_native_timestamps_are_each_batchs_date_times(kind: str | None, batch_size: int) -> None:
    events = 5 * BLOCK + 321
    params = _params(events=events, seed=5, first_event_rate=2_500_000, **({"kind": kind} if kind else {}))

    async def go() -> list[tuple[list[Any], list[int]]]:
        got = []
        # one reader of every slice, and one of slices 0 and 2 of 3 (they take turns, block by block)
        for splits in (NexmarkSource.enumerate_splits(params, 1), NexmarkSource.enumerate_splits(params, 3)[::2]):
            got += (await _stamped_batches(params, splits, _Ctx(batch_size=batch_size)))[1]
        return got
    batches = asyncio.run(go())
    assert sum(len(b) for b, _ in batches) > count_kind(kind, 0, events)
    for batch, ts in batches:
        assert ts == [_date_time(r) for r in batch]


@pytest.mark.parametrize("cut", [1, 450, 1000, 2200])
def test_native_timestamps_after_a_restore(cut: int) -> None:
    events = 4 * BLOCK + 77
    params = _params(events=events, first_event_rate=10_000)

    async def go() -> list[tuple[list[Any], list[int]]]:
        reader, first = await _stamped_batches(params, NexmarkSource.enumerate_splits(params, 1), _Ctx(batch_size=150),
                                               max_records=cut)
        state = orjson.loads(orjson.dumps(reader.snapshot_state(1)))
        return first + (await _stamped_batches(params, state, _Ctx(batch_size=150)))[1]
    batches = asyncio.run(go())
    assert [r for b, _ in batches for r in b] == NexmarkGenerator(event_rate=10_000).generate(0, events)
    for batch, ts in batches:
        assert ts == [_date_time(r) for r in batch]


def test_native_timestamps_of_paced_batches() -> None:
    clock = ManualClock()
    params = _params(events=2 * BLOCK, rate=1000, kind="bid")  # 10 events per chunk of 10 ms
    got: list[tuple[list[Any], list[int]]] = []

    async def go() -> None:
        reader = NexmarkSource.create_reader(params, _Ctx(clock=clock))
        stamps = reader.timestamp_stage({"field": "dateTime"})
        await reader.open()
        reader.add_splits(NexmarkSource.enumerate_splits(params, 1))

        async def consume() -> None:
            while (batch := reader.poll()) is not None:
                if batch:
                    got.append((batch, list(stamps(batch))))
                else:
                    await reader.wait_available()
        task = asyncio.create_task(consume())
        for _ in range(150):
            await clock.advance(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    asyncio.run(go())
    assert sum(len(b) for b, _ in got) >= count_kind("bid", 0, 1000)
    for batch, ts in got:
        assert ts == [r["dateTime"] for r in batch]


def test_native_timestamps_only_for_date_time() -> None:
    reader = NexmarkSource.create_reader(_params(events=10), _Ctx())
    assert reader.timestamp_stage({"field": "price"}) is None
    assert reader.timestamp_stage({"expr": "r['bid']['dateTime']", "path": None}) is None
    assert reader.timestamp_stage({"field": "dateTime"}) is not None
