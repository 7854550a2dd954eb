"""Remote channels: the wire format and credit-based flow control, without I/O.

The sockets live in :mod:`.client` (sending side) and :mod:`.server` (receiving side); this
module holds the state both sides keep per connection, so it can be tested (and reasoned about)
without a network: :class:`OutboundLink` and :class:`RemoteOutputChannel` on the sender,
:class:`InboundLink` and :class:`InputChannelRegistry` on the receiver.

Wire format (``PROTOCOL_VERSION`` 1).  Every websocket message is a *binary* frame holding one
orjson array of messages; each message is an array whose first item says what it is:

========================================  ==================  ==================================
message                                    direction           meaning
========================================  ==================  ==================================
``["o", n, job_id, channel_id]``           sender → receiver   channel ``n`` of this connection
                                                               feeds (job_id, channel_id)
``["d", n, element]``                      sender → receiver   one element on channel ``n``;
                                                               ``element`` is its ``to_wire()``
                                                               (``["b", records, timestamps]``,
                                                               ``["w", t]``, ``["c", id, t]``,
                                                               ``["e"]``)
``["k", n1, c1, n2, c2, ...]``             receiver → sender   ``c1`` more credits on ``n1``, ...
========================================  ==================  ==================================

A data message is encoded with a single ``orjson.dumps`` (no per-record Python work); a frame is
the encoded messages joined with commas inside brackets, so coalescing costs a byte join.

Credit protocol (as Flink's credit-based flow control), per channel:

1. ``output_channel()`` gives the channel a number ``n`` on the connection to the peer and queues
   its ``open`` message; the sender starts with zero credit.
2. The receiver *binds* the channel once both the ``open`` arrived and the task registered its
   input channel, in either order, and grants ``capacity - buffered`` credits.
3. The sender spends one credit per data message; with no credit, ``put()`` waits (backpressure).
4. Each element the consuming task takes (``InputChannel.on_consumed``) grants one credit back;
   grants are coalesced per connection into one ``credit`` message per flush.

Invariant: buffered + in flight + unspent credit <= capacity.  So the receiver's buffer never
overflows, the socket reader never waits for a full channel, and a slow channel cannot block the
other channels of its connection (no head-of-line blocking).  Per-channel order holds because a
channel has one producer and a websocket is ordered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable

import orjson

from streamlet.runtime.taskmanager.network.channels import InputChannel
from streamlet.runtime.taskmanager.network.elements import from_wire
from streamlet.runtime.taskmanager.network.errors import ElementEncodingError, ProtocolError

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: handshake header carrying PROTOCOL_VERSION (a mismatch is refused with 400)
PROTOCOL_HEADER = "Streamlet-Data-Protocol"
#: handshake header carrying the sender's own data address (names the peer in logs and stats)
SENDER_HEADER = "Streamlet-Sender"
DATA_PATH = "/data"

OPEN = "o"
DATA = "d"
CREDIT = "k"

#: a sender coalesces queued messages into one frame up to about this many bytes; frames that
#: stay in L2 cache decode faster (1 MiB frames ran a channel at 3.1M records/s, 64 KiB at 5.3M)
FRAME_TARGET_BYTES = 1 << 16
#: the default of ``taskmanager.network.max-frame-size``: the largest frame a receiver reads (a
#: larger one ends the connection) and so, less the brackets, the largest encoded element
MAX_FRAME_BYTES = 64 << 20
#: how many channels one connection may open; bounds the receiver's tables per peer
MAX_CHANNELS_PER_CONNECTION = 1 << 16

ChannelKey = tuple[str, str]


def encode_open(n: int, job_id: str, channel_id: str) -> bytes:
    return orjson.dumps([OPEN, n, job_id, channel_id])


def encode_data(n: int, element: Any, max_bytes: int = MAX_FRAME_BYTES - 2) -> bytes:
    """One data message; raises :class:`ElementEncodingError` for what orjson cannot encode, or
    for a message larger than ``max_bytes`` (a receiver would disconnect)."""
    try:
        data = orjson.dumps([DATA, n, element.to_wire()])
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        msg = (f"cannot send {type(element).__name__} on a remote channel: {exc}; records crossing "
               "taskmanagers must be JSON values (dict with str keys, list, str, int, float, bool, None)")
        raise ElementEncodingError(msg) from exc
    if len(data) > max_bytes:
        msg = (f"an encoded {type(element).__name__} has {len(data)} bytes, more than the {max_bytes} a data "
               "message may have (taskmanager.network.max-frame-size); lower pipeline.batch-size or raise "
               "taskmanager.network.max-frame-size on every taskmanager")
        raise ElementEncodingError(msg)
    return data


def encode_credits(grants: dict[int, int]) -> bytes:
    flat: list[Any] = [CREDIT]
    for n, c in grants.items():
        flat.append(n)
        flat.append(c)
    return orjson.dumps([flat])


def _decode_frame(data: bytes, peer: str) -> list[Any]:
    try:
        msgs = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"undecodable data frame from {peer!r}: {exc}") from exc
    if type(msgs) is not list:
        raise ProtocolError(f"data frame from {peer!r} is not an array of messages")
    return msgs


class TrafficStats:
    """Counters of one connection (or their sum over connections)."""

    __slots__ = ("frames_sent", "bytes_sent", "messages_sent", "frames_received", "bytes_received",
                 "messages_received", "credits_granted", "credits_received", "dropped")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def add(self, other: TrafficStats) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


# --------------------------------------------------------------------------------------------
# sending side


class RemoteOutputChannel:
    """Producer side of a channel whose consumer runs in another TaskManager.

    Implements the ``OutputChannel`` protocol.  Created by ``NetworkEnvironment.output_channel``;
    written by exactly one task (its ``RecordWriter``), one ``put`` at a time.

    Guarantees: elements arrive in ``put`` order; ``put`` returns once the element is queued on
    the connection (it never waits for the network, only for credit); once the connection is lost,
    the environment stops, or the channel is released, every pending and later ``put`` raises
    (``PeerLostError``, ``NetworkStoppedError``, ``ChannelReleasedError``, ...), so a task never
    hangs on a dead peer.  Not guaranteed: that a queued element reaches the peer if the
    connection breaks afterwards (recovery replays from the last checkpoint).
    """

    __slots__ = ("job_id", "channel_id", "peer", "number", "credit", "sent", "_link", "_waiter", "_error")

    def __init__(self, job_id: str, channel_id: str, peer: str, number: int, link: OutboundLink) -> None:
        self.job_id = job_id
        self.channel_id = channel_id
        self.peer = peer
        self.number = number
        #: data messages this channel may still send (granted by the receiver)
        self.credit = 0
        self.sent = 0
        self._link = link
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def has_space(self) -> bool:
        """True when ``put`` would not wait: the channel holds credit."""
        return self.credit > 0 and self._error is None

    @property
    def error(self) -> BaseException | None:
        """Why the channel can no longer send, or None."""
        return self._error

    async def put(self, element: Any) -> None:
        """Queue ``element`` for the peer, first waiting for a credit (backpressure)."""
        # encode first: an element that cannot be sent must not cost a credit
        data = encode_data(self.number, element, self._link.max_message_bytes)
        # No timeout on this wait: a slow consumer may legitimately hold credit for a long time.
        # A dead peer is detected by the connection (socket close, heartbeat), which fails us.
        while self.credit <= 0 or self._error is not None:
            if self._error is not None:
                raise self._error
            fut = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await fut
            finally:
                self._waiter = None
        self.credit -= 1
        self.sent += 1
        self._link.enqueue(data)

    def add_credit(self, credit: int) -> None:
        """The receiver granted ``credit`` more messages (called by the connection)."""
        self.credit += credit
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Make pending and later ``put`` calls raise ``error`` (first error wins)."""
        if self._error is None:
            self._error = error
        w = self._waiter
        if w is not None and not w.done():
            # woken with a result, not the exception: the waiter re-checks and raises, and a
            # future nobody awaits any more cannot log "exception was never retrieved"
            w.set_result(None)

    def release(self, error: BaseException) -> None:
        """Detach from the connection (late credits are ignored) and fail with ``error``."""
        self._link.release(self, error)

    def statistics(self) -> dict[str, Any]:
        return {"channel_id": self.channel_id, "credit": self.credit, "sent": self.sent,
                "waiting": self._waiter is not None, "failed": self._error is not None}


