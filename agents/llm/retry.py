"""The back-off policy of the one retry layer (the managed client; SDK retries are always 0)."""

from __future__ import annotations

import random

from agents.llm.config import BackoffConfig

__all__ = ["backoff_delay"]


def backoff_delay(
    policy: BackoffConfig, attempt: int, retry_after_s: float | None, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential (`base_s * multiplier**(attempt-1)`, capped at `max_s`) minus up to `jitter` of
    itself at random. A server's Retry-After is a floor: the delay is then Retry-After plus a
    small random spread (up to `jitter * base_s`) so a herd of rejected callers does not return
    in lockstep.
    """
    expo = min(policy.max_s, policy.base_s * policy.multiplier ** max(0, attempt - 1))
    if retry_after_s is not None and retry_after_s >= 0:
        return retry_after_s + rng.random() * policy.jitter * policy.base_s
    return expo * (1.0 - policy.jitter * rng.random())
