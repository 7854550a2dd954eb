"""Sending side of the data plane: one websocket to one peer TaskManager.

A :class:`PeerConnection` is created by ``NetworkEnvironment`` the first time a channel to a peer
address is asked for, and runs as one task owned by the environment:

1. connect to ``ws://<peer>/data``, presenting the token and the protocol version; a failed
   attempt is retried with exponential backoff until ``connect_timeout`` has passed (the peer may
   still be starting); a refusal (401/400) is not retried;
2. pump: a writer sends the link's outbox (coalesced frames, each send under ``send_timeout``)
   and a reader applies the peer's credit frames; heartbeats (websocket ping/pong) detect a peer
   that vanished without closing the socket;
3. when either ends, the link fails: every channel's pending and later ``put`` raises an error
   naming the peer.  A connection is never reused after that; the environment opens a new one
   for the channels of the next attempt (reconnecting cannot resend what was lost in flight,
   so recovery goes through the job's restart from its last checkpoint, as in Flink).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

import aiohttp

from streamlet.clock import Clock, SystemClock
from streamlet.errors import StreamletError
from streamlet.rpc.auth import bearer_header
from streamlet.rpc.client import Backoff
from streamlet.rpc.tls import describe_failure
from streamlet.runtime.taskmanager.network.errors import (
    NetworkStoppedError, PeerLostError, PeerRefusedError, PeerUnreachableError, ProtocolError,
)
from streamlet.runtime.taskmanager.network.remote import (
    DATA_PATH, MAX_FRAME_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION, SENDER_HEADER, OutboundLink, RemoteOutputChannel,
)

logger = logging.getLogger(__name__)

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
_CLOSE_TIMEOUT = 1.0


class PeerConnection:
    """The websocket to one peer, shared by every output channel to that peer.

    Created and run by ``NetworkEnvironment``; ``open_channel`` may be called before the socket
    is connected (the open messages wait in the outbox).  ``state`` is one of ``connecting``,
    ``connected``, ``closed``; a closed connection's ``error`` says why.
    """

    def __init__(self, peer: str, session: aiohttp.ClientSession, *, origin: str, token: str | None,
                 connect_timeout: float, send_timeout: float, heartbeat: float, clock: Clock | None = None,
                 max_frame_bytes: int = MAX_FRAME_BYTES, ssl_context: ssl.SSLContext | None = None) -> None:
        self.peer = peer
        self.clock = clock or SystemClock()
        self.state = "connecting"
        self._session = session
        self._origin = origin
        self._token = token
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._heartbeat = heartbeat
        self._wake = asyncio.Event()
        self.link = OutboundLink(peer, self._wake.set, max_frame_bytes)
        self._max_frame_bytes = max_frame_bytes
        self._ssl = ssl_context
        self.attempts = 0

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    @property
    def error(self) -> BaseException | None:
        return self.link.error

    def open_channel(self, job_id: str, channel_id: str) -> RemoteOutputChannel:
        return self.link.open_channel(job_id, channel_id)

    async def run(self) -> None:
        """Connect, pump until the connection ends, then fail the channels.  Never raises except
        ``CancelledError`` (the environment stops): the error is handed to the channels."""
        error: BaseException | None = None
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            ws = await self._connect()
            self.state = "connected"
            logger.info("data connection to %s open", self.peer)
            error = await self._pump(ws)
        except asyncio.CancelledError:
            error = NetworkStoppedError(self.peer)
            raise
        except StreamletError as exc:
            error = exc
        except Exception as exc:  # anything else from aiohttp is a broken connection
            error = PeerLostError(self.peer, f"{type(exc).__name__}: {exc}")
        finally:
            self.state = "closed"
            if error is None:
                error = PeerLostError(self.peer, "connection ended")
            if not isinstance(error, NetworkStoppedError):
                logger.warning("data connection to %s closed: %s", self.peer, error)
            self.link.fail(error)
            if ws is not None and not ws.closed:
                try:
                    async with asyncio.timeout(_CLOSE_TIMEOUT):
                        await ws.close()
                except (TimeoutError, OSError, aiohttp.ClientError):
                    pass  # the peer is gone anyway; closing was a courtesy

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        clock = self.clock
        deadline = clock.monotonic() + self._connect_timeout
        headers = {PROTOCOL_HEADER: str(PROTOCOL_VERSION), SENDER_HEADER: self._origin,
                   **bearer_header(self._token)}
        url = f"{'https' if self._ssl is not None else 'http'}://{self.peer}{DATA_PATH}"
        backoff = Backoff(clock, _BACKOFF_MAX, initial=_BACKOFF_FIRST)
        last: BaseException | None = None
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                raise PeerUnreachableError(self.peer, self._connect_timeout, last)
            self.attempts += 1
            try:
                async with asyncio.timeout(remaining):
                    return await self._session.ws_connect(
                        url, headers=headers, heartbeat=self._heartbeat, compress=0, autoping=True,
                        max_msg_size=self._max_frame_bytes, ssl=self._ssl if self._ssl is not None else True)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    raise PeerRefusedError(self.peer, "wrong or missing token (HTTP 401); give every "
                                           "process the same security.auth.token") from None
                if exc.status == 400:
                    raise PeerRefusedError(self.peer, f"{exc.message} (HTTP 400)") from None
                last = exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = describe_failure(exc, f"taskmanager {self.peer}", "security.ssl.internal.truststore")
                if reason is not None:
                    raise PeerRefusedError(self.peer, reason) from None
                last = exc
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                raise PeerUnreachableError(self.peer, self._connect_timeout, last)
            await backoff.wait(limit=remaining)

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> BaseException:
        """Run reader and writer until one ends; the error that ended the connection."""
        error: BaseException = PeerLostError(self.peer, "connection ended")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(ws))
                tg.create_task(self._write(ws))
        except* StreamletError as group:
            error = group.exceptions[0]
        except* Exception as group:
            exc = group.exceptions[0]
            error = PeerLostError(self.peer, f"{type(exc).__name__}: {exc}")
        return error

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        link = self.link
        while True:
            # No timeout: an idle connection is normal; the heartbeat closes a silent one.
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.BINARY:
                link.handle_frame(msg.data)
            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                raise PeerLostError(self.peer, f"the peer closed the connection (code {ws.close_code})")
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise PeerLostError(self.peer, f"{type(msg.data).__name__}: {msg.data}")
            else:
                raise ProtocolError(f"unexpected {msg.type.name} message from {self.peer!r}")

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        link = self.link
        wake = self._wake
        while True:
            await wake.wait()  # local: woken when a message is queued
            wake.clear()
            while (frame := link.take_frame()) is not None:
                try:
                    async with asyncio.timeout(self._send_timeout):
                        await ws.send_bytes(frame)
                except TimeoutError:
                    raise PeerLostError(self.peer, f"sending a frame took more than {self._send_timeout:g}s") from None

    def statistics(self) -> dict[str, Any]:
        return {"state": self.state, "attempts": self.attempts,
                "error": str(self.error) if self.error is not None else None, **self.link.statistics()}
