"""Receiving side of the data plane: the aiohttp websocket endpoint ``/data``.

Each peer TaskManager that sends to this one opens one websocket here (see :mod:`.client`).  Per
connection an :class:`InboundConnection` runs two loops:

* the reader hands every binary frame to its :class:`~.remote.InboundLink`, which puts the
  elements into their input channels with ``put_nowait``; it never waits on a channel, because a
  sender only sends with credit (so a slow channel cannot stall the socket);
* the credit writer sends the credits granted since its last send, coalesced into one frame.

The handshake is refused with 401 (``{"errors": [...]}``) without the right bearer token and with
400 for another protocol version; the token is compared in constant time and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import WSMsgType, web

from streamlet.rpc.auth import bearer_ok
from streamlet.runtime.taskmanager.network.errors import ProtocolError
from streamlet.runtime.taskmanager.network.remote import (
    DATA_PATH, MAX_FRAME_BYTES, PROTOCOL_HEADER, PROTOCOL_VERSION, SENDER_HEADER, InboundLink,
    InputChannelRegistry, TrafficStats,
)

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 1.0


class _PeerClosed(Exception):
    """The reader saw the end of the connection (ends the connection's task group)."""


class InboundConnection:
    """One accepted websocket from a sending peer."""

    def __init__(self, ws: web.WebSocketResponse, link: InboundLink, wake: asyncio.Event, send_timeout: float) -> None:
        self.ws = ws
        self.link = link
        self._wake = wake
        self._send_timeout = send_timeout

    async def run(self) -> None:
        """Read and announce credits until the peer closes or the connection breaks."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read())
                tg.create_task(self._write_credits())
        except* _PeerClosed:
            pass
        except* ProtocolError as group:
            logger.error("closing data connection from %s: %s", self.link.peer, group.exceptions[0])
            await self.close(code=1002)
        except* Exception as group:
            exc = group.exceptions[0]
            logger.warning("data connection from %s broke: %s: %s", self.link.peer, type(exc).__name__, exc)

    async def _read(self) -> None:
        ws = self.ws
        handle = self.link.handle_frame
        while True:
            # No timeout: an idle connection is normal; the heartbeat closes a silent one.
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                handle(msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                raise _PeerClosed()
            else:
                raise ProtocolError(f"unexpected {msg.type.name} message from {self.link.peer!r}")

    async def _write_credits(self) -> None:
        link = self.link
        wake = self._wake
        while True:
            await wake.wait()  # local: woken when a task consumed an element
            wake.clear()
            frame = link.take_credits()
            if frame is not None:
                async with asyncio.timeout(self._send_timeout):
                    await self.ws.send_bytes(frame)

    async def close(self, code: int = 1001) -> None:
        if self.ws.closed:
            return
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self.ws.close(code=code)
        except (TimeoutError, OSError):
            pass  # the peer does not answer the close handshake; the transport is dropped anyway


class DataServer:
    """The websocket data endpoint of one TaskManager; owned by ``NetworkEnvironment``.

    ``start`` binds ``host:port`` (0 picks a free port) and returns the bound port; ``stop``
    closes every inbound connection and the listening socket.
    """

    def __init__(self, registry: InputChannelRegistry, host: str, port: int, token: str | None,
                 heartbeat: float, send_timeout: float, max_frame_bytes: int = MAX_FRAME_BYTES,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.registry = registry
        #: a peer sending a larger frame is disconnected (aiohttp refuses it with close code 1009)
        self.max_frame_bytes = max_frame_bytes
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self._token = token
        self._heartbeat = heartbeat
        self._send_timeout = send_timeout
        self._runner: web.AppRunner | None = None
        self.connections: set[InboundConnection] = set()
        #: traffic of connections that ended (live ones are summed on demand)
        self.retired = TrafficStats()
        self.refused = 0

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get(DATA_PATH, self._handle)
        # short shutdown: stop() closes the websockets itself before the runner waits for handlers
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_CLOSE_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # close connections first so the runner's shutdown finds no handler to wait for
        await asyncio.gather(*(c.close() for c in list(self.connections)), return_exceptions=True)
        await runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        return bearer_ok(request.headers.get("Authorization"), self._token)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sender = request.headers.get(SENDER_HEADER) or str(request.remote)
        if not self._authorized(request):
            self.refused += 1
            logger.warning("refused data connection from %s: wrong or missing token", sender)
            return web.json_response({"errors": ["wrong or missing token: present the cluster's "
                                                 "security.auth.token as 'Authorization: Bearer <token>'"]},
                                     status=401)
        version = request.headers.get(PROTOCOL_HEADER)
        if version != str(PROTOCOL_VERSION):
            self.refused += 1
            reason = (f"data protocol version {version!r} is not supported (this taskmanager speaks "
                      f"{PROTOCOL_VERSION}); run the same streamlet version everywhere")
            logger.warning("refused data connection from %s: %s", sender, reason)
            return web.json_response({"errors": [reason]}, status=400, reason="Unsupported Data Protocol")
        ws = web.WebSocketResponse(heartbeat=self._heartbeat, max_msg_size=self.max_frame_bytes, compress=False)
        async with asyncio.timeout(self._send_timeout):
            await ws.prepare(request)
        wake = asyncio.Event()
        link = InboundLink(self.registry, sender, wake.set)
        conn = InboundConnection(ws, link, wake, self._send_timeout)
        self.connections.add(conn)
        logger.info("data connection from %s open", sender)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.retired.add(link.stats)
            link.close()
            await conn.close()
            logger.info("data connection from %s closed", sender)
        return ws

    def traffic(self) -> TrafficStats:
        """Traffic over every inbound connection, ended or live."""
        total = TrafficStats()
        total.add(self.retired)
        for c in self.connections:
            total.add(c.link.stats)
        return total

    def statistics(self) -> dict[str, Any]:
        return {"inbound": [c.link.statistics() for c in self.connections], "refused": self.refused}
