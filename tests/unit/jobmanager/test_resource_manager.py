"""ResourceManager: registration, slot pool, heartbeat loss (ManualClock, no sleeps)."""

from __future__ import annotations

import asyncio

from streamlet.clock import ManualClock
from streamlet.rpc.messages import RegisterTaskManager, RegistrationAck, RegistrationRefused
from streamlet.runtime.jobmanager.resource_manager import ResourceManager
from streamlet.testing.fakes import TestingTaskManagerGateway
from tests.unit.jobmanager.helpers import register, settle


def test_register_ack_and_refusal() -> None:
    async def main() -> None:
        rm = ResourceManager(ManualClock(), 1.0, 5.0)
        ack = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), TestingTaskManagerGateway("tm1"))
        assert isinstance(ack, RegistrationAck)
        assert rm.is_registered("tm1", ack.registration_id)
        refused = rm.register(RegisterTaskManager("tm2", 0, "127.0.0.1:2"), TestingTaskManagerGateway("tm2"))
        assert isinstance(refused, RegistrationRefused) and "at least one slot" in refused.reason
        assert rm.slots_total == 2 and rm.slots_free == 2

    asyncio.run(main())


def test_re_registration_counts_the_old_one_as_lost() -> None:
    async def main() -> None:
        rm = ResourceManager(ManualClock(), 1.0, 5.0)
        lost: list[tuple[str, str]] = []
        rm.on_task_manager_lost = lambda tm, why: lost.append((tm, why))
        first = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), TestingTaskManagerGateway("tm1"))
        rm.request_slots("job", 2)
        second = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), TestingTaskManagerGateway("tm1"))
        assert isinstance(first, RegistrationAck) and isinstance(second, RegistrationAck)
        assert lost and lost[0][0] == "tm1" and "registered again" in lost[0][1]
        assert not rm.is_registered("tm1", first.registration_id)
        assert rm.slots_free == 2  # the old allocations went with the old registration

    asyncio.run(main())


def test_slots_spread_over_taskmanagers_or_fill_one() -> None:
    async def main() -> None:
        for spread, expected in ((True, {"t1": 2, "t2": 2}), (False, {"t1": 3, "t2": 1})):
            rm = ResourceManager(ManualClock(), 1.0, 5.0, spread_out=spread)
            register(rm, 3, "t1")
            register(rm, 3, "t2")
            slots = await rm.request_slots("job", 4)
            per_tm: dict[str, int] = {}
            for s in slots:
                per_tm[s.task_manager_id] = per_tm.get(s.task_manager_id, 0) + 1
            assert per_tm == expected
            assert len({(s.task_manager_id, s.slot_index) for s in slots}) == 4

    asyncio.run(main())


def test_waiting_request_served_when_a_taskmanager_joins_or_slots_free() -> None:
    async def main() -> None:
        rm = ResourceManager(ManualClock(), 1.0, 5.0)
        register(rm, 2, "t1")
        first = rm.request_slots("big", 3)
        assert not first.done()
        assert "waiting for 3 free slot(s)" in (rm.pending_reason("big") or "")
        small = rm.request_slots("small", 2)  # first fit: a later, smaller request is served
        assert small.done() and rm.slots_free == 0
        register(rm, 2, "t2")
        assert not first.done()  # 2 free, 3 needed
        assert rm.release_slots("small") == 2
        assert first.done() and len(first.result()) == 3
        assert rm.pending_reason("big") is None
        rm.release_slots("big")
        assert rm.slots_free == 4

    asyncio.run(main())


def test_cancelled_request_is_withdrawn() -> None:
    async def main() -> None:
        rm = ResourceManager(ManualClock(), 1.0, 5.0)
        fut = rm.request_slots("job", 1)
        rm.cancel_request("job")
        assert fut.cancelled()
        register(rm, 1)
        assert rm.slots_free == 1

    asyncio.run(main())


def test_heartbeat_timeout_loses_the_taskmanager() -> None:
    async def main() -> None:
        clock = ManualClock()
        rm = ResourceManager(clock, 1.0, 3.0)
        lost: list[str] = []
        rm.on_task_manager_lost = lambda tm, why: lost.append(why)
        register(rm, 2, "quiet")
        alive = TestingTaskManagerGateway("alive")
        ack = rm.register(RegisterTaskManager("alive", 2, "127.0.0.1:9"), alive)
        assert isinstance(ack, RegistrationAck)
        monitor = asyncio.create_task(rm.run())
        try:
            for _ in range(5):
                await clock.advance(1.0)
                assert rm.heartbeat("alive", ack.registration_id)
            await settle()
            assert rm.task_manager_ids() == ["alive"]
            assert len(lost) == 1 and "quiet" in lost[0] and "no heartbeat" in lost[0]
            assert rm.slots_total == 2
            assert not rm.heartbeat("quiet", "whatever")
        finally:
            monitor.cancel()

    asyncio.run(main())


def test_a_closed_connection_loses_the_taskmanager_at_once() -> None:
    async def main() -> None:
        rm = ResourceManager(ManualClock(), 1.0, 5.0)
        lost: list[tuple[str, str]] = []
        rm.on_task_manager_lost = lambda tm, why: lost.append((tm, why))
        old = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), TestingTaskManagerGateway("tm1"))
        new = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), TestingTaskManagerGateway("tm1"))
        assert isinstance(old, RegistrationAck) and isinstance(new, RegistrationAck)
        lost.clear()
        rm.disconnected("tm1", old.registration_id)  # the connection of an older registration: nothing
        assert not lost and rm.task_manager_ids() == ["tm1"]
        rm.request_slots("job", 2)
        rm.disconnected("tm1", new.registration_id)  # no heartbeat timeout needed
        assert lost == [("tm1", "taskmanager tm1 (127.0.0.1:1) lost: its rpc connection closed")]
        assert rm.task_manager_ids() == [] and rm.slots_total == 0 and rm.gateway("tm1") is None

    asyncio.run(main())


def test_heartbeat_slot_report_reconciles_the_pool() -> None:
    async def main() -> None:
        clock = ManualClock()
        rm = ResourceManager(clock, 1.0, 5.0)
        monitor = asyncio.create_task(rm.run())  # owns the ReleaseJob calls
        await settle()
        gw = TestingTaskManagerGateway("tm1")
        gate = asyncio.Event()

        async def slow_release(job_id: str) -> None:
            await gate.wait()

        gw.release_hook = slow_release
        ack = rm.register(RegisterTaskManager("tm1", 2, "127.0.0.1:1"), gw)
        assert isinstance(ack, RegistrationAck)
        rm.request_slots("j1", 2)
        rm.release_slots("j1", unconfirmed={"tm1"})  # its ReleaseJob failed: the slots stay held
        assert rm.slots_free == 0
        # the TaskManager still runs j1 in slot 0 and an unknown job in slot 1: neither is offered,
        # and each job is told to release
        report = [{"index": 0, "state": "ALLOCATED", "job_id": "j1"},
                  {"index": 1, "state": "ALLOCATED", "job_id": "ghost"}]
        assert rm.heartbeat("tm1", ack.registration_id, report)
        waiting = rm.request_slots("j2", 1)
        await settle()
        assert rm.slots_free == 0 and not waiting.done()
        assert sorted(gw.released) == ["ghost", "j1"]
        rm.heartbeat("tm1", ack.registration_id, report)  # no second ReleaseJob while one is in flight
        await settle()
        assert len(gw.released) == 2
        gate.set()  # both released: the slots are offered again and the waiting request is served
        await settle()
        assert waiting.done() and rm.slots_free == 1
        monitor.cancel()

    asyncio.run(main())
