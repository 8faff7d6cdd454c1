"""The batch backends (`openai-batch`, `anthropic-batch`) against the mock's batch APIs: calls
become batch lines, answers equal the direct ones, failed lines are retried, and a killed client's
batches are waited for — not submitted again — by the next one (the journal). Every behaviour is
tested for both APIs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.llm.backends._batching import BatchingTransport
from agents.llm.backends.anthropic_batch import AnthropicBatchTransport
from agents.llm.backends.openai_batch import OpenAIBatchTransport
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.mock import MockConfig, MockLLMServer
from agents.llm.types import ChatMessage, Completion, GenerationParams
from agents.llm.usage import UsageRecorder
from tests.llm.conftest import FastClock, StartMock

PARAMS = GenerationParams(temperature=0.0, max_tokens=64)


def prompt(i: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Explain idea number {i} in one paragraph.")]


def batch_options(journal: Path, **options: Any) -> dict[str, Any]:
    return {"window_s": 0.05, "poll_s": 0.01, "journal": str(journal), **options}


async def ask_all(client: Any, n: int, first: int = 0) -> list[Completion]:
    with anyio.fail_after(30):
        return list(
            await asyncio.gather(*(client.complete(prompt(i), PARAMS) for i in range(first, n)))
        )


class Api:
    """One provider's batch backend, its transport, its mock URL and its direct backend."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.backend = f"{name}-batch"
        self.transport: type[BatchingTransport] = (
            OpenAIBatchTransport if name == "openai" else AnthropicBatchTransport
        )
        self.direct = "openai-compatible" if name == "openai" else "anthropic"

    def url(self, mock: MockLLMServer) -> str:
        return mock.openai_url if self.name == "openai" else mock.anthropic_url


@pytest.fixture(params=["openai", "anthropic"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(str(request.param))


def batch_client(
    api: Api, mock: MockLLMServer, usage: UsageRecorder, journal: Path, name: str = "batch",
    **fields: Any,
) -> tuple[ManagedClient, BatchingTransport]:
    """A managed client over one batch transport we keep a handle on (to await submissions)."""
    options = batch_options(journal, **fields.pop("options", {}))
    fields.setdefault("timeout_s", 10.0)
    url = api.url(mock)
    config = BackendConfig(backend=api.backend, model="mock-model", endpoints=[url],
                           concurrency=64, options=options, **fields)
    transport = api.transport(config, url)
    client = ManagedClient(name, config, [(url, transport)], usage=usage, clock=FastClock())
    return client, transport


async def direct_answers(api: Api, mock: MockLLMServer, n: int) -> list[str]:
    """What the same prompts get from the direct route (the reference for every batch answer)."""
    config = BackendConfig(backend=api.direct, model="mock-model", endpoints=[api.url(mock)],
                           concurrency=64, cache=False)
    client = build_client("direct", config, cache=None, usage=UsageRecorder(), clock=FastClock())
    try:
        return [a.text for a in await ask_all(client, n)]
    finally:
        await client.aclose()


async def submitted(transport: BatchingTransport, count: int) -> None:
    with anyio.fail_after(20):
        await transport.wait_submitted(count)


async def test_concurrent_calls_become_one_batch_answered_as_directly(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.05)
    client, _ = batch_client(api, mock, usage, tmp_path / "j.sqlite")
    try:
        answers = await ask_all(client, 40)
    finally:
        await client.aclose()
    stats = mock.stats()
    assert stats.batches_created == 1
    assert stats.batch_lines == 40
    assert [a.text for a in answers] == await direct_answers(api, mock, 40)
    assert all(a.backend == api.backend and a.completion_tokens > 0 for a in answers)


async def test_batches_are_cut_at_batch_size(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.02)
    client, _ = batch_client(api, mock, usage, tmp_path / "j.sqlite", options={"batch_size": 15})
    try:
        await ask_all(client, 40)
    finally:
        await client.aclose()
    assert mock.stats().batches_created == 3  # 15 + 15 + 10
    assert mock.stats().batch_lines == 40


async def test_failed_lines_are_retried_in_a_later_batch(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.02, batch_line_failure_rate=0.3, seed=4)
    client, _ = batch_client(api, mock, usage, tmp_path / "j.sqlite", max_attempts=8)
    try:
        answers = await ask_all(client, 40)
        assert client.statistics().shrinks == 0  # a failed line is no sign of overload
    finally:
        await client.aclose()
    stats = mock.stats()
    assert stats.batches_created >= 2
    assert stats.batch_lines > 40  # the failed lines went out again
    assert [a.text for a in answers] == await direct_answers(api, mock, 40)


async def test_lines_of_an_expired_batch_are_submitted_again(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.05, batch_outcome="expired")
    client, transport = batch_client(api, mock, usage, tmp_path / "j.sqlite")
    calls = asyncio.ensure_future(ask_all(client, 20))
    await submitted(transport, 1)
    mock.configure(MockConfig(batch_latency_s=0.05))  # later batches complete
    answers = await calls
    assert client.statistics().shrinks == 0
    await client.aclose()
    assert transport.submitted == 2  # the 10 lines the expired batch left unanswered, again
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)


async def test_a_killed_clients_batch_is_waited_for_by_the_next_one_not_resubmitted(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.4)
    journal = tmp_path / "j.sqlite"
    first, transport = batch_client(api, mock, usage, journal, name="first")
    calls = asyncio.ensure_future(ask_all(first, 20))
    await submitted(transport, 1)
    calls.cancel()  # the run dies while its batch is still running at the API
    await first.aclose()

    second, _ = batch_client(api, mock, usage, journal, name="second")
    answers = await ask_all(second, 20)
    await second.aclose()
    assert mock.stats().batches_created == 1  # nothing submitted twice
    assert mock.stats().batch_lines == 20

    # finished answers stay in the journal: a third client asks nothing of the API
    requests = sum(mock.stats().requests_by_route.values())
    third, _ = batch_client(api, mock, usage, journal, name="third")
    again = await ask_all(third, 20)
    await third.aclose()
    assert [a.text for a in again] == [a.text for a in answers]
    assert sum(mock.stats().requests_by_route.values()) == requests
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)


