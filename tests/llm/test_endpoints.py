"""Several endpoints behind one backend name: least-busy balancing and cool-down."""

from __future__ import annotations

import asyncio

from agents.llm.clock import VirtualClock
from agents.llm.config import EndpointPolicy
from agents.llm.endpoints import Endpoint, EndpointPool
from agents.llm.mock import MockLLMServer
from agents.llm.types import ChatMessage, GenerationParams
from tests.llm.conftest import MakeClient, StartMock


def prompts(n: int) -> list[list[ChatMessage]]:
    return [[ChatMessage(role="user", content=f"Tell me about item {i}.")] for i in range(n)]


async def test_load_spreads_over_healthy_endpoints(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    a = await start_mock(latency={"kind": "fixed", "value_s": 0.01})
    b = await start_mock(latency={"kind": "fixed", "value_s": 0.01})
    client = make_client("openai-compatible", [a.openai_url, b.openai_url], concurrency=8)
    await asyncio.gather(*(client.complete(p, GenerationParams()) for p in prompts(80)))
    ra, rb = a.stats().requests, b.stats().requests
    assert ra + rb == 80
    assert min(ra, rb) >= 30
    assert a.stats().peak_in_flight + b.stats().peak_in_flight <= 8


async def test_least_busy_endpoint_gets_the_next_request() -> None:
    clock = VirtualClock()
    pool = EndpointPool(
        [Endpoint("a", 1), Endpoint("b", 2), Endpoint("c", 3)], EndpointPolicy(), clock
    )
    busy = [pool.pick() for _ in range(3)]
    for ep in busy:
        pool.start(ep)
    assert {e.url for e in busy} == {"a", "b", "c"}  # ties spread round-robin
    pool.finish(busy[0], ok=True)
    assert pool.pick() is busy[0]


async def test_failing_endpoint_cools_down_and_traffic_moves(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    good = await start_mock()
    async with MockLLMServer() as gone:
        dead_url = gone.openai_url  # a port that will refuse connections once closed
    client = make_client(
        "openai-compatible", [dead_url, good.openai_url], concurrency=1, max_attempts=4,
        endpoint_policy={"failures_to_cool": 1, "cooldown_s": 300},
    )  # fmt: skip
    for p in prompts(20):
        await client.complete(p, GenerationParams())
    eps = {e.url: e for e in client.statistics().endpoints}
    assert eps[dead_url].requests == 1  # refused once, then resting
    assert eps[dead_url].cooling_down
    assert good.stats().requests == 20
    assert client.statistics().usage.errors == {"unreachable": 1}  # refused: no connection


async def test_cool_down_ends_and_success_resets_it() -> None:
    clock = VirtualClock()
    policy = EndpointPolicy(failures_to_cool=2, cooldown_s=10, max_cooldown_s=15)
    pool = EndpointPool([Endpoint("a", 1), Endpoint("b", 2)], policy, clock)
    a = pool.endpoints[0]
    for _ in range(2):
        pool.start(a)
        pool.finish(a, ok=False, health_failure=True)
    assert all(pool.pick().url == "b" for _ in range(5))
    pool.start(a)
    pool.finish(a, ok=False, health_failure=True)  # third failure: doubled, capped at 15
    assert a.cool_until == 15
    clock.advance(15)
    assert any(pool.pick().url == "a" for _ in range(4))
    pool.start(a)
    pool.finish(a, ok=True)
    assert a.consecutive_failures == 0


async def test_all_cooling_picks_the_first_to_recover() -> None:
    clock = VirtualClock()
    pool = EndpointPool(
        [Endpoint("a", 1), Endpoint("b", 2)],
        EndpointPolicy(failures_to_cool=1, cooldown_s=5),
        clock,
    )
    a, b = pool.endpoints
    pool.start(b)
    pool.finish(b, ok=False, health_failure=True)
    clock.advance(1)
    pool.start(a)
    pool.finish(a, ok=False, health_failure=True)
    assert pool.pick() is b
