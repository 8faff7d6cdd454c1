"""The mock LLM server: plausible deterministic replies, faults, stats, its own process."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from agents.llm.mock import (
    ContentFaultRates,
    MockConfig,
    Reply,
    ReplyContext,
    generate_reply,
    register_recogniser,
    spawn_mock_server,
)
from agents.llm.mock import replies as replies_module
from agents.llm.mock._text import CONSTRAINTS, STOP_WORDS
from agents.llm.types import ChatMessage, GenerationParams
from tests.llm.conftest import MakeClient, StartMock


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


EVOLVE = (
    "I want you to act as a Prompt Rewriter.\n<instruction>{}</instruction>\n#Rewritten Prompt#:"
)


@pytest.mark.parametrize(
    ("prompt", "kind", "pattern"),
    [
        pytest.param(
            "Compare [[A]] and [[B]]; verdict?", "judge_pairwise", r"\[\[[ABC]\]\]$", id="pair"
        ),
        pytest.param(
            "Rate it. Format: [[rating]]", "judge_rating", r"Rating: \[\[(10|[1-9])\]\]$", id="rate"
        ),
        pytest.param("Answer Equal or Not Equal.", "equality", r"^Not Equal$", id="equal"),
        pytest.param(
            EVOLVE.format("Name a fruit."), "evolve_depth", r"^Name a fruit\. \S", id="depth"
        ),
        pytest.param(
            "Create a brand-new prompt.\n" + EVOLVE.format("Name a fruit."),
            "evolve_breadth",
            r"^(?!Name a fruit)",
            id="breadth",
        ),
        pytest.param("How do volcanoes erupt?", "answer", r"volcanoes", id="answer"),
    ],
)
def test_recognisers_reply_plausibly(prompt: str, kind: str, pattern: str) -> None:
    reply = generate_reply(user(prompt))
    assert reply.kind == kind
    assert re.search(pattern, reply.text), reply.text


def test_depth_rewrite_adds_one_constraint_of_10_to_20_words() -> None:
    assert all(10 <= len(c.split()) <= 20 for c in CONSTRAINTS)
    original = "Explain why the sky is blue."
    text = generate_reply(user(EVOLVE.format(original))).text
    added = text[len(original) :].strip()
    assert added in CONSTRAINTS


def test_the_last_instruction_block_is_evolved() -> None:
    prompt = "Example:\n<instruction>Old example.</instruction>\n" + EVOLVE.format("Real one.")
    assert generate_reply(user(prompt)).text.startswith("Real one. ")


def test_answers_are_60_to_200_words_and_deterministic() -> None:
    for i in range(50):
        msgs = user(f"What are the benefits of exercise number {i}?")
        a = generate_reply(msgs, seed=3)
        assert a == generate_reply(msgs, seed=3)
        assert 60 <= len(a.text.split()) <= 200
    assert generate_reply(user("x y z?"), seed=1) != generate_reply(user("x y z?"), seed=2)


def test_content_faults_follow_rates_and_have_their_shape() -> None:
    rates = ContentFaultRates(sorry=0.2, stopwords=0.2, copy_prompt=0.5, equal=0.5)
    answers = [generate_reply(user(f"Question {i}?"), content_faults=rates) for i in range(400)]
    sorry = [a for a in answers if a.fault == "sorry"]
    stop = [a for a in answers if a.fault == "stopwords"]
    assert 50 < len(sorry) < 110
    assert 50 < len(stop) < 110
    assert all("sorry" in a.text.lower() and len(a.text.split()) < 80 for a in sorry)
    for a in stop:
        assert all(w in STOP_WORDS for w in re.findall(r"[a-z]+", a.text.lower()))
    leaks = [
        generate_reply(user(EVOLVE.format(f"Task {i}.")), content_faults=rates) for i in range(100)
    ]
    copied = [r for r in leaks if r.fault == "copy_prompt"]
    assert 30 < len(copied) < 70
    assert all(
        re.search(r"#Rewritten Prompt#|given prompt|rewritten prompt", r.text) for r in copied
    )
    eq = [
        generate_reply(user(f"Equal or Not Equal? {i}"), content_faults=rates) for i in range(100)
    ]
    assert {r.text for r in eq if r.fault == "equal"} == {"Equal"}


def test_a_registered_recogniser_takes_precedence() -> None:
    def method_judge(ctx: ReplyContext) -> Reply | None:
        return Reply("λ=0.25", "autoevol_lambda") if "<<failure-rate>>" in ctx.prompt else None

    register_recogniser(method_judge)
    try:
        assert generate_reply(user("<<failure-rate>> [[A]] [[B]]")).kind == "autoevol_lambda"
        assert generate_reply(user("[[A]] [[B]]")).kind == "judge_pairwise"
    finally:
        replies_module.RECOGNISERS.remove(method_judge)


async def test_stats_count_replies_and_content_faults_and_reset(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(content_faults={"sorry": 0.3})
    client = make_client("openai-compatible", [server.openai_url])
    msgs = [user(f"Why is topic {i} interesting?") for i in range(30)]
    results = await asyncio.gather(*(client.complete(m, GenerationParams()) for m in msgs))
    stats = server.stats()
    n_sorry = sum("sorry" in r.text.lower() for r in results)
    assert stats.replies_by_kind == {"answer": 30}
    assert stats.content_faults.get("sorry", 0) == n_sorry > 0
    assert stats.content_faults_distinct["sorry"] == n_sorry
    server.reset()
    assert server.stats().requests == 0


async def test_content_fault_is_the_same_on_retry(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(content_faults={"sorry": 1.0}, faults={"server_error": 0.5})
    client = make_client("openai-compatible", [server.openai_url], max_attempts=20)
    first = await client.complete(user("Explain tides."), GenerationParams())
    again = await client.complete(user("Explain tides."), GenerationParams())
    assert first.text == again.text
    assert "sorry" in first.text.lower()


@pytest.mark.parametrize("overflow", ["reject", "queue"])
async def test_server_side_cap_rejects_or_queues(
    overflow: str, start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock(
        max_concurrency=2, overflow=overflow, overflow_retry_after_s=0,
        latency={"kind": "fixed", "value_s": 0.02},
    )  # fmt: skip
    # 4 → 2 after the first 429, held for 2 s: then the client fits the server cap
    client = make_client("openai-compatible", [server.openai_url], concurrency=4, max_attempts=100)
    await asyncio.gather(*(client.complete(user(f"q{i}"), GenerationParams()) for i in range(24)))
    stats = server.stats()
    assert stats.completed == 24
    if overflow == "reject":
        assert stats.rejected_overflow > 0
        assert client.statistics().shrinks >= 1  # 429s made the client back off
        assert client.statistics().limit <= 3
    else:
        assert stats.rejected_overflow == 0


async def test_models_route_and_bad_requests(start_mock: StartMock) -> None:
    server = await start_mock(models=["a", "b"])
    async with aiohttp.ClientSession() as s:
        async with s.get(server.openai_url + "/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["a", "b"]
        async with s.post(server.openai_url + "/chat/completions", data=b"{nope") as r:
            assert r.status == 400


async def test_anthropic_route_sees_the_system_prompt(start_mock: StartMock) -> None:
    server = await start_mock()
    body = {
        "model": "m", "max_tokens": 50, "system": "Judge fairly: [[A]] or [[B]].",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Which?"}]}],
    }  # fmt: skip
    async with aiohttp.ClientSession() as s, s.post(server.url + "/v1/messages", json=body) as r:
        data = await r.json()
    assert data["type"] == "message"
    assert re.search(r"\[\[[ABC]\]\]", data["content"][0]["text"])


async def test_subprocess_server_serves_and_reports() -> None:
    config = MockConfig(seed=5, content_faults=ContentFaultRates(sorry=1.0))
    async with spawn_mock_server(config) as mock:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", mock.url)
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi there?"}]}
        async with (
            aiohttp.ClientSession() as s,
            s.post(mock.openai_url + "/chat/completions", json=body) as r,
        ):
            text = (await r.json())["choices"][0]["message"]["content"]
        assert "sorry" in text.lower()
        stats = await mock.stats()
        assert stats.requests == 1
        assert stats.content_faults == {"sorry": 1}
        await mock.configure(MockConfig())
        assert (await mock.stats()).requests == 0
    assert mock.process.returncode is not None


def test_cli_rejects_a_bad_config(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.llm.mock.cli import main

    assert main(["--fault", "rate_limited=2"]) == 2
    assert "invalid configuration" in capsys.readouterr().err


def test_latency_distributions_are_seeded_and_bounded() -> None:
    import random

    from agents.llm.mock import LatencyConfig

    uniform = LatencyConfig(kind="uniform", low_s=0.1, high_s=0.3)
    draws = [uniform.draw(random.Random(i)) for i in range(200)]
    assert all(0.1 <= d <= 0.3 for d in draws)
    lognormal = LatencyConfig(kind="lognormal", value_s=0.2, sigma=0.5)
    a = [lognormal.draw(random.Random(7)) for _ in range(3)]
    assert a == [lognormal.draw(random.Random(7)) for _ in range(3)]
    many = sorted(lognormal.draw(r) for r in [random.Random(9)] for _ in range(2001))
    assert 0.15 < many[1000] < 0.27  # the median is value_s
    assert LatencyConfig(kind="fixed", value_s=0.05).draw(random.Random()) == 0.05
