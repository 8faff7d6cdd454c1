"""AdaptiveLimiter and RateWindow edge cases: cancellation never leaks or loses a slot."""

from __future__ import annotations

import asyncio

from agents.llm.clock import VirtualClock
from agents.llm.limits import AdaptiveLimiter, RateWindow


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    lim = AdaptiveLimiter(1, clock=VirtualClock())
    await lim.acquire()
    waiter = asyncio.create_task(lim.acquire())
    await settle()
    assert lim.waiting == 1
    waiter.cancel()
    await settle()
    assert (lim.waiting, lim.in_flight) == (0, 1)
    lim.release()
    assert lim.in_flight == 0


async def test_slot_granted_to_a_cancelled_waiter_is_passed_on() -> None:
    lim = AdaptiveLimiter(1, clock=VirtualClock())
    await lim.acquire()
    first = asyncio.create_task(lim.acquire())
    second = asyncio.create_task(lim.acquire())
    await settle()
    lim.release()  # grants `first`, which has not run yet
    first.cancel()
    await settle()
    assert second.done()
    assert lim.in_flight == 1
    assert lim.waiting == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    lim = AdaptiveLimiter(1, clock=VirtualClock(), adaptive=False)
    await lim.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await lim.acquire()
        order.append(i)
        lim.release()

    tasks = [asyncio.create_task(take(i)) for i in range(5)]
    await settle()
    lim.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_shrink_respects_minimum_and_interval() -> None:
    clock = VirtualClock()
    lim = AdaptiveLimiter(16, minimum=3, clock=clock)
    assert lim.shrink()
    assert not lim.shrink()  # within the interval: one burst counts once
    clock.advance(1.0)
    assert lim.shrink()
    clock.advance(1.0)
    lim.shrink()
    assert lim.limit == 3


async def test_rate_window_correction_frees_budget() -> None:
    clock = VirtualClock()
    window = RateWindow(100, clock=clock)
    grant = await window.acquire(90)
    window.correct(grant, 10)
    assert window.used() == 10
    await window.acquire(90)  # fits without waiting
    assert clock.now() == 0


async def test_limit_holds_after_a_shrink_then_climbs() -> None:
    clock = VirtualClock()
    lim = AdaptiveLimiter(8, clock=clock, hold_after_shrink_s=2.0)
    lim.shrink()
    for _ in range(20):
        lim.on_success()
    assert lim.limit == 4
    clock.advance(2.0)
    for _ in range(40):
        lim.on_success()
    assert lim.limit == 8
