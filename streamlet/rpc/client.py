"""Opening the RPC websocket to the JobManager, with reconnect backoff.

:func:`connect` opens one connection (presenting the cluster token) and raises
:class:`~streamlet.rpc.errors.RegistrationRefusedError` on 401, a retryable
:class:`~streamlet.rpc.errors.RpcError` when the JobManager is not reachable.
:class:`Backoff` spaces reconnect attempts: 0.1 s, doubling, at most ``max_delay``, on the
injected clock.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiohttp

from streamlet.clock import Clock
from streamlet.rpc.auth import bearer_header
from streamlet.rpc.errors import RegistrationRefusedError, RpcError, TlsHandshakeResetError
from streamlet.rpc.server import RPC_PATH
from streamlet.rpc.tls import describe_failure


#: seconds a websocket close handshake may take before the socket is just dropped
CLOSE_TIMEOUT = 1.0


def rpc_url(address: str, tls: bool = False) -> str:
    """``ws://host:port/rpc`` (``wss://`` with ``tls``) for ``host:port``; a full URL is kept as it is."""
    if address.startswith(("ws://", "wss://")):
        return address
    return f"{'wss' if tls else 'ws'}://{address}{RPC_PATH}"


async def connect(session: aiohttp.ClientSession, address: str, token: str | None, timeout: float,
                  max_message_size: int, ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientWebSocketResponse:
    """One websocket to the JobManager at ``address`` (``host:port``), over TLS with ``ssl_context``.

    A TLS failure that retrying cannot fix (an untrusted certificate, or this one refused) raises
    :class:`RegistrationRefusedError` with the reason and the key to fix.
    """
    url = rpc_url(address, tls=ssl_context is not None)
    try:
        async with asyncio.timeout(timeout):
            # a short close handshake: closing towards a peer that vanished (a cut link) must not
            # hold the caller for aiohttp's default 10 s
            return await session.ws_connect(url, headers=bearer_header(token), max_msg_size=max_message_size,
                                            autoping=True, ssl=ssl_context if ssl_context is not None else True,
                                            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT))
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 401:
            raise RegistrationRefusedError(
                f"jobmanager {address} refused the connection: missing or wrong cluster token; set "
                "security.auth.token (or STREAMLET_TOKEN) to the jobmanager's token") from None
        raise RpcError(f"jobmanager {address} answered the rpc upgrade with {exc.status}: {exc.message}") from None
    except TimeoutError:
        raise RpcError(f"jobmanager {address} did not answer within {timeout:g}s") from None
    except (aiohttp.ClientError, OSError) as exc:
        reason = describe_failure(exc, f"jobmanager {address}", "security.ssl.internal.truststore")
        if reason is not None:
            raise RegistrationRefusedError(reason) from None
        if ssl_context is not None and isinstance(getattr(exc, "os_error", None), ConnectionResetError):
            raise TlsHandshakeResetError(
                f"tls: jobmanager {address} closed the connection during the handshake: it does not trust this "
                "process's certificate; set security.ssl.internal.keystore to a certificate signed by the CA in "
                "the jobmanager's security.ssl.internal.truststore") from None
        raise RpcError(f"cannot reach jobmanager {address}: {exc}") from None


class Backoff:
    """Exponential backoff between attempts, reset after a success."""

    def __init__(self, clock: Clock, max_delay: float, initial: float = 0.1) -> None:
        self.clock = clock
        self.max_delay = max_delay
        self.initial = initial
        self.delay = initial

    async def wait(self, limit: float | None = None) -> float:
        """Sleep the current delay (at most ``limit``) on the clock, then double it (capped);
        returns the slept delay."""
        d = min(self.delay, self.max_delay, limit if limit is not None else self.max_delay)
        await self.clock.sleep(d)
        self.delay = min(self.delay * 2, self.max_delay)
        return d

    def reset(self) -> None:
        self.delay = self.initial


def session_kwargs() -> dict[str, Any]:
    """ClientSession options for RPC: no total timeout (the socket lives long; requests have their own)."""
    return {"timeout": aiohttp.ClientTimeout(total=None, sock_connect=10)}
