"""Hostile peers on the RPC endpoint (JobManager) and the data endpoint (TaskManager), over real
loopback sockets: garbage, undecodable frames, oversized frames and a peer that stops in the
middle of a frame are each disconnected, and the cluster's own connections never notice (the
TaskManagers stay registered and a job with a remote exchange runs to the end afterwards)."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

import aiohttp

from streamlet.runtime.taskmanager.network.remote import PROTOCOL_HEADER, PROTOCOL_VERSION
from streamlet.testing.cluster import InProcessCluster
from tests.support.pipelines import write_jsonl, write_pipeline

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
JOB = """
name: exchange
mode: batch
parallelism: 2
sources: {{src: {{type: file, path: in.jsonl}}}}
transforms:
  per_key: {{input: src, key_by: k, aggregate: {{n: count}}}}
sinks: {{out: {{input: per_key, type: file, path: {out}}}}}
"""


async def upgrade(port: int, path: str, extra: str = "") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw socket that completed the websocket handshake (101) on ``path``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
    await writer.drain()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def masked_frame(payload: bytes, declared: int | None = None) -> bytes:
    """A client (masked) binary frame; ``declared`` overrides the length in the header."""
    n = len(payload) if declared is None else declared
    if n < 126:
        head = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float) -> None:
    """Read until the peer closes the socket (a close frame may come first)."""
    async with asyncio.timeout(timeout):
        while await reader.read(65536):
            pass


async def attack(port: int, path: str, extra: str, max_frame: int, idle: float) -> None:
    # 1. not HTTP at all
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01\x02\x00garbage\r\n\r\n" + os.urandom(512))
    await closed_by_peer(reader, 5)
    writer.close()
    # 2. a websocket whose frame is not the protocol (not JSON)
    reader, writer = await upgrade(port, path, extra)
    writer.write(masked_frame(b"\xff\xfenot json at all"))
    await closed_by_peer(reader, 5)
    writer.close()
    # 3. a broken websocket frame (reserved opcode, unmasked)
    reader, writer = await upgrade(port, path, extra)
    writer.write(b"\x8f\x05hello")
    await closed_by_peer(reader, 5)
    writer.close()
    # 4. a frame announcing more than the limit: refused on its header, before its payload
    reader, writer = await upgrade(port, path, extra)
    writer.write(masked_frame(b"", declared=max_frame + 1)[:14])
    await closed_by_peer(reader, 5)
    writer.close()
    # 5. a peer that stops in the middle of a frame: disconnected when it stays silent
    reader, writer = await upgrade(port, path, extra)
    writer.write(masked_frame(b"[" * 100, declared=4000)[:108])
    await closed_by_peer(reader, idle * 3 + 5)
    writer.close()


def test_hostile_peers_are_disconnected_and_the_cluster_carries_on(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"k": i % 11, "v": i} for i in range(2000)])
    pipeline = write_pipeline(tmp_path, JOB.format(out="out"), "job.yaml").read_text()

    async def main() -> None:
        async with InProcessCluster(taskmanagers=2, slots=1, **{"rpc.max-message-size": 1 << 20,
                                                                "taskmanager.network.max-frame-size": 1 << 20,
                                                                "heartbeat.timeout": "1s"}) as cluster:
            rm = cluster.jobmanager.resource_manager
            assert rm is not None
            registrations = {tm_id: r.registration_id for tm_id, r in rm._task_managers.items()}
            tm = cluster.taskmanagers[0]
            data_port = int(tm.network.address.rsplit(":", 1)[1])
            await asyncio.gather(
                attack(cluster.jobmanager.rpc_port, "/rpc", "", 1 << 20, 1.0),
                attack(data_port, "/data", f"{PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\n", 1 << 20, 1.0))
            # a well-formed websocket that sends an oversized (but complete) message is closed too
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"ws://127.0.0.1:{cluster.jobmanager.rpc_port}/rpc")
                await ws.send_bytes(b"x" * ((1 << 20) + 1))
                msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
                assert ws.close_code == 1009, ws.close_code
                await ws.close()
            # nobody else noticed: both taskmanagers are registered under their first registration,
            # and a job exchanging data between them runs to the end
            assert {tm_id: r.registration_id for tm_id, r in rm._task_managers.items()} == registrations
            assert len(registrations) == 2
            job = await cluster.submit_yaml(pipeline, base_dir=str(tmp_path))
            info = await cluster.wait(job)
            assert info.state == "FINISHED", cluster.dispatcher.job_exceptions(job).to_json()
            assert len({s.host for v in info.vertices for s in v.subtasks}) == 2

    asyncio.run(main())
    lines = [ln for f in (tmp_path / "out").glob("part-*") for ln in f.read_text().splitlines()]
    assert sorted(lines) == sorted(f'{{"k":{k},"n":{sum(1 for i in range(2000) if i % 11 == k)}}}' for k in range(11))
