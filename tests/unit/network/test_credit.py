"""Credit-based flow control without sockets: the sender's and receiver's link state machines
(``OutboundLink`` / ``RemoteOutputChannel`` and ``InboundLink`` / ``InputChannelRegistry``)
wired by hand, frames handed over explicitly."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from typing import Any

import orjson
import pytest

from streamlet.runtime.taskmanager.network.channels import InputChannel
from streamlet.runtime.taskmanager.network.elements import RecordBatch, Watermark
from streamlet.runtime.taskmanager.network.errors import ElementEncodingError, PeerLostError, ProtocolError
from streamlet.runtime.taskmanager.network.remote import (
    InboundLink, InputChannelRegistry, OutboundLink, encode_data, encode_open,
)


class Pair:
    """A sender link and a receiver link, connected by two explicit frame queues."""

    def __init__(self) -> None:
        self.registry = InputChannelRegistry()
        self.out = OutboundLink("rx:1", lambda: None)
        self.inb = InboundLink(self.registry, "tx:1", lambda: None)

    def to_receiver(self, target: int = 1 << 20) -> None:
        while (frame := self.out.take_frame(target)) is not None:
            self.inb.handle_frame(frame)

    def to_sender(self) -> None:
        frame = self.inb.take_credits()
        if frame is not None:
            self.out.handle_frame(frame)


def credits(link: InboundLink) -> dict[int, int]:
    frame = link.take_credits()
    if frame is None:
        return {}
    (msg,) = orjson.loads(frame)
    assert msg[0] == "k"
    return dict(zip(msg[1::2], msg[2::2]))


def test_sender_starts_without_credit_and_put_waits_for_it() -> None:
    async def main() -> None:
        p = Pair()
        ch = p.out.open_channel("j", "c")
        assert not ch.has_space()
        put = asyncio.create_task(ch.put(RecordBatch([1])))
        await asyncio.sleep(0)
        assert not put.done()
        ch.add_credit(2)
        await put
        assert ch.credit == 1 and ch.has_space()
        await ch.put(RecordBatch([2]))
        assert ch.credit == 0 and not ch.has_space()
        assert ch.sent == 2
    asyncio.run(main())


def test_fail_wakes_a_waiting_put_and_every_later_put() -> None:
    async def main() -> None:
        p = Pair()
        ch = p.out.open_channel("j", "c")
        put = asyncio.create_task(ch.put(RecordBatch([1])))
        await asyncio.sleep(0)
        p.out.fail(PeerLostError("rx:1", "test"))
        with pytest.raises(PeerLostError, match="rx:1"):
            await put
        ch.add_credit(5)  # credit does not revive a failed channel
        assert not ch.has_space()
        with pytest.raises(PeerLostError):
            await ch.put(RecordBatch([2]))
        assert p.out.take_frame() is None  # the unsent outbox was dropped
    asyncio.run(main())


def test_an_element_that_cannot_be_encoded_costs_no_credit() -> None:
    async def main() -> None:
        ch = Pair().out.open_channel("j", "c")
        ch.add_credit(1)
        with pytest.raises(ElementEncodingError, match="JSON"):
            await ch.put(RecordBatch([{1: "int keys are not JSON"}]))
        assert ch.credit == 1
    asyncio.run(main())


def test_frames_coalesce_in_order_up_to_the_target() -> None:
    out = OutboundLink("rx:1", lambda: None)
    msgs = [encode_data(0, RecordBatch([i])) for i in range(10)]
    for m in msgs:
        out.enqueue(m)
    target = len(msgs[0]) * 3
    frames = []
    while (f := out.take_frame(target)) is not None:
        frames.append(orjson.loads(f))
    assert [len(f) for f in frames] == [3, 3, 3, 1]
    assert [m[2][1] for f in frames for m in f] == [[i] for i in range(10)]
    big = encode_data(0, RecordBatch(list(range(1000))))
    out.enqueue(big)
    out.enqueue(msgs[0])
    assert len(orjson.loads(out.take_frame(10))) == 1  # a message over the target goes alone


def test_open_before_register_grants_capacity_on_register() -> None:
    p = Pair()
    p.out.open_channel("j", "c")
    p.to_receiver()
    assert credits(p.inb) == {}
    assert p.registry.statistics()["pending_opens"] == 1
    p.registry.register("j", InputChannel("c", 4))
    assert credits(p.inb) == {0: 4}


def test_register_before_open_grants_capacity_on_open() -> None:
    p = Pair()
    p.registry.register("j", InputChannel("c", 3))
    ch = p.out.open_channel("j", "c")
    p.to_receiver()
    p.to_sender()
    assert ch.credit == 3


def test_each_consumed_element_grants_one_credit_coalesced_per_flush() -> None:
    async def main() -> None:
        p = Pair()
        inbox = InputChannel("c", 4)
        p.registry.register("j", inbox)
        other = InputChannel("d", 2)
        p.registry.register("j", other)
        ch, ch2 = p.out.open_channel("j", "c"), p.out.open_channel("j", "d")
        p.to_receiver()
        p.to_sender()
        assert (ch.credit, ch2.credit) == (4, 2)
        for i in range(4):
            await ch.put(RecordBatch([i]))
        await ch2.put(Watermark(7))
        p.to_receiver()
        assert len(inbox) == 4 and len(other) == 1
        assert [inbox.take().records for _ in range(3)] == [[0], [1], [2]]
        other.take()
        assert credits(p.inb) == {0: 3, 1: 1}  # one credit message for four grants
        assert credits(p.inb) == {}
    asyncio.run(main())


def test_rebinding_grants_capacity_minus_buffered() -> None:
    async def main() -> None:
        p = Pair()
        inbox = InputChannel("c", 4)
        p.registry.register("j", inbox)
        old = p.out.open_channel("j", "c")
        p.to_receiver()
        p.to_sender()
        await old.put(RecordBatch([1]))
        await old.put(RecordBatch([2]))
        p.to_receiver()
        p.inb.take_credits()
        # a new attempt on a new connection opens the same channel: it gets what is free
        other = InboundLink(p.registry, "tx:2", lambda: None)
        other.handle_frame(b"[" + encode_open(0, "j", "c") + b"]")
        assert credits(other) == {0: 2}
        inbox.take()  # a consumed element now credits the new binding only
        assert credits(other) == {0: 1}
        assert credits(p.inb) == {}
        p.inb.handle_frame(b"[" + encode_data(0, RecordBatch([3])) + b"]")  # late data of the old binding
        assert len(inbox) == 1 and p.inb.stats.dropped == 1
    asyncio.run(main())


def test_closed_link_unbinds_and_a_reopen_rebinds() -> None:
    p = Pair()
    inbox = InputChannel("c", 2)
    p.registry.register("j", inbox)
    p.out.open_channel("j", "c")
    p.to_receiver()
    assert credits(p.inb) == {0: 2}
    p.inb.close()
    assert p.registry.statistics()["bound"] == 0
    p.inb.grant(0, 1)  # nothing is announced on a closed link
    assert p.inb.take_credits() is None
    again = InboundLink(p.registry, "tx:1", lambda: None)
    again.handle_frame(b"[" + encode_open(0, "j", "c") + b"]")
    assert credits(again) == {0: 2}


def test_data_without_credit_is_a_protocol_error() -> None:
    p = Pair()
    p.inb.handle_frame(b"[" + encode_open(0, "j", "c") + b"]")
    with pytest.raises(ProtocolError, match="before any credit"):
        p.inb.handle_frame(b"[" + encode_data(0, RecordBatch([1])) + b"]")
    q = Pair()
    q.registry.register("j", InputChannel("c", 1))
    q.inb.handle_frame(b"[" + encode_open(0, "j", "c") + b"]")
    q.inb.handle_frame(b"[" + encode_data(0, RecordBatch([1])) + b"]")
    with pytest.raises(ProtocolError, match="more than its credit"):
        q.inb.handle_frame(b"[" + encode_data(0, RecordBatch([2])) + b"]")


@pytest.mark.parametrize("frame", [b"not json", b"{}", b'[["z", 1]]', b'[["d"]]', b'[["o", "x", 1, 2]]'])
def test_malformed_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        Pair().inb.handle_frame(frame)


def test_unregistered_job_drops_late_data_and_pending_opens() -> None:
    p = Pair()
    p.registry.register("j", InputChannel("c", 2))
    p.inb.handle_frame(b"[" + encode_open(0, "j", "c") + b"," + encode_open(1, "j", "late") + b"]")
    p.registry.unregister_job("j")
    assert p.registry.statistics() == {"input_channels": 0, "bound": 0, "pending_opens": 0}
    p.inb.handle_frame(b"[" + encode_data(0, RecordBatch([1])) + b"]")
    assert p.inb.stats.dropped == 1


def test_released_channel_ignores_late_credit() -> None:
    p = Pair()
    ch = p.out.open_channel("j", "c")
    ch.release(PeerLostError("rx:1", "released"))
    p.out.handle_frame(orjson.dumps([["k", 0, 3]]))
    assert ch.credit == 0 and not ch.has_space()


@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_keep_the_credit_invariant(seed: int) -> None:
    """Sender, receiver and both directions of the wire step in a random order; at every step
    what was sent and not yet consumed fits the receiver's buffer, and at the end every element
    arrived in order and every credit came back."""
    rng = random.Random(seed)
    k, cap, total = 3, rng.choice([1, 2, 4]), 40

    async def main() -> None:
        registry = InputChannelRegistry()
        out = OutboundLink("rx:1", lambda: None)
        inb = InboundLink(registry, "tx:1", lambda: None)
        inboxes = [InputChannel(f"c{i}", cap) for i in range(k)]
        outs = [out.open_channel("j", f"c{i}") for i in range(k)]
        registered = [False] * k
        sent, got = [0] * k, [[] for _ in range(k)]  # type: list[int], list[list[Any]]
        to_rx: deque[bytes] = deque()
        to_tx: deque[bytes] = deque()

        def step(r: float, i: int) -> None:
            if r < 0.1 and not registered[i]:
                registry.register("j", inboxes[i])
                registered[i] = True
            elif r < 0.4:
                if outs[i].has_space() and sent[i] < total:
                    coro = outs[i].put(RecordBatch([sent[i]]))
                    with pytest.raises(StopIteration):  # with credit, put completes without waiting
                        coro.send(None)
                    sent[i] += 1
            elif r < 0.55:
                if (f := out.take_frame(rng.choice([1, 60, 1 << 20]))) is not None:
                    to_rx.append(f)
            elif r < 0.7:
                if to_rx:
                    inb.handle_frame(to_rx.popleft())
            elif r < 0.85:
                if len(inboxes[i]):
                    got[i].append(inboxes[i].take().records[0])
            elif r < 0.93:
                if (f := inb.take_credits()) is not None:
                    to_tx.append(f)
            elif to_tx:
                out.handle_frame(to_tx.popleft())

        for _ in range(20000):
            step(rng.random(), rng.randrange(k))
            for i in range(k):
                assert len(inboxes[i]) <= cap
                assert sent[i] - len(got[i]) <= cap
            if all(len(g) == total for g in got):
                break
        for _ in range(10 * k * total):  # finish deterministically
            for r in (0.05, 0.3, 0.5, 0.6, 0.8, 0.9, 0.95):
                for i in range(k):
                    step(r, i)
        assert got == [list(range(total))] * k
        assert [o.credit for o in outs] == [cap] * k
    asyncio.run(main())
