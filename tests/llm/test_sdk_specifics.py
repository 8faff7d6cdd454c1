"""Backend-specific request shapes, checked by what the mock server answers."""

from __future__ import annotations

import re

from agents.llm.types import ChatMessage, GenerationParams
from tests.llm.conftest import MakeClient, StartMock


async def test_anthropic_system_prompt_reaches_the_server_as_system(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock()
    client = make_client("anthropic", [server.anthropic_url])
    msgs = [
        ChatMessage(role="system", content="Compare the answers and reply [[A]] or [[B]]."),
        ChatMessage(role="user", content="Which one?"),
    ]
    c = await client.complete(msgs, GenerationParams(max_tokens=100))
    assert re.search(r"\[\[[ABC]\]\]$", c.text)
    assert server.stats().replies_by_kind == {"judge_pairwise": 1}


async def test_openai_max_completion_tokens_field(
    start_mock: StartMock, make_client: MakeClient
) -> None:
    server = await start_mock()
    client = make_client(
        "openai", [server.openai_url], options={"max_tokens_field": "max_completion_tokens"}
    )
    c = await client.complete(
        [ChatMessage(role="user", content="Explain rainbows.")], GenerationParams(max_tokens=4)
    )
    assert c.finish_reason == "length"  # the mock honours max_completion_tokens too
