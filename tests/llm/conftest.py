"""Shared fixtures for the LLM layer's tests: mock servers on port 0, clients, clocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from agents.llm.config import BackendConfig
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.mock import MockConfig, MockLLMServer
from agents.llm.usage import UsageRecorder

HTTP_BACKENDS = [
    pytest.param("openai", id="openai-sdk"),
    pytest.param("openai-compatible", id="aiohttp"),
    pytest.param("anthropic", id="anthropic-sdk"),
]


class FastClock:
    """Real loop time, but `sleep` only records the requested delay and yields once.

    For HTTP tests: back-off is observed (and asserted) without real waiting. `on_sleep` runs
    before yielding (e.g. to clear the mock's faults once the client backs off).
    """

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
        await asyncio.sleep(0)


def endpoint_for(backend: str, server: MockLLMServer) -> str:
    return server.anthropic_url if backend == "anthropic" else server.openai_url


@pytest.fixture
def usage() -> UsageRecorder:
    return UsageRecorder()


@pytest.fixture
def fast_clock() -> FastClock:
    return FastClock()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


StartMock = Callable[..., Awaitable[MockLLMServer]]
MakeClient = Callable[..., ManagedClient]


@pytest.fixture
def start_mock(stack: AsyncExitStack) -> StartMock:
    """`await start_mock(**MockConfig fields)` → a running in-process mock (closed at teardown)."""

    async def start(**fields: Any) -> MockLLMServer:
        return await stack.enter_async_context(MockLLMServer(MockConfig(**fields)))

    return start


@pytest.fixture
def make_client(stack: AsyncExitStack, usage: UsageRecorder, fast_clock: FastClock) -> MakeClient:
    """`make_client(backend, endpoints, **BackendConfig fields)` → a managed client (closed
    at teardown) using the FastClock, no cache unless `cache=` is given."""

    def make(
        backend: str, endpoints: list[str], *, cache: Any = None, name: str = "test", **fields: Any
    ) -> ManagedClient:
        fields.setdefault("model", "mock-model")
        fields.setdefault("timeout_s", 10.0)
        config = BackendConfig(backend=backend, endpoints=endpoints, **fields)
        client = build_client(name, config, cache=cache, usage=usage, clock=fast_clock)
        stack.push_async_callback(client.aclose)
        return client

    return make
