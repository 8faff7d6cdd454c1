"""The admission controls of a managed client: an adaptive concurrency cap and rate windows.

`AdaptiveLimiter` is a FIFO semaphore whose size moves, and only on evidence of load:

- it **decreases only on sustained overload**. The client reports each finished attempt that
  says something about load: a success (`on_success`) or an overload answer (`on_overload`:
  429, 503, 529). Outcomes are counted in epochs of `max(min_window, limit)` attempts; when
  overload answers reach `overload_fraction` (½) of an epoch, the limit is multiplied by
  `decrease_factor` (never below `minimum`, at most once per `shrink_interval_s`) and a new epoch
  starts. Attempts started before the last decrease are not counted: they went out under the old
  limit, so one burst of rejections counts once. Isolated 429s and 5xx — the random faults of a
  provider that has capacity — never move it (10 % of 429s would need 5 times their rate); a
  provider cap below ours does (its excess is answered 429 at once, so most attempts are);
- 5xx failures, timeouts and malformed bodies are not load signals: the client retries them and
  tells the limiter nothing; a 429 with Retry-After pauses its endpoint instead
  (`agents.llm.endpoints`);
- after a decrease it holds for `hold_after_shrink_s`, then each success adds `1/limit`, so it
  climbs back by about one slot per window of successes, up to the configured maximum.

Waiters block in `acquire()` in arrival order; cancellation while waiting is safe (the slot is
passed on). `shrink()` is the decrease itself, for callers with their own evidence.

`RateWindow` bounds a quantity (requests or tokens) over any sliding window of `window_s`
seconds. `acquire(amount)` blocks (FIFO, on the injected clock) until the amount fits; it returns
a `Grant` whose amount can be corrected once the real figure is known (tokens counted after the
call). An amount larger than the whole budget is admitted alone into an empty window rather than
blocking forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from agents.llm.clock import Clock

__all__ = ["AdaptiveLimiter", "Grant", "RateWindow"]


class AdaptiveLimiter:
    """A concurrency cap that decreases on sustained overload and recovers gradually."""

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        adaptive: bool = True,
        decrease_factor: float = 0.5,
        shrink_interval_s: float = 1.0,
        hold_after_shrink_s: float = 2.0,
        overload_fraction: float = 0.5,
        min_window: int = 8,
        clock: Clock,
    ) -> None:
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        self.adaptive = adaptive
        self._factor = decrease_factor
        self._interval = shrink_interval_s
        self._hold = hold_after_shrink_s
        self._fraction = overload_fraction
        self._min_window = min_window
        self._clock = clock
        self._limit = float(maximum)
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._last_shrink = float("-inf")
        self._epoch_outcomes = 0
        self._epoch_overloads = 0
        self.shrinks = 0
        self.overloads = 0
        """Overload answers reported (counted or not)."""
        self.peak_in_flight = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot (FIFO). Raises CancelledError if cancelled while waiting."""
        if self._in_flight < self.limit and not self._waiters:
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake()
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # we were granted a slot but are leaving: hand it on
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def _take(self) -> None:
        self._in_flight += 1
        if self._in_flight > self.peak_in_flight:
            self.peak_in_flight = self._in_flight

    def release(self) -> None:
        """Return a slot and wake waiters that now fit."""
        self._in_flight -= 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Grant slots to the oldest waiters while the limit allows (granted ones leave the
        queue at once, so waking is O(granted))."""
        waiters = self._waiters
        limit = self.limit
        while waiters and self._in_flight < limit:
            fut = waiters.popleft()
            if not fut.done():
                self._take()
                fut.set_result(None)

    def on_success(self, started_at: float | None = None) -> None:
        """An attempt (started at `started_at` on the clock) succeeded: it counts against
        overload in its epoch, and — additive increase — adds about +1 slot per `limit`
        successes once `hold_after_shrink_s` has passed since the last decrease (so a hard
        server cap is not hit again at once)."""
        if not self.adaptive:
            return
        self._observe(False, started_at)
        if self._limit < self.maximum and self._clock.now() - self._last_shrink >= self._hold:
            self._limit = min(float(self.maximum), self._limit + 1.0 / max(self._limit, 1.0))
            self._wake()

    def on_overload(self, started_at: float | None = None) -> bool:
        """An attempt started at `started_at` was answered 429/503/529. Returns True when this
        made the limit decrease (overload answers reached `overload_fraction` of the epoch)."""
        self.overloads += 1
        if not self.adaptive:
            return False
        return self._observe(True, started_at)

    def _observe(self, overloaded: bool, started_at: float | None) -> bool:
        if started_at is not None and started_at < self._last_shrink:
            return False  # sent under the previous limit: already answered for
        self._epoch_outcomes += 1
        self._epoch_overloads += overloaded
        window = max(self._min_window, self.limit)
        if overloaded and self._epoch_overloads >= self._fraction * window:
            self._epoch_outcomes = self._epoch_overloads = 0
            return self.shrink()
        if self._epoch_outcomes >= window:
            self._epoch_outcomes = self._epoch_overloads = 0
        return False

    def shrink(self) -> bool:
        """Multiplicative decrease now (at most once per `shrink_interval_s`); True if the limit
        moved. `on_overload` calls it on sustained overload."""
        if not self.adaptive:
            return False
        now = self._clock.now()
        if now - self._last_shrink < self._interval:
            return False
        self._last_shrink = now
        new = max(float(self.minimum), float(int(self._limit * self._factor)))
        moved = new < self._limit
        self._limit = new
        if moved:
            self.shrinks += 1
        return moved


@dataclass(eq=False)
class Grant:
    """An admitted amount in a `RateWindow`, correctable once the real amount is known."""

    at: float
    amount: float


class RateWindow:
    """At most `budget` units over any sliding `window_s` seconds."""

    def __init__(self, budget: float, *, window_s: float = 60.0, clock: Clock) -> None:
        self.budget = budget
        self.window_s = window_s
        self._clock = clock
        self._grants: deque[Grant] = deque()
        self._used = 0.0
        self._lock = asyncio.Lock()
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def used(self) -> float:
        self._expire(self._clock.now())
        return self._used

    def _expire(self, now: float) -> None:
        while self._grants and self._grants[0].at + self.window_s <= now:
            self._used -= self._grants.popleft().amount
        if not self._grants:
            self._used = 0.0

    async def acquire(self, amount: float) -> Grant:
        """Block until `amount` fits in the window, then record it. FIFO among waiters."""
        amount = max(0.0, amount)
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    now = self._clock.now()
                    self._expire(now)
                    if self._used + amount <= self.budget or not self._grants:
                        grant = Grant(now, amount)
                        self._grants.append(grant)
                        self._used += amount
                        return grant
                    # wait until enough old grants expire
                    need = self._used + amount - self.budget
                    freed = 0.0
                    wake = self._grants[-1].at + self.window_s
                    for g in self._grants:
                        freed += g.amount
                        if freed >= need:
                            wake = g.at + self.window_s
                            break
                    await self._clock.sleep(max(wake - now, 0.0))
        finally:
            self._waiting -= 1

    def correct(self, grant: Grant, actual: float) -> None:
        """Replace an estimate with the measured amount (if still inside the window)."""
        actual = max(0.0, actual)
        if grant.at + self.window_s > self._clock.now():  # not yet expired out of the window
            self._used += actual - grant.amount
        grant.amount = actual
