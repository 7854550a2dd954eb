"""Contract of a channel, whichever implementation carries it.

One suite, parametrized over ``local`` (an in-process bounded buffer) and ``websocket`` (two
NetworkEnvironments on 127.0.0.1, every channel of a test multiplexed on one connection).  The
producer side is an ``OutputChannel`` (``has_space`` / ``put``), the consumer side an
``InputChannel`` read directly or through an ``InputGate``.

Nothing here sleeps: arrivals are awaited through :class:`WatchedInputChannel`, and
``Harness.sync`` is a round trip through a probe channel after which everything sent before it
(data one way, credits the other) has arrived.  ``settle`` only lets ready callbacks run.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from streamlet.runtime.taskmanager.network.channels import (
    InputChannel, InputGate, LocalOutputChannel, OutputChannel,
)
from streamlet.runtime.taskmanager.network.elements import (
    END_OF_PARTITION, CheckpointBarrier, EndOfPartition, RecordBatch, Watermark,
)
from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment

JOB = "0123456789abcdef0123456789abcdef"
KINDS = ["local", "websocket"]
TIMEOUT = 20.0


class WatchedInputChannel(InputChannel):
    """An InputChannel whose arrivals a test can await."""

    __slots__ = ("_arrived",)

    def __init__(self, channel_id: str, capacity: int) -> None:
        super().__init__(channel_id, capacity)
        self._arrived: asyncio.Event | None = None

    def put_nowait(self, element: Any) -> None:
        super().put_nowait(element)
        if self._arrived is not None:
            self._arrived.set()

    async def wait_buffered(self, n: int) -> None:
        """Return once ``n`` elements are buffered."""
        while len(self) < n:
            self._arrived = asyncio.Event()
            await self._arrived.wait()


class Harness:
    """Makes both ends of channels; ``output`` may be called before ``input`` for the same id."""

    capacity: int

    def output(self, channel_id: str) -> OutputChannel:
        raise NotImplementedError

    def input(self, channel_id: str) -> WatchedInputChannel:
        raise NotImplementedError

    async def sync(self) -> None:
        """Everything sent before this call (both directions) has arrived."""


class LocalHarness(Harness):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._inputs: dict[str, WatchedInputChannel] = {}

    def _get(self, channel_id: str) -> WatchedInputChannel:
        if channel_id not in self._inputs:
            self._inputs[channel_id] = WatchedInputChannel(channel_id, self.capacity)
        return self._inputs[channel_id]

    def output(self, channel_id: str) -> OutputChannel:
        return LocalOutputChannel(self._get(channel_id))

    def input(self, channel_id: str) -> WatchedInputChannel:
        return self._get(channel_id)


class WebsocketHarness(Harness):
    def __init__(self, capacity: int, rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        self.capacity = capacity
        self.rx = rx
        self.tx = tx
        self._probe_out: OutputChannel | None = None
        self._probe_in: WatchedInputChannel | None = None

    def output(self, channel_id: str) -> OutputChannel:
        return self.tx.output_channel(JOB, channel_id, self.rx.address)

    def input(self, channel_id: str) -> WatchedInputChannel:
        ch = WatchedInputChannel(channel_id, self.capacity)
        self.rx.register_input_channel(JOB, ch)
        return ch

    async def sync(self) -> None:
        if self._probe_out is None:
            self._probe_out = self.output("probe")
            self._probe_in = WatchedInputChannel("probe", 1)  # one credit: the 2nd put needs the 1st's credit back
            self.rx.register_input_channel(JOB, self._probe_in)
        probe_in = self._probe_in
        assert probe_in is not None
        for _ in range(2):
            await self._probe_out.put(Watermark(0))
            await probe_in.wait_buffered(1)
            probe_in.take()


async def _harness(kind: str, capacity: int) -> AsyncIterator[Harness]:
    if kind == "local":
        yield LocalHarness(capacity)
        return
    rx, tx = NetworkEnvironment(capacity=capacity), NetworkEnvironment(capacity=capacity)
    try:
        await rx.start()
        await tx.start()
        yield WebsocketHarness(capacity, rx, tx)
    finally:
        await tx.stop()
        await rx.stop()


def run(kind: str, body: Callable[[Harness], Awaitable[None]], capacity: int = 4) -> None:
    async def main() -> None:
        gen = _harness(kind, capacity)
        h = await gen.__anext__()
        try:
            async with asyncio.timeout(TIMEOUT):
                await body(h)
        finally:
            await gen.aclose()
    asyncio.run(main())


async def settle() -> None:
    """Let every ready callback run (does not wait for time)."""
    for _ in range(20):
        await asyncio.sleep(0)


def as_tuple(element: Any) -> tuple[Any, ...]:
    if type(element) is RecordBatch:
        return ("b", element.records, element.timestamps)
    return (type(element).__name__, element)


async def drain(gate: InputGate, ends: int) -> dict[str, list[Any]]:
    """Read ``gate`` until ``ends`` EndOfPartitions; elements per channel id, in arrival order."""
    got: dict[str, list[Any]] = {}
    while ends:
        ch, element = await gate.next()
        got.setdefault(ch.channel_id, []).append(element)
        if type(element) is EndOfPartition:
            ends -= 1
    return got


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_order_preserved_with_every_element_type(kind: str) -> None:
    elements: list[Any] = []
    for k in range(300):
        ts = list(range(k * 10, k * 10 + 10)) if k % 2 else None
        elements.append(RecordBatch([{"seq": k * 10 + j, "s": "é\u2603", "f": 1.5, "n": None, "l": [k, j]}
                                     for j in range(10)], ts))
        if k % 10 == 0:
            elements.append(Watermark(k))
        if k % 50 == 0:
            elements.append(CheckpointBarrier(k // 50 + 1, 1_700_000_000_000 + k))
    elements.append(END_OF_PARTITION)

    async def body(h: Harness) -> None:
        out = h.output("0.0.0")
        gate = InputGate([h.input("0.0.0")])
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(drain(gate, 1))
            for e in elements:
                await out.put(e)
        got = reader.result()["0.0.0"]
        assert [as_tuple(e) for e in got] == [as_tuple(e) for e in elements]
    run(kind, body)


def test_end_of_partition_delivered_on_every_channel(kind: str) -> None:
    async def body(h: Harness) -> None:
        outs = [h.output(f"0.{i}.0") for i in range(3)]
        gate = InputGate([h.input(f"0.{i}.0") for i in range(3)])
        for out in outs:
            await out.put(END_OF_PARTITION)
        got = await drain(gate, 3)
        assert sorted(got) == ["0.0.0", "0.1.0", "0.2.0"]
        assert all(len(v) == 1 and type(v[0]) is EndOfPartition for v in got.values())
        assert gate.poll() is None
    run(kind, body)


def test_full_channel_makes_put_wait_until_the_consumer_takes(kind: str) -> None:
    async def body(h: Harness) -> None:
        out = h.output("0.0.0")
        inbox = h.input("0.0.0")
        for i in range(h.capacity):
            await out.put(RecordBatch([i]))
        await inbox.wait_buffered(h.capacity)
        await h.sync()
        assert not out.has_space()
        async with asyncio.TaskGroup() as tg:
            blocked = tg.create_task(out.put(RecordBatch([h.capacity])))
            await settle()
            assert not blocked.done(), "put must wait while the channel is full"
            assert inbox.take().records == [0]
            await blocked
        await inbox.wait_buffered(h.capacity)
        assert [inbox.take().records[0] for _ in range(h.capacity)] == list(range(1, h.capacity + 1))
    run(kind, body)


def test_slow_channel_does_not_block_another_on_the_same_connection(kind: str) -> None:
    async def body(h: Harness) -> None:
        slow_out, fast_out = h.output("0.0.0"), h.output("0.0.1")
        slow_in, fast_in = h.input("0.0.0"), h.input("0.0.1")
        for i in range(h.capacity):
            await slow_out.put(RecordBatch([i]))
        await slow_in.wait_buffered(h.capacity)
        fast_gate = InputGate([fast_in])
        n = 20 * h.capacity
        async with asyncio.TaskGroup() as tg:
            stuck = tg.create_task(slow_out.put(RecordBatch([h.capacity])))
            reader = tg.create_task(drain(fast_gate, 1))
            for i in range(n):
                await fast_out.put(RecordBatch([i]))
            await fast_out.put(END_OF_PARTITION)
            got = await reader
            assert [e.records[0] for e in got["0.0.1"][:-1]] == list(range(n))
            assert not stuck.done(), "the slow channel's consumer never took anything"
            assert len(slow_in) == h.capacity
            slow_in.take()
            await stuck
    run(kind, body)


def test_producer_started_before_the_consumer_registered_waits_then_delivers(kind: str) -> None:
    async def body(h: Harness) -> None:
        out = h.output("0.0.0")
        n = h.capacity + 2
        async with asyncio.TaskGroup() as tg:
            async def produce() -> None:
                for i in range(n):
                    await out.put(RecordBatch([i]))
                await out.put(END_OF_PARTITION)
            producer = tg.create_task(produce())
            await h.sync()  # websocket: the channel's open reached the receiver, which has no channel yet
            await settle()
            assert not producer.done()
            # read the channel itself: an InputGate built over a channel that already holds data
            # does not see that data (channels.py queues a channel only on put)
            inbox = h.input("0.0.0")
            got: list[Any] = []
            while not got or type(got[-1]) is not EndOfPartition:
                await inbox.wait_buffered(1)
                got.append(inbox.take())
        assert [e.records[0] for e in got[:-1]] == list(range(n))
    run(kind, body)


def test_many_producers_into_one_gate_keep_per_channel_order(kind: str) -> None:
    async def body(h: Harness) -> None:
        ids = [f"3.{i}.0" for i in range(4)]
        outs = [h.output(c) for c in ids]
        gate = InputGate([h.input(c) for c in ids])

        async def produce(i: int, out: OutputChannel) -> None:
            for k in range(60):
                await out.put(RecordBatch([[i, k]] * (1 + k % 7)))
            await out.put(END_OF_PARTITION)
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(drain(gate, len(ids)))
            for i, out in enumerate(outs):
                tg.create_task(produce(i, out))
        got = reader.result()
        for i, c in enumerate(ids):
            assert [e.records[0] for e in got[c][:-1]] == [[i, k] for k in range(60)]
            assert all(len(e.records) == 1 + k % 7 for k, e in enumerate(got[c][:-1]))
    run(kind, body)


def test_capacity_one_still_flows(kind: str) -> None:
    async def body(h: Harness) -> None:
        out = h.output("0.0.0")
        gate = InputGate([h.input("0.0.0")])
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(drain(gate, 1))
            for i in range(100):
                await out.put(RecordBatch([i]))
            await out.put(END_OF_PARTITION)
        assert [e.records[0] for e in reader.result()["0.0.0"][:-1]] == list(range(100))
    run(kind, body, capacity=1)
