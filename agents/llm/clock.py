"""Time as a dependency: the managed client reads `now()` and awaits `sleep()` through a Clock.

Production uses `SystemClock` (the event loop's monotonic clock). Tests inject `VirtualClock`,
whose `sleep` returns when the test (or its autojump driver) advances virtual time, so rate
limits and back-off are tested exactly and instantly, without real sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    """Monotonic seconds and a cancellable sleep."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The running loop's monotonic clock and `asyncio.sleep`."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class VirtualClock:
    """A clock that only moves when told to.

    `sleep(d)` parks the caller until virtual time reaches `now + d`. `advance(d)` moves time and
    wakes every sleeper whose deadline passed, in deadline order. `autojump()` (an async context
    manager) runs a driver task that, whenever the loop has settled, jumps straight to the next
    deadline — like trio's autojump clock: code that sleeps an hour finishes instantly.
    `sleeps` records every requested duration (tests assert that back-off honoured Retry-After).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones are pruned lazily)."""
        return sum(1 for _, _, f in self._heap if not f.done())

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers whose deadline has come."""
        self._advance_to(self._now + seconds)

    def _advance_to(self, t: float) -> None:
        self._now = max(self._now, t)
        while self._heap and self._heap[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._heap)
            if not fut.done():
                fut.set_result(None)

    def _next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    @asynccontextmanager
    async def autojump(self, settle_iterations: int = 50) -> AsyncIterator[None]:
        """Within the block, jump to the next deadline whenever nothing else can run.

        "Nothing else can run" is approximated by yielding to the loop `settle_iterations`
        times: enough for in-memory code (scripted transports); not meant for real I/O.
        """

        async def driver() -> None:
            while True:
                for _ in range(settle_iterations):
                    await asyncio.sleep(0)
                deadline = self._next_deadline()
                if deadline is not None:
                    self._advance_to(deadline)

        task = asyncio.create_task(driver())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
