"""NetworkEnvironment over real sockets on 127.0.0.1: authentication, failures, lifecycle.

Channel behaviour (order, backpressure, no head-of-line blocking) is in
tests/contract/test_channels.py; this file covers what only the websocket transport has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
from typing import Any, Awaitable, Callable

import aiohttp
import pytest

from streamlet.errors import FatalError, RetryableError
from streamlet.runtime.taskmanager.network.channels import InputChannel, InputGate
from streamlet.runtime.taskmanager.network.elements import END_OF_PARTITION, EndOfPartition, RecordBatch
from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment
from streamlet.runtime.taskmanager.network.errors import (
    ChannelReleasedError, NetworkStoppedError, PeerLostError, PeerRefusedError, PeerUnreachableError,
)

JOB = "0123456789abcdef0123456789abcdef"
TOKEN = "s3cret-token-value"
TIMEOUT = 20.0


def run(body: Callable[..., Awaitable[None]], *envs: dict[str, Any]) -> None:
    """Start one NetworkEnvironment per kwargs dict, run ``body(*envs)``, stop them all."""
    async def main() -> None:
        started: list[NetworkEnvironment] = []
        try:
            for kw in envs:
                env = NetworkEnvironment(**kw)
                await env.start()
                started.append(env)
            async with asyncio.timeout(TIMEOUT):
                await body(*started)
        finally:
            for env in reversed(started):
                await env.stop()
    asyncio.run(main())


async def fill(out: Any, n: int) -> None:
    for i in range(n):
        await out.put(RecordBatch([i]))


async def read_until_end(gate: InputGate) -> list[Any]:
    got = []
    while True:
        _, e = await gate.next()
        if type(e) is EndOfPartition:
            return got
        got.extend(e.records)


def test_address_is_the_bound_port() -> None:
    async def body(env: NetworkEnvironment) -> None:
        host, port = env.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert env.statistics()["address"] == env.address
    run(body, {})


def test_matching_token_connects() -> None:
    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        gate = InputGate([rx.create_input_channel(JOB, "0.0.0")])
        out = tx.output_channel(JOB, "0.0.0", rx.address)
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(read_until_end(gate))
            await fill(out, 10)
            await out.put(END_OF_PARTITION)
        assert reader.result() == list(range(10))
    run(body, {"token": TOKEN}, {"token": TOKEN})


@pytest.mark.parametrize("sender_token", [None, "wrong"])
def test_wrong_or_missing_token_is_refused_with_a_clear_error(sender_token: str | None,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        rx.create_input_channel(JOB, "0.0.0")
        out = tx.output_channel(JOB, "0.0.0", rx.address)
        with pytest.raises(PeerRefusedError, match="wrong or missing token") as info:
            await out.put(RecordBatch([1]))
        assert isinstance(info.value, FatalError)
        assert rx.address in str(info.value)
        assert rx.statistics()["refused_connections"] == 1  # refused once, not retried
    run(body, {"token": TOKEN}, {"token": sender_token, "connect_timeout": 5.0})
    assert TOKEN not in caplog.text
    assert "refused data connection" in caplog.text


def test_handshake_without_protocol_version_is_refused() -> None:
    async def body(rx: NetworkEnvironment) -> None:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await s.ws_connect(f"http://{rx.address}/data")
        assert info.value.status == 400
    run(body, {})


def test_peer_that_stops_makes_a_waiting_put_raise() -> None:
    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        rx.create_input_channel(JOB, "0.0.0")
        out = tx.output_channel(JOB, "0.0.0", rx.address)
        await fill(out, rx.capacity)
        waiting = asyncio.create_task(out.put(RecordBatch(["no credit"])))
        try:
            await rx.stop()
            with pytest.raises(PeerLostError, match=rx.address) as info:
                await waiting
        finally:
            waiting.cancel()
        assert isinstance(info.value, RetryableError)
        with pytest.raises(PeerLostError):
            await out.put(RecordBatch([1]))
    run(body, {}, {})


def test_peer_process_killed_makes_put_raise_and_a_new_peer_works() -> None:
    script = textwrap.dedent("""
        import asyncio, sys
        from streamlet.runtime.taskmanager.network.environment import NetworkEnvironment
        async def main():
            env = NetworkEnvironment()
            await env.start()
            env.create_input_channel(sys.argv[1], "0.0.0")
            print(env.address, flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, JOB], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address, "receiver process did not start"

        async def body(tx: NetworkEnvironment, rx2: NetworkEnvironment) -> None:
            out = tx.output_channel(JOB, "0.0.0", address)
            await fill(out, 4)
            waiting = asyncio.create_task(out.put(RecordBatch(["blocked"])))
            try:
                os.kill(proc.pid, signal.SIGKILL)
                with pytest.raises(PeerLostError, match=address):
                    await waiting
            finally:
                waiting.cancel()
            # the next attempt's channels to another peer are unaffected
            gate = InputGate([rx2.create_input_channel(JOB, "0.0.1")])
            out2 = tx.output_channel(JOB, "0.0.1", rx2.address)
            await fill(out2, 3)
            await out2.put(END_OF_PARTITION)
            assert await read_until_end(gate) == [0, 1, 2]
        run(body, {}, {})
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_reconnects_to_a_peer_after_losing_it() -> None:
    async def body(tx: NetworkEnvironment) -> None:
        rx = NetworkEnvironment()
        await rx.start()
        try:
            rx.create_input_channel(JOB, "0.0.0")
            out = tx.output_channel(JOB, "0.0.0", rx.address)
            await fill(out, 1)
            port = int(rx.address.rsplit(":", 1)[1])
        finally:
            await rx.stop()
        with pytest.raises(PeerLostError):
            await fill(out, 10)  # raises once the loss is seen
        rx2 = NetworkEnvironment(port=port)  # the peer comes back on the same address
        await rx2.start()
        try:
            gate = InputGate([rx2.create_input_channel(JOB, "0.0.0")])
            out = tx.output_channel(JOB, "0.0.0", rx2.address)  # the new attempt's channel
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(read_until_end(gate))
                await fill(out, 9)
                await out.put(END_OF_PARTITION)
            assert reader.result() == list(range(9))
        finally:
            await rx2.stop()
    run(body, {})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_peer_fails_after_the_connect_timeout() -> None:
    async def body(tx: NetworkEnvironment) -> None:
        address = f"127.0.0.1:{_free_port()}"
        out = tx.output_channel(JOB, "0.0.0", address)
        with pytest.raises(PeerUnreachableError, match=address) as info:
            await out.put(RecordBatch([1]))
        assert isinstance(info.value, RetryableError)
        assert "within 0.3s" in str(info.value)
    run(body, {"connect_timeout": 0.3})


