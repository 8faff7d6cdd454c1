"""The batch backends' write-ahead journal closes the gap between a batch's create call and its
journal record: a batch the API accepted just before the run died (or whose create call failed
without an answer) is found at the API and adopted — no line is paid twice — and a submission
the API never saw is submitted again. Real HTTP to the mock's batch APIs, both providers.

Each "kill" leaves a transport stuck at the exact point (right after the create call returned,
or right before it was sent), then closes it — what a SIGKILL leaves in the journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import structlog

from agents.llm.backends._batching import BatchingTransport
from agents.llm.backends.batch_journal import BatchJournal
from agents.llm.errors import BadRequestError, UnavailableError
from agents.llm.mock import MockLLMServer
from agents.llm.usage import UsageRecorder
from tests.llm.conftest import StartMock
from tests.llm.test_batch_backends import Api, ask_all, batch_client, direct_answers

LATENCY_S = 0.2


@pytest.fixture(params=["openai", "anthropic"])
def api(request: pytest.FixtureRequest) -> Api:
    return Api(str(request.param))


async def in_doubt(journal: Path, endpoint: str) -> int:
    """How many submissions the journal holds as written ahead and never settled."""
    db = BatchJournal(journal)
    try:
        return len(await db.in_doubt(endpoint))
    finally:
        db.close()


def is_create(method: str, path: str) -> bool:
    return method == "POST" and path.endswith("/batches")


def is_list(method: str, path: str) -> bool:
    return method == "GET" and path.endswith("/batches")


def intercept(
    transport: BatchingTransport,
    hook: Callable[[str, str, Callable[[], Awaitable[Any]]], Awaitable[Any]],
) -> None:
    """Route every API request of ``transport`` through ``hook(method, path, send)``."""
    original = transport._request

    async def request(method: str, path: str, **kwargs: Any) -> Any:
        return await hook(method, path, lambda: original(method, path, **kwargs))

    transport._request = request  # type: ignore[method-assign]


async def killed_in_the_gap(
    api: Api,
    mock: MockLLMServer,
    usage: UsageRecorder,
    journal: Path,
    *,
    sent: bool,
    first: int = 0,
    n: int = 20,
) -> list[str]:
    """Prompts ``first``..``first+n`` asked of a client that dies right after its create call
    returned (``sent``) or right before it was sent; the journal write after it never runs.
    Returns the ids of the files it uploaded (OpenAI)."""
    client, transport = batch_client(api, mock, usage, journal, name="killed")
    reached = asyncio.Event()
    uploaded: list[str] = []

    async def hook(method: str, path: str, send: Callable[[], Awaitable[Any]]) -> Any:
        if method == "POST" and path == "/files":
            reply = await send()
            uploaded.append(reply["id"])
            return reply
        if not is_create(method, path):
            return await send()
        reply = await send() if sent else None
        reached.set()
        await asyncio.Event().wait()  # the kill: nothing after this point runs
        return reply

    intercept(transport, hook)
    calls = asyncio.ensure_future(ask_all(client, first + n, first))
    with anyio.fail_after(20):
        await reached.wait()
    calls.cancel()
    await client.aclose()
    assert await in_doubt(journal, api.url(mock)) == 1
    return uploaded


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as reply:
        return reply.status, await reply.json(content_type=None)


async def lines_submitted(api: Api, mock: MockLLMServer) -> int:
    """Requests in all batches the mock holds, finished or not (counted from the batch list)."""
    if api.name == "openai":
        status, page = await get(f"{mock.openai_url}/batches?limit=100")
        assert status == 200
        assert not page["has_more"]
        return sum(int(b["request_counts"]["total"]) for b in page["data"])
    status, page = await get(f"{mock.anthropic_url}/v1/messages/batches?limit=1000")
    assert status == 200
    assert not page["has_more"]
    return sum(sum(b["request_counts"].values()) for b in page["data"])


async def foreign_batch(api: Api, mock: MockLLMServer, n: int, tag: str) -> str:
    """A batch of ``n`` requests created at the mock by some other client (no journal of ours)."""
    async with aiohttp.ClientSession() as session:
        if api.name == "openai":
            lines = "".join(
                json.dumps({
                    "custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "mock-model",
                             "messages": [{"role": "user", "content": f"{tag} {i}?"}]},
                }) + "\n"
                for i in range(n)
            )  # fmt: skip
            form = aiohttp.FormData()
            form.add_field("purpose", "batch")
            form.add_field("file", lines.encode(), filename="other.jsonl")
            async with session.post(f"{mock.openai_url}/files", data=form) as reply:
                file_id = (await reply.json())["id"]
            body = {
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            }
            async with session.post(f"{mock.openai_url}/batches", json=body) as reply:
                return str((await reply.json())["id"])
        requests = [
            {"custom_id": f"{tag}-{i}", "params": {
                "model": "mock-model", "max_tokens": 64,
                "messages": [{"role": "user", "content": f"{tag} {i}?"}]}}
            for i in range(n)
        ]  # fmt: skip
        url = f"{mock.anthropic_url}/v1/messages/batches"
        async with session.post(url, json={"requests": requests}) as reply:
            return str((await reply.json())["id"])


async def test_a_batch_created_just_before_a_kill_is_adopted_and_no_line_is_paid_twice(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    await killed_in_the_gap(api, mock, usage, journal, sent=True)
    assert mock.stats().batches_created == 1  # the API has the batch; the journal does not
    for i in range(3):  # newer batches of other sizes: the lookup pages past them
        await foreign_batch(api, mock, 3, f"other{i}")

    client, transport = batch_client(api, mock, usage, journal, name="resumed")
    transport.list_page_size = 2  # type: ignore[misc]
    answers = await ask_all(client, 20)
    await client.aclose()
    stats = mock.stats()
    list_route = "batches.list" if api.name == "openai" else "messages.batches.list"
    assert stats.requests_by_route[list_route] == 2  # pages of 2 and 2 batches (ours: 4th)
    assert stats.batches_created == 4  # ours once, the three others
    assert await lines_submitted(api, mock) == 20 + 3 * 3  # no line of ours twice
    assert stats.batch_lines == 20
    assert (transport.adopted, transport.submitted) == (1, 0)
    assert await in_doubt(journal, api.url(mock)) == 0
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)

    # adopted answers are journaled like any others: a third client asks the API nothing
    requests = sum(mock.stats().requests_by_route.values())
    again, _ = batch_client(api, mock, usage, journal, name="third")
    assert [a.text for a in await ask_all(again, 20)] == [a.text for a in answers]
    await again.aclose()
    assert sum(mock.stats().requests_by_route.values()) == requests


async def test_a_submission_the_api_never_saw_is_submitted_again(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    orphans = await killed_in_the_gap(api, mock, usage, journal, sent=False)
    assert mock.stats().batches_created == 0

    client, transport = batch_client(api, mock, usage, journal, name="resumed")
    answers = await ask_all(client, 20)
    await client.aclose()
    stats = mock.stats()
    assert (stats.batches_created, stats.batch_lines) == (1, 20)
    assert (transport.adopted, transport.submitted) == (0, 1)
    assert await in_doubt(journal, api.url(mock)) == 0
    if api.name == "openai":  # the killed run's input file, uploaded but never batched: deleted
        [orphan] = orphans
        assert stats.files_uploaded == 2
        assert stats.requests_by_route["files.delete"] == 1
        assert (await get(f"{mock.openai_url}/files/{orphan}/content"))[0] == 404
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)


async def test_a_create_call_that_failed_after_the_api_accepted_it_is_looked_up_not_resubmitted(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    """No kill: the create call's connection drops after the API created the batch, the calls
    get a retryable error, and their retries find the batch — before anything goes out again.
    The first lookup fails and the second hangs past its deadline: each failure goes back to
    the retry layer, and nothing is resubmitted meanwhile."""
    mock = await start_mock(batch_latency_s=LATENCY_S)
    client, transport = batch_client(api, mock, usage, tmp_path / "j.sqlite", max_attempts=6)
    transport._lookup_deadline_s = 0.2
    lists = 0
    stuck = asyncio.Event()

    async def hook(method: str, path: str, send: Callable[[], Awaitable[Any]]) -> Any:
        nonlocal lists
        if is_create(method, path) and transport.submitted == 0 and not stuck.is_set():
            await send()
            stuck.set()
            raise UnavailableError("connection reset by peer (after the API accepted)")
        if is_list(method, path):
            lists += 1
            if lists == 1:
                raise UnavailableError("listing failed")
            if lists == 2:
                await asyncio.Event().wait()  # past the lookup's deadline
        return await send()

    intercept(transport, hook)
    try:
        answers = await ask_all(client, 20)
        stats = client.statistics()
    finally:
        await client.aclose()
    assert lists == 3
    assert (mock.stats().batches_created, mock.stats().batch_lines) == (1, 20)
    assert (transport.adopted, transport.submitted) == (1, 0)
    assert stats.shrinks == 0
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)


async def test_a_create_call_rejected_with_a_4xx_is_not_in_doubt(
    api: Api, start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    client, transport = batch_client(api, mock, usage, journal, max_attempts=3)
    rejected = 0

    async def hook(method: str, path: str, send: Callable[[], Awaitable[Any]]) -> Any:
        nonlocal rejected
        if is_create(method, path) and not rejected:
            rejected += 1
            raise BadRequestError("rejected (400)")
        return await send()

    intercept(transport, hook)
    try:
        with pytest.raises(BadRequestError):
            await ask_all(client, 3)
        assert await in_doubt(journal, api.url(mock)) == 0
        answers = await ask_all(client, 3)  # asked again: submitted at once, no lookup
    finally:
        await client.aclose()
    list_route = "batches.list" if api.name == "openai" else "messages.batches.list"
    assert mock.stats().requests_by_route.get(list_route, 0) == 0
    assert len(answers) == 3


async def test_openai_batches_carry_their_submission_id_in_metadata(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    mock = await start_mock(batch_latency_s=LATENCY_S)
    client, _ = batch_client(Api("openai"), mock, usage, tmp_path / "j.sqlite")
    try:
        await ask_all(client, 2)
    finally:
        await client.aclose()
    status, page = await get(f"{mock.openai_url}/batches")
    assert status == 200
    [batch] = page["data"]
    assert batch["metadata"]["client"] == "evolagents"
    assert len(batch["metadata"]["evolagents_submission"]) == 32


async def test_anthropic_two_unjournaled_batches_of_its_size_are_ambiguous_and_it_goes_out_again(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    api = Api("anthropic")
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    await killed_in_the_gap(api, mock, usage, journal, sent=True)
    other = await foreign_batch(api, mock, 20, "other")  # same size, same minutes

    client, transport = batch_client(api, mock, usage, journal, name="resumed")
    with structlog.testing.capture_logs() as logs:
        answers = await ask_all(client, 20)
    await client.aclose()
    [warning] = [e for e in logs if e["event"] == "llm_batch_not_found"]
    assert warning["log_level"] == "warning"
    assert "ambiguous: 2 batches of 20 requests" in warning["reason"]
    assert other in warning["reason"]
    assert (transport.adopted, transport.submitted) == (0, 1)
    assert mock.stats().batches_created == 3  # ours, the other client's, ours again
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)


async def test_anthropic_a_journaled_batch_of_its_size_is_no_rival(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    api = Api("anthropic")
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    done, _ = batch_client(api, mock, usage, journal, name="earlier")
    await ask_all(done, 20)  # a batch of 20 lines, journaled, minutes (here: ms) before
    await done.aclose()
    await killed_in_the_gap(api, mock, usage, journal, sent=True, first=20)

    client, transport = batch_client(api, mock, usage, journal, name="resumed")
    answers = await ask_all(client, 40, 20)
    await client.aclose()
    assert (transport.adopted, transport.submitted) == (1, 0)
    assert (mock.stats().batches_created, mock.stats().batch_lines) == (2, 40)
    assert [a.text for a in answers] == (await direct_answers(api, mock, 40))[20:]


async def test_anthropic_a_foreign_batch_adopted_by_mistake_answers_nothing_wrongly(
    start_mock: StartMock, usage: UsageRecorder, tmp_path: Path
) -> None:
    """Our submission never reached the API, but another client's batch of the same size was
    created in the same minutes: it is adopted, answers none of our lines (they are matched by
    custom_id), and our lines go out again once it ended — later, but paid once."""
    api = Api("anthropic")
    mock = await start_mock(batch_latency_s=LATENCY_S)
    journal = tmp_path / "j.sqlite"
    await killed_in_the_gap(api, mock, usage, journal, sent=False)
    await foreign_batch(api, mock, 20, "other")

    client, transport = batch_client(api, mock, usage, journal, name="resumed")
    answers = await ask_all(client, 20)
    await client.aclose()
    assert (transport.adopted, transport.submitted) == (1, 1)
    assert (mock.stats().batches_created, mock.stats().batch_lines) == (2, 40)
    assert [a.text for a in answers] == await direct_answers(api, mock, 20)
