"""`Together`: requests made at about the same time, served in one call; a failure for many is
served again one by one, so that each caller hears of its own."""

from __future__ import annotations

import asyncio

import pytest

from samtal.waits import Together, first_of


def test_requests_made_at_once_are_served_in_one_call_and_in_order() -> None:
    calls: list[list[int]] = []

    async def serve(keys: list[int]) -> list[int]:
        calls.append(keys)
        await asyncio.sleep(0)
        return [key * 10 for key in keys]

    async def run() -> list[int]:
        together = Together(serve, 4)
        return list(await asyncio.gather(*(together(n) for n in range(10))))

    assert asyncio.run(run()) == [n * 10 for n in range(10)]
    assert calls == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # at most `most` a call


def test_a_failing_request_fails_alone() -> None:
    calls: list[list[str]] = []

    async def serve(keys: list[str]) -> list[str]:
        calls.append(keys)
        if "bad" in keys:
            raise ValueError("bad key")
        return [key.upper() for key in keys]

    async def run() -> list[object]:
        together = Together(serve, 10)
        asks = [together(key) for key in ("a", "bad", "c")]
        return list(await asyncio.gather(*asks, return_exceptions=True))

    got = asyncio.run(run())
    assert got[0] == "A" and got[2] == "C"
    assert isinstance(got[1], ValueError)
    assert calls == [["a", "bad", "c"], ["a"], ["bad"], ["c"]]


def test_a_cancelled_caller_is_not_served_and_closing_cancels_the_rest() -> None:
    served: list[list[int]] = []
    release = asyncio.Event()

    async def serve(keys: list[int]) -> list[int]:
        served.append(keys)
        await release.wait()
        return keys

    async def run() -> None:
        together = Together(serve, 10)
        first = asyncio.ensure_future(together(1))
        await asyncio.sleep(0.01)  # 1 is being served
        gone = asyncio.ensure_future(together(2))
        waiting = asyncio.ensure_future(together(3))
        await asyncio.sleep(0.01)
        gone.cancel()
        release.set()
        assert await first == 1
        assert await waiting == 3
        assert served == [[1], [3]]  # 2 was cancelled before its turn
        release.clear()
        stuck = asyncio.ensure_future(together(4))
        await asyncio.sleep(0.01)
        await together.close()
        with pytest.raises(asyncio.CancelledError):
            await stuck

    asyncio.run(run())


def test_first_of_returns_at_the_first_event_or_the_timeout() -> None:
    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        one, two = asyncio.Event(), asyncio.Event()
        loop.call_later(0.05, two.set)
        began = loop.time()
        await first_of(one, two, timeout=5)
        woken = loop.time() - began
        began = loop.time()
        await first_of(asyncio.Event(), timeout=0.05)
        return woken, loop.time() - began

    woken, timed_out = asyncio.run(run())
    assert woken < 1 and 0.04 < timed_out < 1
