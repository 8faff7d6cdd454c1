"""A mock OpenAI- and Anthropic-compatible LLM server for tests, benchmarks and dry runs.

In process: `async with MockLLMServer(MockConfig(...)) as server: server.url`.
In its own process: `async with spawn_mock_server(config) as mock: mock.url`, or
`python -m agents.llm.mock --latency-ms 200 --max-concurrency 64`.
Replies: `agents.llm.mock.replies` (add prompt kinds with `register_recogniser`).
"""

from agents.llm.mock.config import (
    ContentFaultRates,
    LatencyConfig,
    MockConfig,
    TransportFaultRates,
)
from agents.llm.mock.process import MockProcess, spawn_mock_server
from agents.llm.mock.replies import Reply, ReplyContext, generate_reply, register_recogniser
from agents.llm.mock.server import MockLLMServer, MockStats

__all__ = [
    "ContentFaultRates",
    "LatencyConfig",
    "MockConfig",
    "MockLLMServer",
    "MockProcess",
    "MockStats",
    "Reply",
    "ReplyContext",
    "TransportFaultRates",
    "generate_reply",
    "register_recogniser",
    "spawn_mock_server",
]
