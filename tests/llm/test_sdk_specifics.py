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


async def test_anthropic_sampling_params_reach_the_server_whatever_the_sdk_accepts(
    make_client: MakeClient,
) -> None:
    """anthropic 2.x's `messages.create` takes no temperature/top_p: they must still be sent
    (as request fields), not crash the call with a TypeError."""
    from aiohttp import web

    bodies: list[dict[str, object]] = []

    async def messages(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.json_response({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "Hello."}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2},
        })

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        client = make_client("anthropic", [f"http://127.0.0.1:{port}"])
        c = await client.complete([ChatMessage(role="user", content="Hi")],
                                  GenerationParams(temperature=0.3, top_p=0.8, max_tokens=20))
    finally:
        await runner.cleanup()
    assert c.text == "Hello."
    assert bodies[0]["temperature"] == 0.3
    assert bodies[0]["top_p"] == 0.8
