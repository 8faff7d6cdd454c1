"""Several endpoints behind one backend name: least-busy balancing with a cool-down.

`EndpointPool.pick()` returns the endpoint with the fewest requests in flight among those not
cooling down (ties go round-robin); if every endpoint is cooling down it returns the one that
recovers first rather than failing. Callers bracket each attempt with `start()`/`finish()`.
A run of `failures_to_cool` consecutive retryable failures sends an endpoint to rest for
`cooldown_s`, doubling per further failure up to `max_cooldown_s`; one success resets it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from agents.llm.clock import Clock
from agents.llm.config import EndpointPolicy

__all__ = ["Endpoint", "EndpointPool", "EndpointStatistics"]

T = TypeVar("T")


class EndpointStatistics(BaseModel):
    url: str
    in_flight: int
    requests: int
    failures: int
    consecutive_failures: int
    cooling_down: bool


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


class EndpointPool(Generic[T]):
    """Health-aware least-busy selection over a fixed list of endpoints."""

    def __init__(self, endpoints: list[Endpoint[T]], policy: EndpointPolicy, clock: Clock) -> None:
        if not endpoints:
            raise ValueError("EndpointPool needs at least one endpoint")
        self.endpoints = endpoints
        self._policy = policy
        self._clock = clock
        self._rr = 0

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
            if ep.cool_until > now:
                continue
            if best is None or ep.in_flight < best.in_flight:
                best = ep
        if best is None:
            best = min(eps, key=lambda e: e.cool_until)
        return best

    def start(self, ep: Endpoint[T]) -> None:
        ep.in_flight += 1
        ep.requests += 1

    def finish(self, ep: Endpoint[T], *, ok: bool, health_failure: bool = False) -> None:
        """End an attempt. `health_failure` marks failures that say the endpoint is unwell."""
        ep.in_flight -= 1
        if ok:
            ep.consecutive_failures = 0
            ep.cool_until = float("-inf")
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
            )
            for e in self.endpoints
        ]
