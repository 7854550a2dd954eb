"""TaskManagerProcess sessions against a fake RPC connection (no sockets, ManualClock)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streamlet import config as cfg
from streamlet.clock import ManualClock
from streamlet.ids import new_id
from streamlet.rpc.messages import HeartbeatAck, Message, RegisterTaskManager, RegistrationAck
from streamlet.runtime.taskmanager.process import TaskManagerProcess


class _FakeConnection:
    """Acknowledges registration and heartbeats; its read loop fails once ``fail`` is set."""

    def __init__(self) -> None:
        self.fence: str | None = None
        self.fail = asyncio.Event()
        self.closed = False

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        if isinstance(message, RegisterTaskManager):
            return RegistrationAck(new_id(), new_id(), 1.0, 5.0)
        return HeartbeatAck()

    async def run(self) -> None:
        await self.fail.wait()
        raise RuntimeError("the socket broke in an unexpected way")

    async def close(self) -> None:
        self.closed = True


class _IdleExecutor:
    def __init__(self) -> None:
        from streamlet.runtime.taskmanager.slots import SlotTable

        self.updates_ready = asyncio.Event()
        self.checkpoint_reports_ready = asyncio.Event()
        self.slots = SlotTable(1)

    def take_updates(self) -> list[dict[str, Any]]:
        return []

    def take_checkpoint_reports(self) -> list[Any]:
        return []

    def sample_metrics(self) -> list[dict[str, Any]]:
        return []


def test_a_failed_rpc_reader_ends_the_session_as_a_lost_connection() -> None:
    async def main() -> None:
        tm = TaskManagerProcess(cfg.load(env={}), "127.0.0.1:1", slots=1, clock=ManualClock())
        tm.network = SimpleNamespace(address="127.0.0.1:2")
        conn = _FakeConnection()
        session = asyncio.create_task(tm._session(conn, _IdleExecutor()))  # type: ignore[arg-type]
        await asyncio.wait_for(tm.registered.wait(), 5)
        conn.fail.set()
        assert await asyncio.wait_for(session, 5) is True  # returns (the caller reconnects), no crash
        assert conn.closed

    asyncio.run(main())
