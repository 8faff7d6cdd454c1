"""The SQLite response cache: re-runs cost nothing, samples are distinct, commits survive kills."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.llm.backends.scripted import ScriptedTransport
from agents.llm.cache import ResponseCache, cache_key
from agents.llm.config import BackendConfig
from agents.llm.managed import ManagedClient
from agents.llm.types import ChatMessage, Completion, GenerationParams
from tests.llm.conftest import HTTP_BACKENDS, MakeClient, StartMock, endpoint_for

MSG = [ChatMessage(role="user", content="Name three rivers.")]


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ResponseCache]:
    c = ResponseCache(tmp_path / "cache.sqlite")
    yield c
    await c.aclose()


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
async def test_repeated_work_makes_zero_new_requests(
    backend: str, start_mock: StartMock, make_client: MakeClient, tmp_path: Path
) -> None:
    server = await start_mock()
    prompts = [[ChatMessage(role="user", content=f"Question {i}?")] for i in range(20)]
    first_cache = ResponseCache(tmp_path / "c.sqlite")
    client = make_client(backend, [endpoint_for(backend, server)], cache=first_cache)
    first = await asyncio.gather(*(client.complete(p, GenerationParams()) for p in prompts))
    await first_cache.aclose()
    assert server.stats().requests == 20
    # a "re-run": a fresh cache object on the same file, a fresh client
    again_cache = ResponseCache(tmp_path / "c.sqlite")
    rerun = make_client(backend, [endpoint_for(backend, server)], cache=again_cache)
    before = rerun.statistics().usage  # the same backend name: usage is counted together
    second = await asyncio.gather(*(rerun.complete(p, GenerationParams()) for p in prompts))
    await again_cache.aclose()
    assert server.stats().requests == 20
    assert [c.text for c in second] == [c.text for c in first]
    assert all(c.cached for c in second)
    after = rerun.statistics().usage
    assert after.cache_hits - before.cache_hits == 20
    assert after.calls == before.calls


async def test_backends_with_the_same_model_name_do_not_share_answers(
    cache: ResponseCache,
) -> None:
    base, tuned = ScriptedTransport(default="base"), ScriptedTransport(default="tuned")
    config = BackendConfig(backend="scripted", model="same-name")
    first = ManagedClient("base", config, [("l", base)], cache=cache)
    second = ManagedClient("tuned", config, [("l", tuned)], cache=cache)
    prompt = [ChatMessage(role="user", content="Hello?")]
    assert (await first.complete(prompt, GenerationParams())).text == "base"
    assert (await second.complete(prompt, GenerationParams())).text == "tuned"
    assert (await first.complete(prompt, GenerationParams())).cached


async def test_sampled_calls_are_cached_per_sample_index(cache: ResponseCache) -> None:
    t = ScriptedTransport()
    client = ManagedClient("m", BackendConfig(backend="scripted"), [("l", t)], cache=cache)
    hot = GenerationParams(temperature=0.9)
    for sample in (0, 1, 2, 0, 1, 2):
        await client.complete(MSG, hot, sample=sample)
    assert t.calls == 3
    greedy = GenerationParams(temperature=0.0)
    for sample in (0, 1, 2):
        await client.complete(MSG, greedy, sample=sample)
    assert t.calls == 4  # greedy decoding ignores the sample index


async def test_concurrent_identical_calls_share_one_request(cache: ResponseCache) -> None:
    t = ScriptedTransport()
    client = ManagedClient("m", BackendConfig(backend="scripted"), [("l", t)], cache=cache)
    results = await asyncio.gather(*(client.complete(MSG, GenerationParams()) for _ in range(5)))
    assert t.calls == 1
    assert sum(r.cached for r in results) == 4


async def test_key_depends_on_everything_that_changes_the_answer() -> None:
    base = cache_key("openai", "m", GenerationParams(), MSG, 0)
    assert base == cache_key("openai", "m", GenerationParams(), list(MSG), 0)
    others = {
        cache_key("anthropic", "m", GenerationParams(), MSG, 0),
        cache_key("openai", "m2", GenerationParams(), MSG, 0),
        cache_key("openai", "m", GenerationParams(max_tokens=5), MSG, 0),
        cache_key("openai", "m", GenerationParams(), [ChatMessage(role="system", content="x")], 0),
        cache_key("openai", "m", GenerationParams(), MSG, 1),
    }
    assert base not in others
    assert len(others) == 5


async def test_put_returns_after_commit_and_get_sees_it(cache: ResponseCache) -> None:
    c = Completion(text="hi", prompt_tokens=1, completion_tokens=1)
    await asyncio.gather(*(cache.put(f"k{i}", c) for i in range(50)))
    assert cache.count() == 50
    assert cache.stats.batches < 50  # group commit
    got = await cache.get("k7")
    assert got is not None
    assert got.cached
    assert await cache.get("nope") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_committed_entries_survive_a_process_kill(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from agents.llm.cache import ResponseCache
        from agents.llm.types import Completion

        async def main():
            cache = ResponseCache({str(path)!r})
            for i in range(20):
                await cache.put(f"k{{i}}", Completion(text=f"t{{i}}"))
            print("committed", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL
    assert "committed" in proc.stdout
    cache = ResponseCache(path)
    try:
        assert cache.count() == 20
    finally:
        cache.close()
    assert os.path.exists(path)


async def test_a_broken_cache_degrades_to_plain_calls(tmp_path: Path) -> None:
    broken = ResponseCache(tmp_path / "broken.sqlite")
    broken.close()  # every get/put now fails
    t = ScriptedTransport()
    client = ManagedClient("m", BackendConfig(backend="scripted"), [("l", t)], cache=broken)
    assert (await client.complete(MSG, GenerationParams())).text == "OK"
    assert t.calls == 1
