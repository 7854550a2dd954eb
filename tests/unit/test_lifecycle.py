"""streamlet.lifecycle: children stop in reverse order of their start, every stop runs even when
one raises, owned tasks end in their turn, and a crashed background task is not silent."""

from __future__ import annotations

import asyncio

import pytest

from streamlet.lifecycle import Lifecycle


def test_children_stop_in_reverse_and_a_raising_stop_skips_nothing() -> None:
    order: list[str] = []

    async def start(name: str) -> str:
        order.append(f"start {name}")
        return name

    def stop(name: str, fail: bool = False) -> object:
        async def go() -> None:
            order.append(f"stop {name}")
            if fail:
                raise RuntimeError(f"{name} would not stop")
        return go

    async def main() -> None:
        # every stop runs, in reverse order; the first error raised (d's, it stops first) comes out
        with pytest.raises(RuntimeError, match="d would not stop"):
            async with Lifecycle("test") as lc:
                assert await lc.start("a", start("a"), stop("a")) == "a"
                await lc.start("b", start("b"), stop("b", fail=True))
                lc.on_stop("c", lambda: order.append("stop c"))
                await lc.start("d", start("d"), stop("d", fail=True))

    asyncio.run(main())
    assert order == ["start a", "start b", "start d", "stop d", "stop c", "stop b", "stop a"]


def test_the_first_error_in_stop_order_is_raised_after_every_stop_ran() -> None:
    order: list[str] = []

    async def main() -> None:
        lc = Lifecycle("test")
        lc.on_stop("a", lambda: order.append("a"))

        def bad() -> None:
            order.append("b")
            raise ValueError("b failed")

        lc.on_stop("b", bad)
        lc.on_stop("c", lambda: order.append("c"))
        with pytest.raises(ValueError, match="b failed"):
            await lc.aclose()

    asyncio.run(main())
    assert order == ["c", "b", "a"]


def test_a_failed_start_registers_no_stop() -> None:
    stopped: list[str] = []

    async def boom() -> None:
        raise OSError("port taken")

    async def main() -> None:
        with pytest.raises(OSError):
            async with Lifecycle("test") as lc:
                lc.on_stop("first", lambda: stopped.append("first"))
                await lc.start("server", boom(), lambda: stopped.append("server"))

    asyncio.run(main())
    assert stopped == ["first"]


def test_owned_tasks_end_in_their_turn_and_a_crash_ends_run_until() -> None:
    events: list[str] = []

    async def main() -> None:
        stop_loop = asyncio.Event()

        async def service() -> None:
            await stop_loop.wait()
            events.append("service ended by itself")

        async def crasher() -> None:
            await asyncio.sleep(0)
            raise RuntimeError("loop crashed")

        with pytest.raises(RuntimeError, match="loop crashed"):
            async with Lifecycle("test") as lc:
                lc.spawn(service(), "service", stop=stop_loop.set)
                lc.on_stop("after service", lambda: events.append("stopped what started after it"))
                lc.spawn(crasher(), "crasher")
                await lc.run_until(asyncio.Event())  # never set: only the crash ends it

    asyncio.run(main())
    assert events == ["stopped what started after it", "service ended by itself"]