def test_stop_wakes_a_waiting_put() -> None:
    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        out = tx.output_channel(JOB, "not.registered.anywhere", rx.address)
        waiting = asyncio.create_task(out.put(RecordBatch([1])))
        try:
            await tx.stop()
            with pytest.raises(NetworkStoppedError):
                await waiting
        finally:
            waiting.cancel()
        with pytest.raises(NetworkStoppedError):
            tx.output_channel(JOB, "0.0.1", rx.address)
    run(body, {}, {})


def test_unregister_job_releases_output_channels_and_drops_input_channels() -> None:
    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        inbox = rx.create_input_channel(JOB, "0.0.0")
        out = tx.output_channel(JOB, "0.0.0", rx.address)
        await fill(out, rx.capacity)
        waiting = asyncio.create_task(out.put(RecordBatch([1])))
        try:
            tx.unregister_job(JOB)
            with pytest.raises(ChannelReleasedError):
                await waiting
        finally:
            waiting.cancel()
        rx.unregister_job(JOB)
        assert inbox.on_consumed is None
        st = rx.statistics()
        assert (st["input_channels"], st["pending_opens"], tx.statistics()["output_channels"]) == (0, 0, 0)
    run(body, {}, {})


def test_two_environments_send_to_each_other_and_count_traffic() -> None:
    async def body(a: NetworkEnvironment, b: NetworkEnvironment) -> None:
        gate_a = InputGate([a.create_input_channel(JOB, "1.0.0")])
        gate_b = InputGate([b.create_input_channel(JOB, "0.0.0")])
        a_to_b = a.output_channel(JOB, "0.0.0", b.address)
        b_to_a = b.output_channel(JOB, "1.0.0", a.address)

        async def send(out: Any, n: int) -> None:
            await fill(out, n)
            await out.put(END_OF_PARTITION)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(send(a_to_b, 50))
            tg.create_task(send(b_to_a, 30))
            got_b = tg.create_task(read_until_end(gate_b))
            got_a = tg.create_task(read_until_end(gate_a))
        assert got_b.result() == list(range(50)) and got_a.result() == list(range(30))
        st = a.statistics()
        assert list(st["peers"]) == [b.address]
        assert st["peers"][b.address]["state"] == "connected"
        assert st["outbound"]["messages_sent"] == 52  # one open, 50 batches, one end of partition
        assert st["frames_sent"] > 0 and st["bytes_received"] > 0
        assert st["inbound_connections"][0]["peer"] == b.address
    run(body, {}, {})


def test_invalid_peer_address_is_rejected() -> None:
    async def body(tx: NetworkEnvironment) -> None:
        with pytest.raises(ValueError, match="host:port"):
            tx.output_channel(JOB, "0.0.0", "no-port")
    run(body, {})


def test_input_channel_capacity_is_the_credit() -> None:
    async def body(rx: NetworkEnvironment, tx: NetworkEnvironment) -> None:
        inbox = InputChannel("0.0.0", 2)
        rx.register_input_channel(JOB, inbox)
        out = tx.output_channel(JOB, "0.0.0", rx.address)
        await fill(out, 2)
        assert not out.has_space()
        assert out.credit == 0
    run(body, {}, {"capacity": 9})
