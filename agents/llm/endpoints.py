"""Several endpoints behind one backend name: least-busy balancing, cool-down and pauses.

`EndpointPool.pick()` returns the endpoint with the fewest requests in flight among those not
paused or cooling down (ties go round-robin); if every endpoint is cooling down it returns the
one that recovers first rather than failing. Callers bracket each attempt with
`start()`/`finish()`.

- **Cool-down** (health): a run of `failures_to_cool` consecutive retryable failures sends an
  endpoint to rest for `cooldown_s`, doubling per further failure up to `max_cooldown_s`; one
  success resets it. Only with several endpoints (traffic moves to the others).
- **Pause** (the server asked): `rate_limited(ep, seconds)` after a 429 (or 503) with
  Retry-After pauses the endpoint for that long — no new attempt, whatever the number of
  endpoints; callers wait in `wait_ready()` while every endpoint is paused — unless the 429 is
  isolated: when fewer than half of the endpoint's last `RECENT` answers (successes and such
  429s) were 429s, the server has capacity and only the rejected call waits its Retry-After
  (a provider's random 10 % of 429s pauses nothing; an exhausted limit, which answers nearly
  everything 429, pauses at its first 429 on an idle endpoint and within a few otherwise).
  A success on the endpoint ends its pause early: the server is answering (requests already in
  flight when a limit runs out can end it; the 429s that follow pause it again, so it holds once
  those drained). The pause timer runs on the injected clock.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from agents.llm.clock import Clock
from agents.llm.config import EndpointPolicy

__all__ = ["RECENT", "Endpoint", "EndpointPool", "EndpointStatistics"]

#: How many of an endpoint's latest answers decide whether a 429 is isolated.
RECENT = 16

T = TypeVar("T")


class EndpointStatistics(BaseModel):
    url: str
    in_flight: int
    requests: int
    failures: int
    consecutive_failures: int
    cooling_down: bool
    paused: bool = False
    pauses: int = 0
    """Times the endpoint was paused by a Retry-After."""


@dataclass(eq=False)
class Endpoint(Generic[T]):
    """One endpoint and the transport that talks to it."""

    url: str
    transport: T
    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    cool_until: float = field(default=float("-inf"))
    paused_until: float = field(default=float("-inf"))
    pauses: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT))
    """The latest answers: True for a 429 with Retry-After, False for a success."""


class EndpointPool(Generic[T]):
    """Health-aware least-busy selection over a fixed list of endpoints."""

    def __init__(self, endpoints: list[Endpoint[T]], policy: EndpointPolicy, clock: Clock) -> None:
        if not endpoints:
            raise ValueError("EndpointPool needs at least one endpoint")
        self.endpoints = endpoints
        self._policy = policy
        self._clock = clock
        self._rr = 0
        self._gate: asyncio.Event | None = None
        """Exists (unset) while callers wait with every endpoint paused; set to wake them."""
        self._timer: asyncio.Task[None] | None = None

    def pick(self) -> Endpoint[T]:
        eps = self.endpoints
        if len(eps) == 1:
            return eps[0]
        now = self._clock.now()
        n = len(eps)
        self._rr = (self._rr + 1) % n
        best: Endpoint[T] | None = None
        for i in range(n):
            ep = eps[(self._rr + i) % n]
            if ep.cool_until > now or ep.paused_until > now:
                continue
            if best is None or ep.in_flight < best.in_flight:
                best = ep
        if best is None:
            usable = [e for e in eps if e.paused_until <= now] or eps
            best = min(usable, key=lambda e: e.cool_until)
        return best

    # -- pauses (Retry-After) --------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Return once some endpoint is not paused (at once when none is). Cancellable.

        While every endpoint is paused, the first waiter starts one timer (on the clock) for
        the earliest end; a success or `end_pauses` wakes everyone sooner."""
        while True:
            now = self._clock.now()
            eps = self.endpoints
            if any(e.paused_until <= now for e in eps):
                return
            if self._gate is None:
                self._gate = asyncio.Event()
            if self._timer is None:
                until = min(e.paused_until for e in eps)
                self._timer = asyncio.get_running_loop().create_task(self._expire(until))
            await self._gate.wait()

    def rate_limited(self, ep: Endpoint[T], retry_after_s: float) -> bool:
        """`ep` answered 429 (or 503) with a Retry-After: pause it for that long unless the 429
        is isolated (see the module docstring). True if it is paused now."""
        ep.recent.append(True)
        if 2 * sum(ep.recent) < len(ep.recent):
            return False
        self.pause(ep, retry_after_s)
        return True

    def pause(self, ep: Endpoint[T], seconds: float) -> float:
        """No new attempt on `ep` for `seconds` (extends, never shortens, a pause). Returns the
        clock time the pause ends."""
        now = self._clock.now()
        until = now + max(0.0, seconds)
        if until > ep.paused_until:
            if ep.paused_until <= now:
                ep.pauses += 1
            ep.paused_until = until
        return ep.paused_until

    def end_pauses(self, until: float = float("inf")) -> None:
        """End every pause due by `until` (all of them by default): the caller waited them out
        on the clock (a test clock's `now()` may lag its sleeps)."""
        for ep in self.endpoints:
            if ep.paused_until <= until:
                ep.paused_until = float("-inf")
        self._open_gate()

    def _open_gate(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    async def _expire(self, until: float) -> None:
        await self._clock.sleep(until - self._clock.now())
        self._timer = None
        self.end_pauses(until)

    def close(self) -> None:
        """Stop the pause timer and release every waiter."""
        self.end_pauses()

    def start(self, ep: Endpoint[T]) -> None:
        ep.in_flight += 1
        ep.requests += 1

    def finish(self, ep: Endpoint[T], *, ok: bool, health_failure: bool = False) -> None:
        """End an attempt. `health_failure` marks failures that say the endpoint is unwell."""
        ep.in_flight -= 1
        if ok:
            ep.recent.append(False)
            ep.consecutive_failures = 0
            ep.cool_until = float("-inf")
            if ep.paused_until != float("-inf"):  # the server answers: the 429 was a transient
                ep.paused_until = float("-inf")
                self._open_gate()
            return
        ep.failures += 1
        if not health_failure:
            return
        ep.consecutive_failures += 1
        over = ep.consecutive_failures - self._policy.failures_to_cool
        if over >= 0 and len(self.endpoints) > 1:
            rest = min(self._policy.cooldown_s * 2**over, self._policy.max_cooldown_s)
            ep.cool_until = self._clock.now() + rest

    def statistics(self) -> list[EndpointStatistics]:
        now = self._clock.now()
        return [
            EndpointStatistics(
                url=e.url,
                in_flight=e.in_flight,
                requests=e.requests,
                failures=e.failures,
                consecutive_failures=e.consecutive_failures,
                cooling_down=e.cool_until > now,
                paused=e.paused_until > now,
                pauses=e.pauses,
            )
            for e in self.endpoints
        ]
