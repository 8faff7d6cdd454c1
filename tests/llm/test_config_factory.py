"""BackendConfig validation, the backend registry and the scripted backend."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from agents.llm.backends._http import error_from_status, parse_retry_after
from agents.llm.backends.scripted import ScriptedTransport
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    AuthenticationError,
    BackendNotAvailableError,
    BadRequestError,
    ContextTooLongError,
    LLMTimeoutError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
)
from agents.llm.factory import build_client, register_backend
from agents.llm.types import ChatMessage, GenerationParams
from agents.llm.usage import UsageRecorder


class Topology(BaseModel):
    llm: dict[str, BackendConfig]


def test_errors_carry_clean_locations() -> None:
    with pytest.raises(ValidationError) as info:
        Topology.model_validate(
            {"llm": {"main": {"backend": "openai", "model": "m", "rpm": 0, "colour": "red"}}}
        )
    locs = {tuple(e["loc"]) for e in info.value.errors()}
    assert ("llm", "main", "rpm") in locs
    assert ("llm", "main", "colour") in locs


@pytest.mark.parametrize(
    "table",
    [
        pytest.param({"backend": "openai-compatible", "model": "m"}, id="compat-needs-endpoint"),
        pytest.param({"backend": "openai"}, id="http-needs-model"),
        pytest.param({"backend": "gpt"}, id="unknown-backend"),
        pytest.param({"backend": "scripted", "api_key_env": "sk-123 456"}, id="key-not-a-name"),
        pytest.param({"backend": "scripted", "endpoints": ["ftp://x"]}, id="bad-url"),
        pytest.param({"backend": "scripted", "concurrency": 2, "min_concurrency": 3}, id="min>max"),
    ],
)
def test_invalid_tables_are_rejected(table: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BackendConfig.model_validate(table)


def test_full_table_validates() -> None:
    cfg = BackendConfig.model_validate(
        {
            "backend": "openai-compatible", "model": "qwen", "endpoints": ["http://a:8000/v1/"],
            "api_key_env": "VLLM_KEY", "concurrency": 64, "rpm": 600, "tpm": 100000,
            "timeout_s": 30, "max_attempts": 4, "backoff": {"base_s": 1},
            "prices": {"input_per_mtok": 0.5, "output_per_mtok": 1.5},
            "defaults": {"temperature": 0.7, "max_tokens": 512}, "prompt_profile": "compact",
            "cache": False, "options": {"repeat_penalty_field": "repeat_penalty"},
        }
    )  # fmt: skip
    assert cfg.resolved_endpoints() == ["http://a:8000/v1"]
    assert cfg.prices.cost(1_000_000, 1_000_000) == pytest.approx(2.0)
    assert BackendConfig(backend="openai", model="m").resolved_endpoints() == [
        "https://api.openai.com/v1"
    ]


@pytest.mark.parametrize(
    ("status", "message", "headers", "expected"),
    [
        pytest.param(429, "slow", {"retry-after": "12"}, RateLimitedError, id="429"),
        pytest.param(503, "busy", {}, OverloadedError, id="503"),
        pytest.param(529, "overloaded", {}, OverloadedError, id="529"),
        pytest.param(500, "oops", {}, OverloadedError, id="500"),
        pytest.param(504, "gateway", {}, LLMTimeoutError, id="504"),
        pytest.param(401, "no", {}, AuthenticationError, id="401"),
        pytest.param(403, "no", {}, AuthenticationError, id="403"),
        pytest.param(
            400, "maximum context length is 4096 tokens", {}, ContextTooLongError, id="ctx"
        ),
        pytest.param(400, "prompt is too long: 300000 tokens", {}, ContextTooLongError, id="ctx2"),
        pytest.param(400, "bad temperature", {}, BadRequestError, id="400"),
        pytest.param(404, "no such model", {}, NotFoundError, id="404"),
    ],
)
def test_status_codes_map_to_typed_errors(
    status: int, message: str, headers: dict[str, str], expected: type[Exception]
) -> None:
    cfg = BackendConfig(backend="openai", model="m")
    err = error_from_status(status, message, headers, config=cfg, url="http://x")
    assert type(err) is expected
    if status == 429:
        assert isinstance(err, RateLimitedError)
        assert err.retry_after_s == 12


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None


@pytest.mark.parametrize("backend", ["vllm", "transformers"])
def test_missing_optional_dependency_is_a_clear_error(backend: str) -> None:
    import importlib.util

    if backend == "vllm" and importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    if backend == "transformers" and importlib.util.find_spec("transformers") is not None:
        pytest.skip("transformers is installed")
    with pytest.raises(BackendNotAvailableError, match="evolagents\\["):
        build_client(
            "x", BackendConfig(backend=backend, model="m"), cache=None, usage=UsageRecorder()
        )


def test_missing_backend_module_is_backend_not_available() -> None:
    register_backend("embedded", "agents.llm.embedded.not_written_yet:create_transport")
    try:
        with pytest.raises(BackendNotAvailableError, match="not available"):
            build_client("x", BackendConfig(backend="embedded"), cache=None, usage=UsageRecorder())
    finally:
        register_backend("embedded", "agents.llm.embedded.transport:create_transport")


async def test_scripted_rules_handler_and_failures_from_config() -> None:
    cfg = BackendConfig(
        backend="scripted",
        max_attempts=3,
        backoff={"base_s": 0, "jitter": 0},
        options={
            "rules": [{"pattern": r"capital of (\w+)", "reply": r"The capital of \1 is X."}],
            "handler": "tests.llm.test_config_factory:shout",
            "failures": [{"error": "overloaded", "times": 2}],
        },
    )
    client = build_client("s", cfg, cache=None, usage=UsageRecorder())
    msg = [ChatMessage(role="user", content="What is the capital of Peru?")]
    assert (await client.complete(msg, GenerationParams())).text == "The capital of Peru is X."
    other = [ChatMessage(role="user", content="hello")]
    assert (await client.complete(other, GenerationParams())).text == "HELLO"
    transport = client.transports[0]
    assert isinstance(transport, ScriptedTransport)
    assert transport.calls == 4  # two scripted failures, then two answers
    assert client.statistics().usage.retries == 2
    await client.aclose()


def shout(messages: list[ChatMessage], params: GenerationParams) -> str:
    return messages[-1].content.upper()


async def test_scripted_plausible_mode_speaks_like_the_mock() -> None:
    t = ScriptedTransport(plausible=True)
    msg = [ChatMessage(role="user", content="Rewrite: <instruction>Sort a list.</instruction>")]
    c = await t.send(msg, GenerationParams(), timeout_s=1)
    assert c.text.startswith("Sort a list. ")
