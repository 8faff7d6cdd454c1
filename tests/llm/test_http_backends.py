"""Both SDK backends and the aiohttp path, over real HTTP to the mock server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from agents.llm.errors import (
    AuthenticationError,
    LLMTimeoutError,
    MalformedResponseError,
    OverloadedError,
    RateLimitedError,
)
from agents.llm.mock import MockConfig, TransportFaultRates
from agents.llm.types import ChatMessage, GenerationParams
from tests.llm.conftest import HTTP_BACKENDS, FastClock, MakeClient, StartMock, endpoint_for

pytestmark = pytest.mark.parametrize("backend", HTTP_BACKENDS)

QUESTION = [
    ChatMessage(role="system", content="You are a helpful assistant."),
    ChatMessage(role="user", content="Explain how photosynthesis feeds plants."),
]


async def test_success_returns_text_usage_and_finish_reason(
    backend: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock()
    client = make_client(backend, [endpoint_for(backend, server)])
    c = await client.complete(QUESTION, GenerationParams(max_tokens=500), caller="responder")
    assert "photosynthesis" in c.text.lower()
    assert 60 <= len(c.text.split()) <= 200
    assert c.finish_reason == "stop"
    assert c.prompt_tokens > 0
    assert c.completion_tokens > 0
    assert c.backend == backend
    assert c.latency_s > 0
    stats = client.statistics()
    assert stats.usage.calls == 1
    assert stats.callers["responder"].tokens_out == c.completion_tokens
    assert server.stats().requests == 1


async def test_max_tokens_truncates_with_length_finish(
    backend: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock()
    client = make_client(backend, [endpoint_for(backend, server)])
    c = await client.complete(QUESTION, GenerationParams(max_tokens=5))
    assert c.finish_reason == "length"
    assert c.completion_tokens <= 5


async def test_429_retry_after_is_honoured_then_succeeds(
    backend: str, start_mock: StartMock, make_client: MakeClient, fast_clock: FastClock
) -> None:
    server = await start_mock(faults=TransportFaultRates(rate_limited=1.0, retry_after_s=7))
    fast_clock.on_sleep = lambda _: server.configure(MockConfig())  # the server recovers
    client = make_client(backend, [endpoint_for(backend, server)], max_attempts=3)
    c = await client.complete(QUESTION, GenerationParams())
    assert c.text
    assert len(fast_clock.sleeps) == 1
    assert fast_clock.sleeps[0] >= 7.0
    usage = client.statistics().usage
    assert usage.errors == {"rate_limited": 1}
    assert usage.retries == 1


async def test_429_exhausting_attempts_raises_rate_limited_with_retry_after(
    backend: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(faults=TransportFaultRates(rate_limited=1.0, retry_after_s=3))
    client = make_client(backend, [endpoint_for(backend, server)], max_attempts=2)
    with pytest.raises(RateLimitedError) as info:
        await client.complete(QUESTION, GenerationParams())
    assert info.value.retry_after_s == pytest.approx(3.0)
    assert server.stats().requests == 2


@pytest.mark.parametrize("fault", ["server_error", "overloaded"])
async def test_5xx_maps_to_overloaded(
    backend: str, fault: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(faults=TransportFaultRates(**{fault: 1.0}))
    client = make_client(backend, [endpoint_for(backend, server)], max_attempts=2)
    with pytest.raises(OverloadedError):
        await client.complete(QUESTION, GenerationParams())
    assert server.stats().transport_faults == {fault: 2}
    assert client.statistics().usage.errors == {"overloaded": 2}


async def test_hang_past_deadline_raises_timeout(
    backend: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(faults=TransportFaultRates(hang=1.0, hang_s=60))
    client = make_client(backend, [endpoint_for(backend, server)], timeout_s=0.3, max_attempts=1)
    async with asyncio.timeout(10):
        with pytest.raises(LLMTimeoutError):
            await client.complete(QUESTION, GenerationParams())
    assert server.stats().transport_faults == {"hang": 1}


@pytest.mark.parametrize("fault", ["malformed", "empty"])
async def test_bad_body_raises_malformed(
    backend: str, fault: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(faults=TransportFaultRates(**{fault: 1.0}))
    client = make_client(backend, [endpoint_for(backend, server)], max_attempts=1)
    with pytest.raises(MalformedResponseError):
        await client.complete(QUESTION, GenerationParams())


async def test_wrong_key_names_the_env_var_never_the_key(
    backend: str, start_mock: StartMock, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_mock(api_key="the-right-key-0001")
    monkeypatch.setenv("EVOL_TEST_LLM_KEY", "wrong-key-9876543")
    client = make_client(
        backend, [endpoint_for(backend, server)], api_key_env="EVOL_TEST_LLM_KEY", max_attempts=3
    )
    with pytest.raises(AuthenticationError) as info:
        await client.complete(QUESTION, GenerationParams())
    assert "EVOL_TEST_LLM_KEY" in str(info.value)
    assert "wrong-key-9876543" not in str(info.value)
    assert server.stats().requests == 1  # fatal: not retried


async def test_right_key_is_sent(
    backend: str, start_mock: StartMock, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await start_mock(api_key="the-right-key-0001")
    monkeypatch.setenv("EVOL_TEST_LLM_KEY", "the-right-key-0001")
    client = make_client(backend, [endpoint_for(backend, server)], api_key_env="EVOL_TEST_LLM_KEY")
    assert (await client.complete(QUESTION, GenerationParams())).text


async def test_unset_key_env_fails_at_build_naming_the_variable(
    backend: str, make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVOL_TEST_MISSING_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="EVOL_TEST_MISSING_KEY"):
        make_client(backend, ["http://127.0.0.1:9/v1"], api_key_env="EVOL_TEST_MISSING_KEY")


async def test_server_peak_in_flight_never_exceeds_cap(
    backend: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(latency={"kind": "fixed", "value_s": 0.02})
    client = make_client(backend, [endpoint_for(backend, server)], concurrency=5)
    prompts = [[ChatMessage(role="user", content=f"Question number {i}?")] for i in range(40)]
    await asyncio.gather(*(client.complete(p, GenerationParams()) for p in prompts))
    stats = server.stats()
    assert stats.completed == 40
    assert stats.peak_in_flight <= 5
    assert client.statistics().peak_in_flight == 5