class OutboundLink:
    """Sender-side state of one connection to ``peer``: channel numbers, credits, outbox.

    The connection (``client.PeerConnection``) calls :meth:`take_frame` to get what to write and
    :meth:`handle_frame` with what it read; ``wake`` tells it that the outbox has something.
    """

    def __init__(self, peer: str, wake: Callable[[], None], max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self.peer = peer
        #: the largest encoded element (a frame holds at least one, in brackets)
        self.max_message_bytes = max_frame_bytes - 2
        self.channels: dict[int, RemoteOutputChannel] = {}
        self.stats = TrafficStats()
        self.error: BaseException | None = None
        self._next = 0
        # Bounded by credits: a data message is queued only after spending a credit, and each
        # channel queues one open message; so the outbox holds at most
        # sum(capacity) + channels messages.
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._wake = wake

    def open_channel(self, job_id: str, channel_id: str) -> RemoteOutputChannel:
        """A new channel on this connection (its ``open`` message is queued)."""
        n = self._next
        self._next += 1
        ch = RemoteOutputChannel(job_id, channel_id, self.peer, n, self)
        if self.error is not None:
            ch.fail(self.error)
            return ch
        self.channels[n] = ch
        self.enqueue(encode_open(n, job_id, channel_id))
        return ch

    def release(self, ch: RemoteOutputChannel, error: BaseException) -> None:
        """Forget ``ch`` (its messages already queued are still sent) and fail its waiters."""
        if self.channels.get(ch.number) is ch:
            del self.channels[ch.number]
        ch.fail(error)

    def enqueue(self, data: bytes) -> None:
        self._outbox.append(data)
        self._outbox_bytes += len(data)
        self._wake()

    def take_frame(self, target: int = FRAME_TARGET_BYTES) -> bytes | None:
        """The next frame to write (queued messages coalesced up to ``target`` bytes), or None."""
        box = self._outbox
        if not box:
            return None
        parts = [box.popleft()]
        size = len(parts[0])
        while box and size + len(box[0]) <= target:
            p = box.popleft()
            parts.append(p)
            size += len(p)
        self._outbox_bytes -= size
        frame = b"[" + b",".join(parts) + b"]"
        st = self.stats
        st.frames_sent += 1
        st.messages_sent += len(parts)
        st.bytes_sent += len(frame)
        return frame

    def handle_frame(self, data: bytes) -> None:
        """Apply a frame read from the peer (credit messages)."""
        st = self.stats
        st.frames_received += 1
        st.bytes_received += len(data)
        channels = self.channels
        for m in _decode_frame(data, self.peer):
            if type(m) is not list or not m or m[0] != CREDIT or len(m) % 2 != 1:
                raise ProtocolError(f"unexpected message from {self.peer!r}: {str(m)[:100]}")
            st.messages_received += 1
            for i in range(1, len(m), 2):
                c = m[i + 1]
                if type(c) is not int or c < 0 or type(m[i]) is not int:
                    raise ProtocolError(f"malformed credit message from {self.peer!r}: {str(m)[:100]}")
                st.credits_received += c
                ch = channels.get(m[i])
                if ch is not None:  # a released channel's late credit is ignored
                    ch.add_credit(c)

    def fail(self, error: BaseException) -> None:
        """The connection is gone: fail every channel and drop what was not sent."""
        if self.error is None:
            self.error = error
        for ch in self.channels.values():
            ch.fail(error)
        self._outbox.clear()
        self._outbox_bytes = 0

    def statistics(self) -> dict[str, Any]:
        return {"channels": len(self.channels),
                "channels_without_credit": sum(1 for c in self.channels.values() if c.credit <= 0),
                "outbox_messages": len(self._outbox), "outbox_bytes": self._outbox_bytes,
                **self.stats.as_dict()}


# --------------------------------------------------------------------------------------------
# receiving side


class _RemoteInput:
    """A registered input channel and the (connection, number) currently feeding it."""

    __slots__ = ("key", "channel", "link", "number")

    def __init__(self, key: ChannelKey, channel: InputChannel) -> None:
        self.key = key
        self.channel = channel
        self.link: InboundLink | None = None
        self.number = -1

    def consumed(self) -> None:
        """``InputChannel.on_consumed``: one buffer slot freed, one credit back to the sender."""
        link = self.link
        if link is not None:
            link.grant(self.number, 1)


class InboundLink:
    """Receiver-side state of one inbound connection: which channel each number feeds, and the
    credits to announce.  ``server.InboundConnection`` feeds it frames and writes its credits;
    ``wake`` tells it that credits are waiting.
    """

    def __init__(self, registry: InputChannelRegistry, peer: str, wake: Callable[[], None]) -> None:
        self.registry = registry
        self.peer = peer
        #: bound channels by number
        self.inputs: dict[int, _RemoteInput] = {}
        #: opened, not yet registered by a task: no credit was granted for them
        self.pending: dict[int, ChannelKey] = {}
        self.stats = TrafficStats()
        self.closed = False
        self._credits: dict[int, int] = {}
        self._wake = wake

    def grant(self, n: int, credit: int) -> None:
        """Announce ``credit`` more credits for channel ``n`` (coalesced until the next flush)."""
        if self.closed:
            return
        c = self._credits
        c[n] = c.get(n, 0) + credit
        self.stats.credits_granted += credit
        self._wake()

    def take_credits(self) -> bytes | None:
        """One frame announcing every credit granted since the last call, or None."""
        if not self._credits:
            return None
        grants, self._credits = self._credits, {}
        frame = encode_credits(grants)
        st = self.stats
        st.frames_sent += 1
        st.messages_sent += 1
        st.bytes_sent += len(frame)
        return frame

    def handle_frame(self, data: bytes) -> None:
        """Deliver a frame's elements into their input channels; never waits.

        Raises :class:`ProtocolError` for data on a channel without credit (the connection is then
        closed).  Data for a channel whose job was unregistered is dropped and counted.
        """
        st = self.stats
        st.frames_received += 1
        st.bytes_received += len(data)
        inputs = self.inputs
        msgs = _decode_frame(data, self.peer)
        st.messages_received += len(msgs)
        try:
            for m in msgs:
                kind = m[0]
                if kind == DATA:
                    ri = inputs.get(m[1])
                    if ri is None:
                        if m[1] in self.pending:
                            raise ProtocolError(f"{self.peer!r} sent data on channel {m[1]} before any credit")
                        st.dropped += 1
                        continue
                    ch = ri.channel
                    if len(ch) >= ch.capacity:
                        raise ProtocolError(f"{self.peer!r} sent more than its credit on channel "
                                            f"{ri.key[1]!r} (capacity {ch.capacity})")
                    ch.put_nowait(from_wire(m[2]))
                elif kind == OPEN:
                    self.registry.open(self, m[1], m[2], m[3])
                else:
                    raise ProtocolError(f"unknown message kind {kind!r} from {self.peer!r}")
        except (IndexError, TypeError, ValueError, KeyError) as exc:
            raise ProtocolError(f"malformed data message from {self.peer!r}: {exc}") from exc

    def close(self) -> None:
        """The connection ended: unbind its channels (a later ``open`` rebinds them)."""
        if not self.closed:
            self.closed = True
            self._credits.clear()
            self.registry.link_closed(self)

    def statistics(self) -> dict[str, Any]:
        return {"peer": self.peer, "channels": len(self.inputs), "pending_opens": len(self.pending),
                **self.stats.as_dict()}


class InputChannelRegistry:
    """Receiver side of a TaskManager: the remote input channels, by (job id, channel id).

    Called by ``NetworkEnvironment`` (register / unregister, from the TaskManager's task) and by
    inbound links (open / close, from connection handlers); all on one event loop, so no locks.

    Binding rule: a channel is fed by the latest ``open`` for its key; an earlier binding (an old
    attempt's connection) is dropped and its late data is discarded.  A binding grants
    ``capacity - buffered`` credits, which keeps the invariant across rebinding.
    """

    def __init__(self) -> None:
        self._inputs: dict[ChannelKey, _RemoteInput] = {}
        self._pending: dict[ChannelKey, tuple[InboundLink, int]] = {}

    def register(self, job_id: str, channel: InputChannel) -> None:
        key = (job_id, channel.channel_id)
        old = self._inputs.pop(key, None)
        if old is not None:
            self._unbind(old)
        ri = _RemoteInput(key, channel)
        channel.on_consumed = ri.consumed
        self._inputs[key] = ri
        p = self._pending.pop(key, None)
        if p is not None:
            link, n = p
            link.pending.pop(n, None)
            self._bind(ri, link, n)

    def unregister_job(self, job_id: str) -> None:
        for key in [k for k in self._inputs if k[0] == job_id]:
            self._unbind(self._inputs.pop(key))
        for key in [k for k in self._pending if k[0] == job_id]:
            link, n = self._pending.pop(key)
            link.pending.pop(n, None)

    def open(self, link: InboundLink, n: int, job_id: str, channel_id: str) -> None:
        if type(n) is not int or type(job_id) is not str or type(channel_id) is not str:
            raise ProtocolError(f"malformed open message from {link.peer!r}")
        if n in link.inputs or n in link.pending:
            raise ProtocolError(f"{link.peer!r} opened channel number {n} twice")
        if len(link.inputs) + len(link.pending) >= MAX_CHANNELS_PER_CONNECTION:
            raise ProtocolError(f"{link.peer!r} opened more than {MAX_CHANNELS_PER_CONNECTION} channels")
        key = (job_id, channel_id)
        ri = self._inputs.get(key)
        if ri is not None:
            self._bind(ri, link, n)
            return
        prev = self._pending.get(key)
        if prev is not None:
            prev[0].pending.pop(prev[1], None)
        self._pending[key] = (link, n)
        link.pending[n] = key

    def link_closed(self, link: InboundLink) -> None:
        for ri in link.inputs.values():
            if ri.link is link:
                ri.link = None
        for n, key in link.pending.items():
            p = self._pending.get(key)
            if p is not None and p[0] is link and p[1] == n:
                del self._pending[key]
        link.inputs.clear()
        link.pending.clear()

    def _bind(self, ri: _RemoteInput, link: InboundLink, n: int) -> None:
        if ri.link is not None and ri.link.inputs.get(ri.number) is ri:
            logger.info("channel %s of job %s rebound from %s to %s", ri.key[1], ri.key[0], ri.link.peer, link.peer)
            del ri.link.inputs[ri.number]
        ri.link = link
        ri.number = n
        link.inputs[n] = ri
        free = ri.channel.capacity - len(ri.channel)
        if free > 0:
            link.grant(n, free)

    def _unbind(self, ri: _RemoteInput) -> None:
        ri.channel.on_consumed = None
        link = ri.link
        if link is not None and link.inputs.get(ri.number) is ri:
            del link.inputs[ri.number]
        ri.link = None

    def statistics(self) -> dict[str, int]:
        return {"input_channels": len(self._inputs),
                "bound": sum(1 for r in self._inputs.values() if r.link is not None),
                "pending_opens": len(self._pending)}
