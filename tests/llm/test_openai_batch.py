"""The `openai-batch` backend against the mock's Batch API: calls become batch lines, answers equal
the direct ones, failed lines are retried, and a killed client's batches are waited for — not
submitted again — by the next one (the journal)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from agents.llm.backends.openai_batch import OpenAIBatchTransport
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMError
from agents.llm.factory import build_client
from agents.llm.managed import ManagedClient
from agents.llm.mock import MockConfig, MockLLMServer
from agents.llm.types import ChatMessage, Completion, GenerationParams
from agents.llm.usage import UsageRecorder
from tests.llm.conftest import FastClock, MakeClient, StartMock

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


def batch_client(
    mock: MockLLMServer, usage: UsageRecorder, journal: Path, name: str = "batch", **fields: Any
) -> tuple[ManagedClient, OpenAIBatchTransport]:
    """A managed client over one batch transport we keep a handle on (to await submissions)."""
    options = batch_options(journal, **fields.pop("options", {}))
    config = BackendConfig(backend="openai-batch", model="mock-model", endpoints=[mock.openai_url],
                           concurrency=64, timeout_s=10.0, options=options, **fields)
    transport = OpenAIBatchTransport(config, mock.openai_url)
    client = ManagedClient(name, config, [(mock.openai_url, transport)], usage=usage,
                           clock=FastClock())
    return client, transport


async def direct_answers(mock: MockLLMServer, usage: UsageRecorder, n: int) -> list[str]:
    """What the same prompts get from the chat route (the reference for every batch answer)."""
    config = BackendConfig(backend="openai-compatible", model="mock-model",
                           endpoints=[mock.openai_url], concurrency=64, cache=False)
    client = build_client("direct", config, cache=None, usage=usage, clock=FastClock())
    try:
        return [a.text for a in await ask_all(client, n)]
    finally:
        await client.aclose()


async def submitted(transport: OpenAIBatchTransport, count: int) -> None:
    with anyio.fail_after(20):
        await transport.wait_submitted(count)


async def test_concurrent_calls_become_one_batch_answered_as_directly(
    start_mock: StartMock, make_client: MakeClient, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.05)
    batch = make_client("openai-batch", [mock.openai_url], concurrency=64,
                        options=batch_options(tmp_path / "j.sqlite"))
    answers = await ask_all(batch, 40)
    stats = mock.stats()
    assert stats.batches_created == 1
    assert stats.batch_lines == 40
    direct = make_client("openai-compatible", [mock.openai_url], concurrency=64, name="direct")
    expected = await ask_all(direct, 40)
    assert [a.text for a in answers] == [e.text for e in expected]
    assert all(a.backend == "openai-batch" and a.completion_tokens > 0 for a in answers)


async def test_batches_are_cut_at_batch_size(
    start_mock: StartMock, make_client: MakeClient, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.02)
    client = make_client("openai-batch", [mock.openai_url], concurrency=64,
                         options=batch_options(tmp_path / "j.sqlite", batch_size=15))
    await ask_all(client, 40)
    assert mock.stats().batches_created == 3  # 15 + 15 + 10
    assert mock.stats().batch_lines == 40


async def test_failed_lines_are_retried_in_a_later_batch(
    start_mock: StartMock, make_client: MakeClient, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.02, batch_line_failure_rate=0.3, seed=4)
    client = make_client("openai-batch", [mock.openai_url], concurrency=64, max_attempts=8,
                         options=batch_options(tmp_path / "j.sqlite"))
    answers = await ask_all(client, 40)
    stats = mock.stats()
    assert stats.batches_created >= 2
    assert stats.batch_lines > 40  # the failed lines went out again
    assert client.statistics().shrinks == 0  # a failed line is no sign of overload
    assert [a.text for a in answers] == await direct_answers(mock, UsageRecorder(), 40)


async def test_lines_of_an_expired_batch_are_submitted_again(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.05, batch_outcome="expired")
    client, transport = batch_client(mock, usage, tmp_path / "j.sqlite")
    calls = asyncio.ensure_future(ask_all(client, 20))
    await submitted(transport, 1)
    mock.configure(MockConfig(batch_latency_s=0.05))  # later batches complete
    answers = await calls
    await client.aclose()
    assert transport.submitted == 2  # the 10 lines the expired batch left unanswered, again
    assert client.statistics().shrinks == 0
    assert [a.text for a in answers] == await direct_answers(mock, UsageRecorder(), 20)


async def test_a_killed_clients_batch_is_waited_for_by_the_next_one_not_resubmitted(
    start_mock: StartMock, make_client: MakeClient, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.4)
    journal = tmp_path / "j.sqlite"
    first, transport = batch_client(mock, usage, journal, name="first")
    calls = asyncio.ensure_future(ask_all(first, 20))
    await submitted(transport, 1)
    calls.cancel()  # the run dies while its batch is still running at the API
    await first.aclose()

    second = make_client("openai-batch", [mock.openai_url], concurrency=64, name="second",
                         options=batch_options(journal))
    answers = await ask_all(second, 20)
    assert mock.stats().batches_created == 1  # nothing submitted twice
    assert mock.stats().batch_lines == 20

    # finished answers stay in the journal: a third client asks nothing of the API
    requests = mock.stats().requests
    third = make_client("openai-batch", [mock.openai_url], concurrency=64, name="third",
                        options=batch_options(journal))
    again = await ask_all(third, 20)
    assert [a.text for a in again] == [a.text for a in answers]
    assert mock.stats().requests == requests
    assert [a.text for a in answers] == await direct_answers(mock, UsageRecorder(), 20)


async def test_an_attempt_that_times_out_waits_on_the_same_line_when_retried(
    start_mock: StartMock, make_client: MakeClient, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=0.5)
    client = make_client("openai-batch", [mock.openai_url], concurrency=64, timeout_s=0.2,
                         max_attempts=10, options=batch_options(tmp_path / "j.sqlite"))
    answers = await ask_all(client, 10)
    assert len(answers) == 10
    assert mock.stats().batches_created == 1
    assert mock.stats().batch_lines == 10


async def test_a_rejected_submission_fails_the_calls_with_the_api_error(
    start_mock: StartMock, make_client: MakeClient, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mock = await start_mock(api_key="sk-right")
    monkeypatch.setenv("EVOLAGENTS_TEST_BATCH_KEY", "sk-wrong")
    client = make_client("openai-batch", [mock.openai_url], concurrency=8, max_attempts=1,
                         api_key_env="EVOLAGENTS_TEST_BATCH_KEY",
                         options=batch_options(tmp_path / "j.sqlite"))
    with pytest.raises(LLMError) as caught:
        await ask_all(client, 3)
    assert caught.value.kind == "auth"
    assert "sk-wrong" not in str(caught.value)


def test_bad_options_are_config_errors() -> None:
    config = BackendConfig(backend="openai-batch", model="m", options={"poll_s": 0})
    with pytest.raises(ValueError, match=r"options\.poll_s must be positive"):
        OpenAIBatchTransport(config, "https://api.openai.com/v1")
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
