"""The TaskManager's network facade: remote channels to and from other TaskManagers.

A TaskManager owns one :class:`NetworkEnvironment`.  It serves the websocket data endpoint other
TaskManagers send to, and opens (lazily, one per peer address) the websockets this TaskManager
sends on.  Local channels (producer and consumer in the same process) never go through it.

Example (two TaskManagers in one process, as the tests do)::

    rx, tx = NetworkEnvironment(), NetworkEnvironment()
    await rx.start(); await tx.start()
    inbox = InputChannel("0.0.1", capacity=4)
    rx.register_input_channel("job", inbox)
    out = tx.output_channel("job", "0.0.1", rx.address)
    await out.put(RecordBatch([{"id": 1}]))        # waits for credit, then queues the batch
    ...
    await tx.stop(); await rx.stop()

Which address a TaskManager uses for a downstream subtask comes from the deployment descriptor;
the environment only needs the peer's ``host:port``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import aiohttp

from streamlet.clock import Clock, SystemClock
from streamlet.runtime.taskmanager.network.channels import InputChannel
from streamlet.runtime.taskmanager.network.client import PeerConnection
from streamlet.runtime.taskmanager.network.errors import ChannelReleasedError, NetworkStoppedError
from streamlet.runtime.taskmanager.network.remote import (
    MAX_FRAME_BYTES, InputChannelRegistry, RemoteOutputChannel, TrafficStats,
)
from streamlet.runtime.taskmanager.network.server import DataServer

logger = logging.getLogger(__name__)

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"peer address {address!r} is not 'host:port'; use the data address the "
                         "peer taskmanager registered with")


class NetworkEnvironment:
    """Remote channels of one TaskManager over one websocket per peer, with credit-based flow
    control per channel (see :mod:`.remote` for the wire format and the credit protocol).

    Called by the TaskManager from its event loop: ``start`` once, then ``register_input_channel``
    / ``output_channel`` / ``unregister_job`` as tasks are deployed and finish, ``stop`` once.

    Guarantees: per-channel order; bounded memory (a receiver buffers at most ``capacity``
    elements per channel, a sender queues only what it has credit for); a slow channel never
    blocks another one on the same connection; a lost or unreachable peer makes the ``put`` of
    every channel to it raise a ``RetryableError`` naming the peer instead of hanging.  Not
    guaranteed: delivery of elements in flight when a connection breaks (the job restarts from its
    last checkpoint).  Two TaskManagers that send to each other use two websockets, one per
    direction (each carries data one way and credits the other way).

    ``capacity`` is the buffer size (in elements) of the channels :meth:`create_input_channel`
    makes; a registered channel is granted its own ``capacity``.  ``connect_timeout`` bounds how
    long a connection is retried (with backoff) before its channels fail; ``send_timeout`` bounds
    each websocket write and the handshake; ``heartbeat`` is the websocket ping interval that
    detects a peer that vanished without closing its socket (or stopped in the middle of a frame);
    ``max_frame_bytes`` (``taskmanager.network.max-frame-size``) is the largest frame read from a
    peer, and so the largest element sent.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 capacity: int = 4, connect_timeout: float = 10.0, *, send_timeout: float = 30.0,
                 heartbeat: float = 30.0, clock: Clock | None = None, max_frame_bytes: int = MAX_FRAME_BYTES,
                 ssl_server: ssl.SSLContext | None = None, ssl_client: ssl.SSLContext | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be at least 1, got {capacity!r}")
        self.host = host
        self.capacity = capacity
        self.connect_timeout = connect_timeout
        self.send_timeout = send_timeout
        self.heartbeat = heartbeat
        #: paces reconnect attempts to peers
        self.clock = clock or SystemClock()
        self._token = token
        self._state = _NEW
        self._registry = InputChannelRegistry()
        self.max_frame_bytes = max_frame_bytes
        #: mutual TLS (``security.ssl.internal.*``): the endpoint's context and the one peers are verified with
        self.ssl_client = ssl_client
        self._server = DataServer(self._registry, host, port, token, heartbeat, send_timeout, max_frame_bytes,
                                  ssl_server)
        self._session: aiohttp.ClientSession | None = None
        self._peers: dict[str, PeerConnection] = {}
        self._outputs: dict[tuple[str, str], RemoteOutputChannel] = {}
        # connection tasks, owned here and cancelled + awaited by stop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._retired = TrafficStats()

    async def start(self) -> None:
        """Bind the data endpoint on ``host:port`` (port 0: a free port, see :attr:`address`)."""
        if self._state != _NEW:
            raise RuntimeError(f"network environment already {self._state}")
        # limit=0: one socket per peer, and peers are bounded by the cluster size
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            await self._server.start()
        except BaseException:
            await session.close()
            raise
        self._session = session
        self._state = _RUNNING
        logger.info("data endpoint listening on %s", self.address)

    @property
    def address(self) -> str:
        """``host:port`` actually bound; what other TaskManagers connect to."""
        if self._state == _NEW:
            raise RuntimeError("the network environment has no address before start()")
        return f"{self.host}:{self._server.port}"

    # ---------------------------------------------------------------- receiving side

    def register_input_channel(self, job_id: str, channel: InputChannel) -> None:
        """Receive the elements of ``(job_id, channel.channel_id)`` into ``channel``.

        Elements from whichever peer opened that channel are put with ``put_nowait``; the sender
        is granted ``channel.capacity`` credits (minus what is buffered) and one more per element
        the task takes (``channel.on_consumed`` is set here).  A sender may connect and open the
        channel before this call: it just has no credit until then.  Registering a key again
        replaces the channel; the new one is fed after its producer's next open.
        """
        self._registry.register(job_id, channel)

    def create_input_channel(self, job_id: str, channel_id: str, input_index: int = 0) -> InputChannel:
        """A new InputChannel of this environment's ``capacity``, already registered."""
        ch = InputChannel(channel_id, self.capacity, input_index)
        self.register_input_channel(job_id, ch)
        return ch

    def unregister_job(self, job_id: str) -> None:
        """Drop every channel of ``job_id`` (finished or cancelled), both directions.

        Late data for its input channels is discarded; its output channels fail pending ``put``
        calls with ``ChannelReleasedError``, but elements they already queued are still sent.
        """
        self._registry.unregister_job(job_id)
        for key in [k for k in self._outputs if k[0] == job_id]:
            ch = self._outputs.pop(key)
            ch.release(ChannelReleasedError(ch.peer, job_id, ch.channel_id))

    # ---------------------------------------------------------------- sending side

    def output_channel(self, job_id: str, channel_id: str, peer_address: str) -> RemoteOutputChannel:
        """The producer side of ``(job_id, channel_id)``, whose consumer is at ``peer_address``.

        Must be called on the environment's event loop after :meth:`start`.  Opens the websocket
        to the peer if none is open (in the background: the first ``put`` waits for credit, which
        comes only once the peer is connected and its task registered the channel).  Asking again
        for the same key releases the previous channel (a new attempt replaces the old one).
        """
        if self._state != _RUNNING:
            if self._state == _STOPPED:
                raise NetworkStoppedError(peer_address)
            raise RuntimeError("call start() before output_channel()")
        _check_address(peer_address)
        key = (job_id, channel_id)
        old = self._outputs.pop(key, None)
        if old is not None:
            old.release(ChannelReleasedError(old.peer, job_id, channel_id))
        conn = self._peers.get(peer_address)
        if conn is None or conn.closed:
            conn = self._connect(peer_address)
        ch = conn.open_channel(job_id, channel_id)
        self._outputs[key] = ch
        return ch

    def _connect(self, peer: str) -> PeerConnection:
        assert self._session is not None
        conn = PeerConnection(peer, self._session, origin=self.address, token=self._token,
                              connect_timeout=self.connect_timeout, send_timeout=self.send_timeout,
                              heartbeat=self.heartbeat, clock=self.clock, max_frame_bytes=self.max_frame_bytes,
                              ssl_context=self.ssl_client)
        self._peers[peer] = conn
        task = asyncio.get_running_loop().create_task(conn.run(), name=f"data connection to {peer}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._connection_done(t, conn))
        return conn

    def _connection_done(self, task: asyncio.Task[None], conn: PeerConnection) -> None:
        self._tasks.discard(task)
        if self._peers.get(conn.peer) is conn:
            del self._peers[conn.peer]
        self._retired.add(conn.link.stats)
        if not task.cancelled() and task.exception() is not None:
            logger.error("data connection to %s crashed", conn.peer, exc_info=task.exception())

    # ---------------------------------------------------------------- lifecycle

    async def stop(self) -> None:
        """Close every connection and the endpoint; pending ``put`` calls raise
        ``NetworkStoppedError`` and elements queued but not yet written are dropped (stop the
        producing tasks first).  Idempotent; cleanup errors are collected, the first re-raised."""
        if self._state == _STOPPED:
            return
        was_running = self._state == _RUNNING
        self._state = _STOPPED
        errors: list[BaseException] = []
        # 1. outbound first, so no task keeps sending while the endpoint goes away
        conns = list(self._peers.values())
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        for r in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(r, Exception):
                errors.append(r)
        for conn in conns:  # a task cancelled before it ever ran did not fail its channels
            conn.link.fail(NetworkStoppedError(conn.peer))
        for ch in self._outputs.values():
            ch.fail(NetworkStoppedError(ch.peer))
        # 2. inbound connections and the listening socket
        if was_running:
            try:
                await self._server.stop()
            except Exception as exc:
                errors.append(exc)
        # 3. the client session (its sockets are closed by now)
        if self._session is not None:
            try:
                await self._session.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def statistics(self) -> dict[str, Any]:
        """Traffic totals (both directions), per-peer outbound connections, inbound connections,
        and channel counts.  Cheap enough to call per metrics report."""
        out = TrafficStats()
        out.add(self._retired)
        for conn in self._peers.values():
            out.add(conn.link.stats)
        inb = self._server.traffic()
        server = self._server.statistics()
        return {
            "address": self.address if self._state != _NEW else None,
            "state": self._state,
            "bytes_sent": out.bytes_sent + inb.bytes_sent,
            "frames_sent": out.frames_sent + inb.frames_sent,
            "bytes_received": out.bytes_received + inb.bytes_received,
            "frames_received": out.frames_received + inb.frames_received,
            "outbound": out.as_dict(),
            "inbound": inb.as_dict(),
            "peers": {peer: conn.statistics() for peer, conn in self._peers.items()},
            "inbound_connections": server["inbound"],
            "refused_connections": server["refused"],
            "output_channels": len(self._outputs),
            **self._registry.statistics(),
        }
