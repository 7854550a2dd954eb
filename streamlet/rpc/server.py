"""The JobManager's RPC server: an aiohttp websocket endpoint at ``/rpc``.

Each accepted websocket becomes an :class:`~streamlet.rpc.endpoint.RpcConnection` whose
requests go to an endpoint made by ``endpoint_factory`` (one per connection, e.g. a TaskManager
session).  When ``security.auth.token`` is set, the upgrade needs ``Authorization: Bearer
<token>``; without it the answer is 401 with ``{"errors": [reason]}``, which the TaskManager
logs as its refusal.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Callable

from aiohttp import web

from streamlet.rpc.auth import bearer_ok
from streamlet.rpc.endpoint import RpcConnection, RpcEndpoint

logger = logging.getLogger(__name__)

RPC_PATH = "/rpc"
_CLOSE_TIMEOUT = 1.0
EndpointFactory = Callable[[RpcConnection], RpcEndpoint]


class RpcServer:
    """Serves ``/rpc`` on ``host:port`` (port 0 picks a free one; see :attr:`port`)."""

    def __init__(self, host: str, port: int, endpoint_factory: EndpointFactory, token: str | None,
                 request_timeout: float, idle_timeout: float | None, max_message_size: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.endpoint_factory = endpoint_factory
        self.token = token
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        #: mutual TLS (``security.ssl.internal.*``): only peers the truststore verifies get in
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._connections: set[RpcConnection] = set()
        self.port = port

    async def start(self) -> None:
        """Bind and serve; raises OSError when the port is taken."""
        app = web.Application()
        app.router.add_get(RPC_PATH, self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port, ssl_context=self.ssl_context)
        await self._site.start()
        server = self._site._server  # aiohttp keeps the asyncio server here
        if server is not None and server.sockets:  # type: ignore[union-attr]
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Close every connection, then the listener."""
        for conn in list(self._connections):
            await conn.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not bearer_ok(request.headers.get("Authorization"), self.token):
            peer = request.remote or "?"
            logger.warning("refused an rpc connection from %s: missing or wrong cluster token", peer)
            return web.json_response(
                {"errors": ["missing or wrong cluster token; set security.auth.token (or STREAMLET_TOKEN) "
                            "to the jobmanager's token"]}, status=401)
        # a short close handshake: a peer that is disconnected for misbehaving need not answer it
        ws = web.WebSocketResponse(max_msg_size=self.max_message_size, timeout=_CLOSE_TIMEOUT)
        await ws.prepare(request)
        conn = RpcConnection(ws, RpcEndpoint(), f"rpc peer {request.remote}", self.request_timeout,
                             self.idle_timeout)
        conn.bind(self.endpoint_factory(conn))
        self._connections.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            raise
        finally:
            self._connections.discard(conn)
        return ws