async def test_an_attempt_that_times_out_waits_on_the_same_line_when_retried(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.5)
    client, _ = batch_client(api, mock, usage, tmp_path / "j.sqlite", timeout_s=0.2,
                             max_attempts=10)
    try:
        answers = await ask_all(client, 10)
    finally:
        await client.aclose()
    assert len(answers) == 10
    assert mock.stats().batches_created == 1
    assert mock.stats().batch_lines == 10


async def test_a_rejected_submission_fails_the_calls_with_the_api_error(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock = await start_mock(api_key="sk-right")
    monkeypatch.setenv("EVOLAGENTS_TEST_BATCH_KEY", "sk-wrong")
    client, _ = batch_client(api, mock, usage, tmp_path / "j.sqlite", max_attempts=1,
                             api_key_env="EVOLAGENTS_TEST_BATCH_KEY")
    try:
        with pytest.raises(LLMError) as caught:
            await ask_all(client, 3)
    finally:
        await client.aclose()
    assert caught.value.kind == "auth"
    assert "sk-wrong" not in str(caught.value)


async def test_anthropic_sampled_calls_of_one_prompt_are_two_lines_and_the_seed_is_not_sent(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.02)
    client, transport = batch_client(Api("anthropic"), mock, usage, tmp_path / "j.sqlite")
    sent: list[dict[str, Any]] = []
    original = transport._request

    async def recording(method: str, path: str, **kwargs: Any) -> Any:
        if "json" in kwargs:
            sent.append(kwargs["json"])
        return await original(method, path, **kwargs)

    transport._request = recording  # type: ignore[method-assign]
    sampled = [GenerationParams(temperature=1.0, max_tokens=64, seed=s) for s in (1, 2)]
    try:
        with anyio.fail_after(30):
            await asyncio.gather(*(client.complete(prompt(0), p) for p in sampled))
    finally:
        await client.aclose()
    assert mock.stats().batch_lines == 2  # two lines, not one shared answer
    [created] = sent
    assert [set(r["params"]) for r in created["requests"]] == [
        {"model", "max_tokens", "messages", "temperature"}
    ] * 2  # the seed only told the lines apart; the Messages API takes none


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ValueError, match=r"options\.poll_s: Input should be greater than 0"):
        BackendConfig(backend="openai-batch", model="m", options={"poll_s": 0})
    with pytest.raises(ValueError, match=r"options\.pol_s: unknown key"):
        BackendConfig(backend="openai-batch", model="m", options={"pol_s": 1})
    config = BackendConfig(backend="openai-batch", model="m", options={"batch_size": 50_001})
    with pytest.raises(ValueError, match=r"at most 50000"):
        OpenAIBatchTransport(config, "https://api.openai.com/v1")


async def test_a_pipeline_runs_on_the_batch_backend_and_journals_next_to_the_run(
    tmp_path: Path,
) -> None:
    from tests.pipeline.conftest import pipeline_config, run_pipeline, write_seeds

    seeds = write_seeds(tmp_path / "seeds.jsonl", [
        {"instruction": f"Describe a use of tool number {i}.", "output": f"Use {i}."}
        for i in range(8)
    ])
    async with MockLLMServer(MockConfig(batch_latency_s=0.05)) as mock:
        llm = {"backend": "openai-batch", "model": "mock", "endpoints": [mock.openai_url],
               "concurrency": 64, "timeout_s": 60.0,
               "options": {"window_s": 0.05, "poll_s": 0.01, "batch_size": 500}}
        outcome = await run_pipeline(
            pipeline_config([{"path": str(seeds)}], llm, rounds=2), tmp_path / "run"
        )
        stats = mock.stats()
    assert outcome.status == "completed", outcome.errors
    assert (tmp_path / "run" / "llm_batches.main.sqlite").is_file()
    assert stats.requests_by_route.get("chat.completions", 0) == 0  # all went through batches
    assert stats.batches_created >= 4  # evolve, judge, answer per round at least
