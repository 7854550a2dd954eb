"""RPC endpoints and connections.

An :class:`RpcEndpoint` is the receiving side of a gateway: its methods marked ``@rpc(Type)``
handle incoming requests of that message type and return the response message.  An
:class:`RpcConnection` wraps one websocket and does both directions over it:

1. :meth:`RpcConnection.request` sends a request with a fresh id and waits (with a timeout) for
   the frame whose ``re`` is that id;
2. :meth:`RpcConnection.run` reads frames until the socket closes: responses complete their
   pending request, requests go to the endpoint's handler and its answer is sent back.  A frame
   that does not decode (not JSON, unknown type, a field of the wrong type) closes the
   connection; so does one larger than the ``max_msg_size`` of the websocket
   (``rpc.max-message-size``), and silence longer than the idle timeout (a peer stuck mid-frame).

Requests are handled **one at a time, in arrival order**, on the reading task.  That keeps the
order of state reports (RUNNING before FINISHED) and makes each handler run alone, as the
single-threaded endpoint model asks; the price is a rule: a handler must never await a request
on its own connection (the response could not be read while the handler runs).

Fencing: after registration a TaskManager stamps every frame with its registration id; the
endpoint's :meth:`RpcEndpoint.check_fence` rejects frames of a stale registration.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, Awaitable, Callable, Protocol, TypeVar

import aiohttp

from streamlet.errors import RetryableError
from streamlet.rpc import codec
from streamlet.rpc.errors import CodecError, ConnectionClosedError, RemoteError, RpcTimeoutError
from streamlet.rpc.messages import Error, Message

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
Handler = Callable[[Any], Awaitable[Message]]


def rpc(message_type: type[Message]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark an async method as the handler of ``message_type`` requests."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__rpc_message__ = message_type.TYPE  # type: ignore[attr-defined]
        return fn

    return mark


class RpcEndpoint:
    """Base of a request-handling side: subclasses mark handlers with :func:`rpc`.

    Example::

        class Echo(RpcEndpoint):
            @rpc(Heartbeat)
            async def on_heartbeat(self, msg: Heartbeat) -> Message:
                return HeartbeatAck()
    """

    def rpc_handlers(self) -> dict[str, Handler]:
        """Message type name -> bound handler, collected from marked methods."""
        out: dict[str, Handler] = {}
        for name in dir(type(self)):
            fn = getattr(type(self), name, None)
            kind = getattr(fn, "__rpc_message__", None)
            if kind is not None:
                out[kind] = getattr(self, name)
        return out

    def check_fence(self, fence: str | None, message: Message) -> str | None:
        """None when a frame with ``fence`` may be handled, else the reason to reject it."""
        return None

    def on_disconnect(self) -> None:
        """Called once when the connection closed (no await: just record it)."""


class Transport(Protocol):
    """What a connection needs of a websocket (aiohttp's client and server sockets fit)."""

    closed: bool

    async def send_bytes(self, data: bytes) -> None: ...

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage: ...

    async def close(self) -> Any: ...


class RpcConnection:
    """Both directions of the RPC over one websocket (see the module docstring)."""

    def __init__(self, transport: Transport, endpoint: RpcEndpoint, name: str, request_timeout: float,
                 idle_timeout: float | None = None) -> None:
        self.transport = transport
        self.endpoint = endpoint
        self.name = name
        self.request_timeout = request_timeout
        #: close when nothing arrives this long (peers heartbeat, so silence means a dead peer)
        self.idle_timeout = idle_timeout
        #: stamped on every outgoing frame (a TaskManager's registration id)
        self.fence: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._handlers = endpoint.rpc_handlers()
        self._closed = False

    def bind(self, endpoint: RpcEndpoint) -> None:
        """Route incoming requests to ``endpoint`` (the server binds it after the upgrade)."""
        self.endpoint = endpoint
        self._handlers = endpoint.rpc_handlers()

    @property
    def closed(self) -> bool:
        return self._closed or self.transport.closed

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send ``message`` and return the peer's response.

        Raises :class:`RpcTimeoutError`, :class:`ConnectionClosedError`, or :class:`RemoteError`
        when the peer answered with an ``Error``.
        """
        if self.closed:
            raise ConnectionClosedError(f"rpc connection to {self.name} is closed; cannot send {message.TYPE}")
        rid = next(self._ids)
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        t = self.request_timeout if timeout is None else timeout
        try:
            # one deadline for the send and the answer: a peer that stops reading counts as silent
            async with asyncio.timeout(t):
                await self._send(codec.encode(message, rid, None, self.fence))
                response = await fut
        except TimeoutError:
            raise RpcTimeoutError(f"{message.TYPE} to {self.name} got no response within {t:g}s") from None
        finally:
            self._pending.pop(rid, None)
        if isinstance(response, Error):
            raise RemoteError(f"{self.name} failed {message.TYPE}: {response.message}", response.retryable)
        return response

    async def _send(self, frame: bytes) -> None:
        try:
            await self.transport.send_bytes(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
            # aiohttp raises ConnectionResetError or RuntimeError on a closing socket
            raise ConnectionClosedError(f"rpc connection to {self.name} broke: {exc}") from None

    async def run(self) -> None:
        """Read frames until the connection closes; then fail pending requests and notify the endpoint."""
        try:
            while True:
                try:
                    msg = await self.transport.receive(timeout=self.idle_timeout)
                except TimeoutError:
                    logger.warning("rpc connection to %s silent for %.1fs; closing it", self.name, self.idle_timeout)
                    break
                if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    if not await self._on_frame(msg.data):
                        break
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    logger.warning("rpc connection to %s failed: %s", self.name, msg.data)
                    break
                else:  # CLOSE, CLOSING, CLOSED
                    break
        finally:
            self._closed = True
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionClosedError(f"rpc connection to {self.name} closed"))
            self._pending.clear()
            try:
                await asyncio.shield(self.transport.close())
            except Exception:  # noqa: BLE001 - closing a broken socket may fail; it is closed either way
                pass
            self.endpoint.on_disconnect()

    async def _on_frame(self, frame: bytes | str) -> bool:
        """Handle one frame; False when the answer could not be sent (the connection is over)."""
        try:
            env = codec.decode(frame)
        except CodecError as exc:
            # a peer that sends garbage is broken or hostile: end this connection (and only it)
            logger.warning("closing the rpc connection to %s: %s", self.name, exc)
            return False
        if env.re is not None:
            fut = self._pending.get(env.re)
            if fut is not None and not fut.done():
                fut.set_result(env.message)
            return True
        reply = codec.encode(await self._handle(env), next(self._ids), env.id, self.fence)
        try:
            async with asyncio.timeout(self.request_timeout):
                await self._send(reply)
        except (ConnectionClosedError, TimeoutError) as exc:
            # the peer is gone (or stopped reading) while the handler ran: end the read loop,
            # and with it the connection, instead of crashing the owner of this task
            logger.warning("could not answer %s from %s: %s", env.message.TYPE, self.name,
                           exc if str(exc) else "the send timed out")
            return False
        return True

    async def _handle(self, env: codec.Envelope) -> Message:
        handler = self._handlers.get(env.message.TYPE)
        if handler is None:
            return Error(f"{env.message.TYPE} is not a request this side handles", False)
        reason = self.endpoint.check_fence(env.fence, env.message)
        if reason is not None:
            return Error(reason, True)
        try:
            return await handler(env.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller gets the reason instead of a dead connection
            logger.warning("%s handler failed for %s: %s", env.message.TYPE, self.name, exc,
                           exc_info=not isinstance(exc, RetryableError))
            return Error(f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc),
                         isinstance(exc, RetryableError))

    async def close(self) -> None:
        """Close the socket; :meth:`run` then returns."""
        self._closed = True
        try:
            await self.transport.close()
        except Exception:  # noqa: BLE001 - see run()
            pass
