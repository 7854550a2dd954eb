"""RPC over a real websocket on loopback: request/response, errors, fencing, timeouts, auth."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import aiohttp
import pytest

from streamlet.clock import ManualClock
from streamlet.rpc.client import Backoff, connect
from streamlet.rpc.endpoint import RpcConnection, RpcEndpoint, rpc
from streamlet.rpc.errors import ConnectionClosedError, RegistrationRefusedError, RemoteError, RpcError, RpcTimeoutError
from streamlet.rpc.messages import Ack, CancelJob, Heartbeat, HeartbeatAck, Message, ReleaseJob
from streamlet.rpc.server import RpcServer


class Server(RpcEndpoint):
    """Answers heartbeats, fails CancelJob, answers ReleaseJob only once let through; fenced after the
    first heartbeat."""

    def __init__(self) -> None:
        self.fence = "not registered yet"
        self.disconnected = asyncio.Event()
        self.release_gate = asyncio.Event()

    def check_fence(self, fence: str | None, message: Message) -> str | None:
        if isinstance(message, Heartbeat) or fence == self.fence:
            return None
        return "stale registration; register again"

    @rpc(Heartbeat)
    async def on_heartbeat(self, msg: Heartbeat) -> Message:
        self.fence = msg.task_manager_id
        return HeartbeatAck()

    @rpc(CancelJob)
    async def on_cancel(self, msg: CancelJob) -> Message:
        raise RpcError(f"no job {msg.job_id}")

    @rpc(ReleaseJob)
    async def on_release(self, msg: ReleaseJob) -> Message:
        await self.release_gate.wait()
        return Ack()

    def on_disconnect(self) -> None:
        self.disconnected.set()


def run(body: Callable[[RpcConnection, Server], Awaitable[None]], token: str | None = None,
        client_token: str | None = None) -> None:
    async def main() -> None:
        endpoint = Server()
        server = RpcServer("127.0.0.1", 0, lambda conn: endpoint, token, 5.0, None, 1 << 20)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                ws = await connect(session, f"127.0.0.1:{server.port}", client_token, 5.0, 1 << 20)
                conn = RpcConnection(ws, RpcEndpoint(), "server", 0.5)
                reader = asyncio.create_task(conn.run())
                try:
                    await body(conn, endpoint)
                finally:
                    await conn.close()
                    await reader
        finally:
            await server.stop()

    asyncio.run(main())


def test_request_response_errors_and_fences() -> None:
    async def body(conn: RpcConnection, server: Server) -> None:
        with pytest.raises(RemoteError, match="stale registration"):
            await conn.request(CancelJob("j"))
        assert isinstance(await conn.request(Heartbeat("tm-1")), HeartbeatAck)
        conn.fence = "tm-1"
        with pytest.raises(RemoteError, match="no job j") as info:
            await conn.request(CancelJob("j"))
        assert info.value.retryable
        with pytest.raises(RpcTimeoutError, match="ReleaseJob to server got no response within 0.5s"):
            await conn.request(ReleaseJob("j"))
        server.release_gate.set()  # the late answer finds no pending request and is dropped
        assert isinstance(await conn.request(Heartbeat("tm-1")), HeartbeatAck)
        await conn.close()
        with pytest.raises(ConnectionClosedError):
            await conn.request(Heartbeat("tm-1"))
        await asyncio.wait_for(server.disconnected.wait(), 5)

    run(body)


def test_token_is_required_when_set() -> None:
    async def body(conn: RpcConnection, server: Server) -> None:
        assert isinstance(await conn.request(Heartbeat("tm")), HeartbeatAck)

    run(body, token="t0k", client_token="t0k")
    with pytest.raises(RegistrationRefusedError, match="wrong cluster token"):
        run(body, token="t0k", client_token="wrong")
    with pytest.raises(RegistrationRefusedError):
        run(body, token="t0k", client_token=None)


def test_unreachable_jobmanager_is_a_retryable_error() -> None:
    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(RpcError, match="cannot reach jobmanager"):
                await connect(session, "127.0.0.1:1", None, 2.0, 1 << 20)

    asyncio.run(main())


def test_backoff_doubles_up_to_the_cap_on_the_clock() -> None:
    async def main() -> None:
        clock = ManualClock()
        b = Backoff(clock, max_delay=0.5)
        waits: list[Any] = []
        for _ in range(4):
            t = asyncio.create_task(b.wait())
            await asyncio.sleep(0)
            await clock.advance(1)
            waits.append(await t)
        assert waits == [0.1, 0.2, 0.4, 0.5]
        b.reset()
        assert b.delay == 0.1

    asyncio.run(main())


class _BrokenTransport:
    """Delivers queued frames; every send fails as aiohttp does on a socket the peer reset."""

    closed = False

    def __init__(self) -> None:
        self.frames: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()

    async def send_bytes(self, data: bytes) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    async def receive(self, timeout: float | None = None) -> aiohttp.WSMessage:
        return await self.frames.get()

    async def close(self) -> None:
        self.closed = True


def test_a_reply_to_a_vanished_peer_ends_the_read_loop_quietly() -> None:
    async def main() -> None:
        from streamlet.rpc import codec

        endpoint = Server()
        transport = _BrokenTransport()
        conn = RpcConnection(transport, endpoint, "jm", 1.0)
        transport.frames.put_nowait(aiohttp.WSMessage(aiohttp.WSMsgType.BINARY,
                                                      codec.encode(Heartbeat("tm"), 1), None))
        await asyncio.wait_for(conn.run(), 5)  # returns instead of raising ConnectionClosedError
        assert conn.closed and endpoint.disconnected.is_set()

    asyncio.run(main())
