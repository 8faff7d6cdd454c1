"""The LLM client layer: one `LLMClient` protocol, many backends, one managed wrapper.

    config = BackendConfig(backend="openai-compatible", model="m", endpoints=["http://h:8000/v1"])
    client = build_client("main", config, cache=ResponseCache(path), usage=UsageRecorder())
    completion = await client.complete([ChatMessage(role="user", content="Hi")], GenerationParams())

See docs/llm.md. The mock server lives in `agents.llm.mock` (imported on demand).
"""

from agents.llm.cache import ResponseCache, cache_key
from agents.llm.clock import Clock, SystemClock, VirtualClock
from agents.llm.config import BackendConfig, BackoffConfig, EndpointPolicy, Prices
from agents.llm.errors import (
    AuthenticationError,
    BackendNotAvailableError,
    BadRequestError,
    ContextTooLongError,
    FatalLLMError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    OverloadedError,
    RateLimitedError,
    RetryableLLMError,
    UnavailableError,
)
from agents.llm.factory import build_client, register_backend
from agents.llm.managed import ClientStatistics, ManagedClient
from agents.llm.transport import Transport
from agents.llm.types import ChatMessage, Completion, GenerationParams, LLMClient
from agents.llm.usage import UsageRecorder, UsageSnapshot, UsageStats

__all__ = [
    "AuthenticationError",
    "BackendConfig",
    "BackendNotAvailableError",
    "BackoffConfig",
    "BadRequestError",
    "ChatMessage",
    "ClientStatistics",
    "Clock",
    "Completion",
    "ContextTooLongError",
    "EndpointPolicy",
    "FatalLLMError",
    "GenerationParams",
    "LLMClient",
    "LLMError",
    "LLMTimeoutError",
    "MalformedResponseError",
    "ManagedClient",
    "OverloadedError",
    "Prices",
    "RateLimitedError",
    "ResponseCache",
    "RetryableLLMError",
    "SystemClock",
    "Transport",
    "UnavailableError",
    "UsageRecorder",
    "UsageSnapshot",
    "UsageStats",
    "VirtualClock",
    "build_client",
    "cache_key",
    "register_backend",
]
