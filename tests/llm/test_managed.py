"""The managed client on a virtual clock with scripted transports: limits, retries, AIMD."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from agents.llm.backends.scripted import Failure, ScriptedTransport
from agents.llm.clock import VirtualClock
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    BadRequestError,
    ContextTooLongError,
    LLMTimeoutError,
    OverloadedError,
    RateLimitedError,
    UnavailableError,
)
from agents.llm.managed import ManagedClient, merge_params
from agents.llm.transport import Transport
from agents.llm.types import ChatMessage, Completion, GenerationParams
from agents.llm.usage import UsageRecorder

MSG = [ChatMessage(role="user", content="hello")]


class TimedTransport:
    """Records the virtual send times; each call takes `duration` virtual seconds."""

    backend = "scripted"
    model = "timed"

    def __init__(self, clock: VirtualClock, duration: float = 0.0, tokens: int = 10) -> None:
        self.clock = clock
        self.duration = duration
        self.tokens = tokens
        self.sent: list[float] = []
        self.in_flight = 0
        self.peak = 0
        self.errors: list[Exception] = []

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        self.sent.append(self.clock.now())
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.errors:
                raise self.errors.pop(0)
            if self.duration:
                await self.clock.sleep(self.duration)
            return Completion(
                text="ok", prompt_tokens=self.tokens // 2, completion_tokens=self.tokens // 2
            )
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


def client_for(transport: Transport, clock: VirtualClock, **fields: Any) -> ManagedClient:
    config = BackendConfig(backend="scripted", cache=False, **fields)
    return ManagedClient("m", config, [("local", transport)], clock=clock, rng=random.Random(1))


def max_in_window(times: list[float], window: float = 60.0) -> int:
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


async def test_rpm_holds_over_any_sliding_minute() -> None:
    clock = VirtualClock()
    t = TimedTransport(clock)
    client = client_for(t, clock, rpm=10, concurrency=50)
    async with clock.autojump():
        await asyncio.gather(*(client.complete(MSG, GenerationParams()) for _ in range(35)))
    assert len(t.sent) == 35
    assert max_in_window(t.sent) == 10
    assert t.sent[-1] >= 180.0  # 35 calls at 10/min need three more minutes after the first 10


async def test_short_rate_window_smooths_bursts() -> None:
    clock = VirtualClock()
    t = TimedTransport(clock)
    client = client_for(t, clock, rpm=600, rate_window_s=1, concurrency=100)
    async with clock.autojump():
        await asyncio.gather(*(client.complete(MSG, GenerationParams()) for _ in range(50)))
    assert max_in_window(t.sent, window=1.0) == 10  # 600/min as 10 per any second
    assert max_in_window(t.sent) <= 600


async def test_tpm_holds_with_estimate_corrected_after_the_call() -> None:
    clock = VirtualClock()
    t = TimedTransport(clock, tokens=100)
    # estimate per call: 5 chars // 4 + 4 + max_tokens 96 = 101 → corrected to 100 after
    client = client_for(t, clock, tpm=1000, concurrency=50)
    async with clock.autojump():
        await asyncio.gather(
            *(client.complete(MSG, GenerationParams(max_tokens=96)) for _ in range(30))
        )
    assert len(t.sent) == 30
    assert max_in_window(t.sent) <= 10  # 10 calls of 100 tokens per minute
    assert client.statistics().usage.tokens_in + client.statistics().usage.tokens_out == 3000


async def test_concurrency_cap_holds_and_queue_is_visible() -> None:
    clock = VirtualClock()
    t = TimedTransport(clock, duration=1.0)
    client = client_for(t, clock, concurrency=3, adaptive=False)
    tasks = [asyncio.create_task(client.complete(MSG, GenerationParams())) for _ in range(10)]
    for _ in range(20):
        await asyncio.sleep(0)
    stats = client.statistics()
    assert (stats.in_flight, stats.waiting, stats.limit) == (3, 7, 3)
    async with clock.autojump():
        await asyncio.gather(*tasks)
    assert t.peak == 3
    assert clock.now() == pytest.approx(4.0)  # ceil(10/3) rounds of 1 s


async def test_backoff_honours_retry_after_then_succeeds() -> None:
    clock = VirtualClock()
    t = ScriptedTransport(failures=[Failure("rate_limited", times=2, retry_after_s=30)])
    client = client_for(t, clock, max_attempts=3)
    async with clock.autojump():
        c = await client.complete(MSG, GenerationParams())
    assert c.text == "OK"
    assert t.calls == 3
    assert len(clock.sleeps) == 2
    assert all(30 <= s <= 30 + 0.5 * 0.5 for s in clock.sleeps)
    assert clock.now() >= 60


async def test_exponential_backoff_without_retry_after_grows() -> None:
    clock = VirtualClock()
    t = ScriptedTransport(failures=[Failure("unavailable", times=4)])
    client = client_for(
        t, clock, max_attempts=5, backoff={"base_s": 1, "multiplier": 2, "max_s": 100, "jitter": 0}
    )
    async with clock.autojump():
        await client.complete(MSG, GenerationParams())
    assert clock.sleeps == [1, 2, 4, 8]


async def test_attempts_exhausted_raises_last_error_and_counts() -> None:
    clock = VirtualClock()
    t = ScriptedTransport(failures=[Failure("overloaded", times=10)])
    client = client_for(t, clock, max_attempts=4)
    async with clock.autojump():
        with pytest.raises(OverloadedError):
            await client.complete(MSG, GenerationParams(), caller="evol")
    u = client.statistics().callers["evol"]
    assert (u.attempts, u.retries, u.failures, u.errors) == (4, 3, 1, {"overloaded": 4})


async def test_fatal_error_is_not_retried() -> None:
    clock = VirtualClock()
    t = ScriptedTransport(failures=[Failure("context_too_long", times=1)])
    client = client_for(t, clock, max_attempts=5)
    with pytest.raises(ContextTooLongError):
        await client.complete(MSG, GenerationParams())
    assert t.calls == 1
    assert clock.sleeps == []


async def test_isolated_rate_limits_leave_the_limit_alone() -> None:
    clock = VirtualClock()
    t = TimedTransport(clock, duration=0.1)
    client = client_for(t, clock, concurrency=16, max_attempts=10)
    t.errors = [RateLimitedError("slow down", 1.0) for _ in range(3)]
    async with clock.autojump():
        await client.complete(MSG, GenerationParams())
    stats = client.statistics()
    assert (stats.limit, stats.shrinks, stats.overloads) == (16, 0, 3)


async def test_deadline_bounds_the_whole_call() -> None:
    t = ScriptedTransport(failures=[Failure("unavailable", times=100)])
    config = BackendConfig(
        backend="scripted", cache=False, deadline_s=0.2, max_attempts=100,
        backoff={"base_s": 0.05, "jitter": 0},
    )  # fmt: skip
    client = ManagedClient("m", config, [("local", t)])
    async with asyncio.timeout(5):
        with pytest.raises((LLMTimeoutError, UnavailableError)):
            await client.complete(MSG, GenerationParams())
    assert t.calls < 10


async def test_n_greater_than_one_is_rejected() -> None:
    client = client_for(ScriptedTransport(), VirtualClock())
    with pytest.raises(BadRequestError):
        await client.complete(MSG, GenerationParams(n=2))


def test_config_defaults_merge_under_call_params() -> None:
    defaults = GenerationParams(temperature=0.7, max_tokens=256, stop=("###",))
    merged = merge_params(defaults, GenerationParams(max_tokens=32))
    assert (merged.temperature, merged.max_tokens, merged.stop) == (0.7, 32, ("###",))
    assert merge_params(defaults, GenerationParams(temperature=0.0)).temperature == 0.0


async def test_usage_is_counted_per_backend_and_caller_with_cost() -> None:
    usage = UsageRecorder()
    config = BackendConfig(
        backend="scripted", cache=False,
        prices={"input_per_mtok": 1_000_000, "output_per_mtok": 2_000_000},
    )  # fmt: skip
    client = ManagedClient("main", config, [("local", ScriptedTransport())], usage=usage)
    await client.complete(MSG, GenerationParams(), caller="evol")
    await client.complete(MSG, GenerationParams(), caller="judge")
    snap = usage.snapshot()
    assert snap.backends["main"].calls == 2
    assert set(snap.callers) == {"evol", "judge"}
    assert snap.by_backend_caller["main"]["evol"].calls == 1
    # "hello" → 1 prompt token, "OK" → 1 completion token: $1 + $2 per call
    assert snap.total.cost_usd == pytest.approx(6.0)
    assert snap.total.latency_p50_s > 0
