"""Load signals on the virtual clock: Retry-After pauses, faults that move nothing, sustained
overload, and the circuit breaker. Every time here is virtual (exact and instant)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from agents.llm.clock import VirtualClock
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    AuthenticationError,
    CircuitOpenError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnavailableError,
    UnreachableError,
)
from agents.llm.managed import ManagedClient
from agents.llm.types import ChatMessage, Completion, GenerationParams

#: What the script does with one attempt: raise an error, answer after a virtual delay, or
#: raise an error after a delay.
Step = LLMError | float | tuple[float, LLMError]


class ScriptTransport:
    """Answers by prompt: `script[prompt]` is a list of steps, one per attempt (the last one
    repeats). Records (virtual send time, prompt) and the peak of attempts in flight."""

    backend = "scripted"
    model = "script"

    def __init__(
        self, clock: VirtualClock, script: dict[str, list[Step]], cap: int | None = None
    ) -> None:
        self.clock = clock
        self.script = {k: list(v) for k, v in script.items()}
        self.cap = cap
        self.sent: list[tuple[float, str]] = []
        self.in_flight = 0
        self.peak = 0

    def sent_at(self, prompt: str) -> list[float]:
        return [t for t, p in self.sent if p == prompt]

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        prompt = messages[-1].content
        self.sent.append((self.clock.now(), prompt))
        steps = self.script.get(prompt) or self.script["*"]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if self.cap is not None and self.in_flight >= self.cap:  # the provider's own limit
            await self.clock.sleep(0.01)  # a round trip: callers woken together all get here
            raise RateLimitedError("429: too many concurrent requests", 1.0)
        if isinstance(step, LLMError):
            raise step
        delay, error = step if isinstance(step, tuple) else (step, None)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.clock.sleep(delay)
        finally:
            self.in_flight -= 1
        if error is not None:
            raise error
        return Completion(text=f"answer to {prompt}", prompt_tokens=5, completion_tokens=5)

    async def aclose(self) -> None:
        return None


def client_for(
    transport: ScriptTransport, clock: VirtualClock, endpoints: int = 1, **fields: Any
) -> ManagedClient:
    fields.setdefault("backoff", {"base_s": 0.5, "jitter": 0.0})
    config = BackendConfig(backend="scripted", cache=False, **fields)
    pairs = [(f"http://host{i}/v1", transport) for i in range(endpoints)]
    return ManagedClient("m", config, pairs, clock=clock, rng=random.Random(3))


def ask(client: ManagedClient, prompt: str) -> asyncio.Task[Completion]:
    message = [ChatMessage(role="user", content=prompt)]
    return asyncio.ensure_future(client.complete(message, GenerationParams()))


# -- Retry-After pauses the endpoint ------------------------------------------------------------


async def test_429_with_retry_after_pauses_the_endpoint_instead_of_shrinking() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"limited": [RateLimitedError("429", 30.0), 1.0], "*": [1.0]})
    client = client_for(t, clock, concurrency=8)
    async with clock.autojump():
        first = ask(client, "limited")
        await clock.sleep(1.0)
        later = ask(client, "later")  # asked while the endpoint is paused
        await asyncio.gather(first, later)
    assert t.sent_at("later") == [30.0]  # nothing went out before the Retry-After
    assert t.sent_at("limited") == [0.0, 30.0]
    stats = client.statistics()
    assert (stats.limit, stats.shrinks, stats.pauses, stats.overloads) == (8, 0, 1, 1)


async def test_a_success_on_the_endpoint_ends_its_pause_early() -> None:
    clock = VirtualClock()
    script: dict[str, list[Step]] = {
        "slow": [5.0], "limited": [RateLimitedError("429", 30.0), 1.0], "*": [1.0],
    }  # fmt: skip
    t = ScriptTransport(clock, script)
    client = client_for(t, clock, concurrency=8)
    async with clock.autojump():
        slow = ask(client, "slow")  # in flight when the 429 comes
        limited = ask(client, "limited")
        await clock.sleep(1.0)
        later = ask(client, "later")
        await asyncio.gather(slow, limited, later)
    # the server answered "slow" at t=5: that 429 was a transient, so "later" went out then
    assert t.sent_at("later") == [5.0]
    assert t.sent_at("limited") == [0.0, 30.0]  # the limited call itself honours Retry-After
    assert client.statistics().limit == 8


async def test_with_several_endpoints_a_paused_one_gets_no_traffic() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"limited": [RateLimitedError("429", 60.0), 1.0], "*": [1.0]})
    client = client_for(t, clock, endpoints=2, concurrency=8)
    async with clock.autojump():
        limited = ask(client, "limited")
        await clock.sleep(1.0)
        for i in range(5):  # one after the other, while the first endpoint is paused
            await ask(client, f"q{i}")
        during = {e.url: (e.requests, e.paused) for e in client.statistics().endpoints}
        await limited
    assert sorted(during.values()) == [(1, True), (5, False)]
    assert [t.sent_at(f"q{i}")[0] for i in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]


# -- failures that say nothing about load -------------------------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [
        pytest.param(lambda: OverloadedError("500", status=500), id="500"),
        pytest.param(lambda: OverloadedError("502", status=502), id="502"),
        pytest.param(lambda: LLMTimeoutError("timeout"), id="timeout"),
        pytest.param(lambda: MalformedResponseError("truncated JSON"), id="malformed"),
        pytest.param(lambda: UnavailableError("connection reset"), id="reset"),
    ],
)
async def test_5xx_timeouts_and_malformed_bodies_are_retried_without_shrinking(
    make_error: Callable[[], LLMError],
) -> None:
    clock = VirtualClock()
    # every call fails twice, then answers: 2 of 3 attempts fail, far past any random fault rate
    script: dict[str, list[Step]] = {
        f"q{i}": [make_error(), make_error(), 1.0] for i in range(64)
    }  # fmt: skip
    t = ScriptTransport(clock, script)
    client = client_for(t, clock, concurrency=16, max_attempts=3)
    async with clock.autojump():
        done = await asyncio.gather(*(ask(client, f"q{i}") for i in range(64)))
    assert len(done) == 64
    stats = client.statistics()
    assert (stats.limit, stats.shrinks, stats.pauses) == (16, 0, 0)
    assert t.peak == 16
    assert stats.usage.retries == 128


async def test_random_429s_and_500s_never_decrease_the_limit() -> None:
    clock = VirtualClock()
    rng = random.Random(5)

    def steps() -> list[Step]:
        out: list[Step] = []
        for _ in range(6):
            draw = rng.random()
            if draw < 0.10:
                out.append(RateLimitedError("429", 1.0))
            elif draw < 0.15:
                out.append(OverloadedError("500", status=500))
            else:
                break
        return [*out, 0.2]

    t = ScriptTransport(clock, {f"q{i}": steps() for i in range(2000)})
    client = client_for(t, clock, concurrency=32, max_attempts=7)
    async with clock.autojump():
        await asyncio.gather(*(ask(client, f"q{i}") for i in range(2000)))
    stats = client.statistics()
    assert stats.overloads > 150  # about 10% of ~2,300 attempts
    assert (stats.limit, stats.shrinks) == (32, 0)
    # throughput held: 2,000 calls of 0.2 s at 32 in flight take 12.5 s without faults
    assert clock.now() < 12.5 * 1.25


# -- sustained overload -------------------------------------------------------------------------


async def test_a_provider_cap_below_ours_decreases_the_limit_then_it_climbs_back() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"*": [1.0]}, cap=10)  # the provider takes 10 at once
    client = client_for(t, clock, concurrency=32, max_attempts=50)
    async with clock.autojump():
        await asyncio.gather(*(ask(client, f"q{i}") for i in range(400)))
        decreased = client.statistics()
        assert decreased.shrinks >= 1
        assert decreased.limit < 32
        t.cap = None  # the provider's limit is lifted: the limit recovers, one slot at a time
        for _ in range(80):
            await asyncio.gather(*(ask(client, f"r{i}") for i in range(32)))
    assert client.statistics().limit == 32


async def test_sustained_503s_decrease_the_limit() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"*": [OverloadedError("503 overloaded", status=503)]})
    client = client_for(t, clock, concurrency=16, max_attempts=2)
    async with clock.autojump():
        results = await asyncio.gather(
            *(ask(client, f"q{i}") for i in range(16)), return_exceptions=True
        )
    assert all(isinstance(r, OverloadedError) for r in results)
    stats = client.statistics()
    assert stats.shrinks >= 1
    assert stats.limit <= 8


async def test_fixed_cap_never_moves() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"*": [1.0]}, cap=4)
    client = client_for(t, clock, concurrency=16, adaptive=False, max_attempts=100)
    async with clock.autojump():
        await asyncio.gather(*(ask(client, f"q{i}") for i in range(64)))
    assert (client.statistics().limit, client.statistics().shrinks) == (16, 0)


# -- the circuit breaker ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [
        pytest.param(lambda: UnreachableError("connection refused"), id="refused"),
        pytest.param(lambda: AuthenticationError("401 not authorised"), id="401"),
        pytest.param(lambda: NotFoundError("404 model not found"), id="404"),
    ],
)
async def test_consecutive_backend_faults_open_the_circuit(
    make_error: Callable[[], LLMError],
) -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"*": [make_error()]})
    client = client_for(t, clock, concurrency=4, breaker_after=5, max_attempts=6)
    opened: list[CircuitOpenError] = []
    client.breaker.add_listener(opened.append)
    async with clock.autojump():
        results = await asyncio.gather(
            *(ask(client, f"q{i}") for i in range(40)), return_exceptions=True
        )
    assert len(opened) == 1
    assert "http://host0/v1" in str(opened[0])
    assert "5 consecutive" in str(opened[0])
    # after the fifth fault nothing more is sent; every call still waiting fails at once
    assert len(t.sent) == 5
    assert sum(isinstance(r, CircuitOpenError) for r in results) >= 35
    assert all(r.backend_fault for r in results if isinstance(r, LLMError))
    assert client.statistics().breaker.open


async def test_a_backing_off_call_fails_at_once_when_the_circuit_opens() -> None:
    clock = VirtualClock()
    script: dict[str, list[Step]] = {
        "patient": [OverloadedError("500", status=500), 1.0],
        "*": [UnreachableError("refused")],
    }  # fmt: skip
    t = ScriptTransport(clock, script)
    client = client_for(t, clock, concurrency=4, breaker_after=3,
                        backoff={"base_s": 600, "jitter": 0})  # fmt: skip
    async with clock.autojump():
        patient = ask(client, "patient")  # backs off for 10 minutes after its 500
        others = [ask(client, f"q{i}") for i in range(3)]
        await asyncio.gather(*others, return_exceptions=True)
        with pytest.raises(CircuitOpenError):
            await patient
    assert clock.now() < 600


async def test_a_success_resets_the_count_and_other_faults_do_not_count() -> None:
    clock = VirtualClock()
    script: dict[str, list[Step]] = {
        f"q{i}": [UnreachableError("refused"), OverloadedError("500", status=500), 0.1]
        for i in range(20)
    }
    t = ScriptTransport(clock, script)
    client = client_for(t, clock, concurrency=1, breaker_after=2, max_attempts=3)
    async with clock.autojump():
        for i in range(20):  # one fault in a row at most: a success follows each
            await ask(client, f"q{i}")
    assert not client.statistics().breaker.open


async def test_breaker_after_zero_never_opens() -> None:
    clock = VirtualClock()
    t = ScriptTransport(clock, {"*": [AuthenticationError("401")]})
    client = client_for(t, clock, concurrency=2, breaker_after=0)
    async with clock.autojump():
        results = await asyncio.gather(
            *(ask(client, f"q{i}") for i in range(20)), return_exceptions=True
        )
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert len(t.sent) == 20


async def test_an_open_circuit_releases_callers_waiting_on_a_pause() -> None:
    clock = VirtualClock()
    script: dict[str, list[Step]] = {
        "doomed": [(5.0, UnreachableError("connection refused"))],  # in flight, fails at t=5
        "limited": [RateLimitedError("429", 3600.0)],
        "*": [1.0],
    }  # fmt: skip
    t = ScriptTransport(clock, script)
    client = client_for(t, clock, concurrency=8, breaker_after=1, max_attempts=2)
    async with clock.autojump():
        doomed = ask(client, "doomed")
        limited = ask(client, "limited")  # pauses the endpoint for an hour, backs off as long
        await clock.sleep(1)
        waiting = ask(client, "waiting")  # waits on the pause
        results = await asyncio.gather(doomed, limited, waiting, return_exceptions=True)
    # the call whose fault opened the circuit was backing off: it fails like the others
    assert [type(r) for r in results] == [CircuitOpenError] * 3
    assert clock.now() == 5.0
    assert t.sent_at("waiting") == []
