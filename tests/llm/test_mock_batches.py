"""The mock server's OpenAI Batch API: upload, batch, poll, download; failures, expiry, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest
from pydantic import ValidationError

from agents.llm.mock import MockConfig, MockLLMServer
from agents.llm.mock.cli import build_config, parser
from tests.llm.conftest import StartMock

CHAT = "/v1/chat/completions"
FINAL = {"completed", "expired", "failed", "cancelled"}
BATCH_KEYS = {
    "id", "object", "endpoint", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
    "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at",
    "request_counts", "metadata",
}  # fmt: skip
PROMPTS = [
    "Why do cats purr?",
    "Compare [[A]] and [[B]]; verdict?",
    "Rate it. Format: [[rating]]",
    "Answer Equal or Not Equal.",
    "Rewrite it.\n<instruction>Name a fruit.</instruction>\n#Rewritten Prompt#:",
    "How do tides work?",
]
Json = dict[str, Any]


def request(cid: str, prompt: str, **body: Any) -> Json:
    body = {"model": "mock-model", "messages": [{"role": "user", "content": prompt}], **body}
    return {"custom_id": cid, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: list[Json]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def lines_of(data: bytes) -> list[Json]:
    return [json.loads(line) for line in data.splitlines()]


class Api:
    """A small client for the mock's OpenAI routes: `(status, JSON)` per call."""

    def __init__(self, session: aiohttp.ClientSession, server: MockLLMServer) -> None:
        self.s = session
        self.base = server.url

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.s.request(method, self.base + path, **kw) as r:
            return r.status, await r.json(content_type=None)

    async def upload(self, data: bytes, purpose: str = "batch", **kw: Any) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", data, filename="requests.jsonl")
        return await self.call("POST", "/v1/files", data=form, **kw)

    async def content(self, file_id: str) -> bytes:
        async with self.s.get(f"{self.base}/v1/files/{file_id}/content") as r:
            assert r.status == 200
            return await r.read()

    async def submit(self, lines: list[Json], **extra: Any) -> Json:
        status, f = await self.upload(jsonl(lines))
        assert status == 200, f
        body = {"input_file_id": f["id"], "endpoint": CHAT, "completion_window": "24h", **extra}
        status, batch = await self.call("POST", "/v1/batches", json=body)
        assert status == 200, batch
        return dict(batch)

    async def wait(self, batch_id: str) -> tuple[Json, list[str]]:
        """Poll until the batch is final: (the batch, the statuses seen, repeats dropped)."""
        seen: list[str] = []
        with anyio.fail_after(10):
            while True:
                status, batch = await self.call("GET", f"/v1/batches/{batch_id}")
                assert status == 200, batch
                if not seen or seen[-1] != batch["status"]:
                    seen.append(batch["status"])
                if batch["status"] in FINAL:
                    return batch, seen
                await anyio.sleep(0.01)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _strip(completion: Json) -> Json:
    return {k: v for k, v in completion.items() if k not in ("id", "created")}


async def test_round_trip_answers_as_chat_completions_do(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, content_faults={"sorry": 0.4}, seed=4)
    api = Api(session, server)
    lines = [request(f"r{i}", p) for i, p in enumerate(PROMPTS)]
    lines.append(request("short", "Explain volcanoes in depth.", max_tokens=5))
    lines.append(request("stopped", "Why is the sky blue?", stop=["the"]))
    created = await api.submit(lines, metadata={"run": "t1"})
    assert set(created) == BATCH_KEYS
    assert created["object"] == "batch"
    assert created["id"].startswith("batch_")
    assert created["status"] == "validating"
    assert created["metadata"] == {"run": "t1"}
    assert created["request_counts"] == {"total": 8, "completed": 0, "failed": 0}
    assert created["output_file_id"] is None
    assert created["in_progress_at"] is None
    assert server.stats().batch_lines == 0  # results are computed when first looked at

    batch, _ = await api.wait(created["id"])
    assert batch["status"] == "completed"
    assert batch["error_file_id"] is None
    assert batch["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    assert batch["completed_at"] is not None
    assert batch["in_progress_at"] is not None
    assert await api.content(batch["input_file_id"]) == jsonl(lines)
    out = {line["custom_id"]: line for line in lines_of(await api.content(batch["output_file_id"]))}
    assert list(out) == [line["custom_id"] for line in lines]
    batch_stats = server.stats()
    assert (batch_stats.batches_created, batch_stats.files_uploaded) == (1, 1)
    assert batch_stats.batch_lines == 8
    assert batch_stats.completed == 0

    server.reset()
    for line in lines:
        got = out[line["custom_id"]]
        assert got["id"].startswith("batch_req_")
        assert got["error"] is None
        assert got["response"]["status_code"] == 200
        assert got["response"]["request_id"]
        status, direct = await api.call("POST", CHAT, json=line["body"])
        assert status == 200
        assert _strip(got["response"]["body"]) == _strip(direct)
    assert out["short"]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    direct_stats = server.stats()
    assert batch_stats.replies_by_kind == direct_stats.replies_by_kind
    assert batch_stats.content_faults == direct_stats.content_faults
    assert batch_stats.content_faults.get("sorry", 0) > 0
    assert batch_stats.prompt_tokens == direct_stats.prompt_tokens
    assert batch_stats.completion_tokens == direct_stats.completion_tokens


async def test_status_advances_with_time(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0.6)
    api = Api(session, server)
    created = await api.submit([request("a", "Hi?")])
    batch, seen = await api.wait(created["id"])
    assert created["status"] == "validating"
    assert [s for i, s in enumerate(seen) if i or s != "validating"] == ["in_progress", "completed"]
    assert batch["in_progress_at"] is not None
    assert batch["completed_at"] is not None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param(b"{nope", "line 3: invalid JSON", id="json"),
        pytest.param(b"[1, 2]", "line 3: expected a JSON object", id="object"),
        pytest.param(json.dumps({**request("x", "q"), "custom_id": 7}), "line 3: `custom_id`"),
        pytest.param(json.dumps(request("a", "q")), "line 3: duplicate custom_id 'a'", id="dup"),
        pytest.param(json.dumps({**request("x", "q"), "method": "GET"}), "line 3: `method`"),
        pytest.param(json.dumps({**request("x", "q"), "url": "/v1/embeddings"}), "line 3: `url`"),
        pytest.param(json.dumps({**request("x", "q"), "body": {"prompt": "q"}}), "line 3: `body`"),
    ],
)
async def test_invalid_lines_are_rejected_with_the_line_number(
    bad: str | bytes, message: str, start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    api = Api(session, server)
    raw = bad.encode() if isinstance(bad, str) else bad
    status, body = await api.upload(jsonl([request("a", "q1")]) + b"\n" + raw + b"\n")
    assert status == 400  # the blank line 2 is skipped but counted
    assert body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"]
    assert server.stats().files_uploaded == 0


async def test_bad_uploads_and_batch_requests(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    api = Api(session, server)
    assert (await api.upload(jsonl([request("a", "q")]), purpose="fine-tune"))[0] == 400
    assert (await api.upload(b"\n\n"))[0] == 400
    assert (await api.call("POST", "/v1/files", data={"purpose": "batch"}))[0] == 400
    garbage = {"Content-Type": "multipart/form-data; boundary=xx"}
    assert (await api.call("POST", "/v1/files", data=b"junk", headers=garbage))[0] == 400
    status, f = await api.upload(jsonl([request("a", "q")]))
    assert status == 200
    assert set(f) == {"id", "object", "bytes", "created_at", "filename", "purpose"}
    assert f["id"].startswith("file-")
    assert f["object"] == "file"
    assert f["purpose"] == "batch"
    assert (f["bytes"], f["filename"]) == (len(jsonl([request("a", "q")])), "requests.jsonl")
    good = {"input_file_id": f["id"], "endpoint": CHAT, "completion_window": "24h"}
    for bad in ({"endpoint": "/v1/embeddings"}, {"completion_window": "1h"}, {"metadata": [1]}):
        status, body = await api.call("POST", "/v1/batches", json={**good, **bad})
        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"


async def test_unknown_ids_are_404(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock()
    api = Api(session, server)
    body = {"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"}
    for method, path, kw in [
        ("GET", "/v1/batches/batch_nope", {}),
        ("POST", "/v1/batches/batch_nope/cancel", {}),
        ("GET", "/v1/files/file-nope/content", {}),
        ("POST", "/v1/batches", {"json": body}),
    ]:
        status, err = await api.call(method, path, **kw)
        assert status == 404, path
        assert err["error"]["type"] == "invalid_request_error"
        assert "nope" in err["error"]["message"]


async def test_line_failures_go_to_the_error_file_reproducibly(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_line_failure_rate=0.5, seed=3)
    api = Api(session, server)
    lines = [request(f"r{i}", f"Question number {i}?") for i in range(20)]

    async def run() -> tuple[Json, list[Json], list[Json]]:
        batch, _ = await api.wait((await api.submit(lines))["id"])
        out = lines_of(await api.content(batch["output_file_id"]))
        err = lines_of(await api.content(batch["error_file_id"]))
        return batch, out, err

    batch, out, err = await run()
    counts = batch["request_counts"]
    assert counts == {"total": 20, "completed": len(out), "failed": len(err)}
    assert len(out) > 0
    assert len(err) > 0
    ids = [x["custom_id"] for x in out + err]
    assert sorted(ids) == sorted(f"r{i}" for i in range(20))
    for e in err:
        assert e["id"].startswith("batch_req_")
        assert e["error"] is None
        assert e["response"]["status_code"] == 500
        assert e["response"]["request_id"]
        assert e["response"]["body"] == {
            "error": {"message": "mock batch line failure", "type": "server_error"}
        }
    stats = server.stats()
    assert stats.batch_lines == 20
    assert sum(stats.replies_by_kind.values()) == len(out)

    server.reset()
    _, _, again = await run()
    assert [e["custom_id"] for e in again] == [e["custom_id"] for e in err]


async def test_all_lines_failing_leaves_no_output_file(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_line_failure_rate=1.0)
    api = Api(session, server)
    batch, _ = await api.wait((await api.submit([request("a", "q"), request("b", "q")]))["id"])
    assert batch["status"] == "completed"
    assert batch["output_file_id"] is None
    assert batch["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    assert len(lines_of(await api.content(batch["error_file_id"]))) == 2


async def test_a_body_the_chat_route_rejects_is_a_400_line(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0)
    api = Api(session, server)
    bad = request("bad", "q")
    bad["body"]["messages"][0]["content"] = 5
    batch, _ = await api.wait((await api.submit([request("ok", "q"), bad]))["id"])
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    [err] = lines_of(await api.content(batch["error_file_id"]))
    assert err["custom_id"] == "bad"
    assert err["response"]["status_code"] == 400
    assert err["response"]["body"]["error"]["type"] == "invalid_request_error"


async def test_expired_batch_answers_the_first_half(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="expired")
    api = Api(session, server)
    lines = [request(f"r{i}", f"Q{i}?") for i in range(5)]
    batch, _ = await api.wait((await api.submit(lines))["id"])
    assert batch["status"] == "expired"
    assert batch["expired_at"] is not None
    assert batch["completed_at"] is None
    assert batch["error_file_id"] is None
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    out = lines_of(await api.content(batch["output_file_id"]))
    assert [x["custom_id"] for x in out] == ["r0", "r1"]
    assert server.stats().batch_lines == 2


async def test_failed_batch_has_errors_and_no_output(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="failed")
    api = Api(session, server)
    batch, _ = await api.wait((await api.submit([request("a", "q")]))["id"])
    assert batch["status"] == "failed"
    assert batch["failed_at"] is not None
    assert batch["output_file_id"] is None
    assert batch["error_file_id"] is None
    assert batch["errors"]["object"] == "list"
    [error] = batch["errors"]["data"]
    assert error["code"] == "mock_failure"
    assert error["line"] is None
    assert error["message"]
    assert server.stats().batch_lines == 0


async def test_cancel(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock(batch_latency_s=3600)
    api = Api(session, server)
    created = await api.submit([request("a", "q")])
    path = f"/v1/batches/{created['id']}"
    status, cancelling = await api.call("POST", path + "/cancel")
    assert status == 200
    assert cancelling["status"] == "cancelling"
    assert cancelling["cancelling_at"] is not None
    batch, seen = await api.wait(created["id"])
    assert seen == ["cancelled"]
    assert batch["cancelled_at"] is not None
    assert batch["output_file_id"] is None
    assert batch["error_file_id"] is None
    assert (await api.call("POST", path + "/cancel"))[1]["status"] == "cancelled"

    server.configure(MockConfig(batch_latency_s=0))
    done, _ = await api.wait((await api.submit([request("a", "q")]))["id"])
    status, err = await api.call("POST", f"/v1/batches/{done['id']}/cancel")
    assert status == 409
    assert "completed" in err["error"]["message"]
    assert server.stats().batch_lines == 1


async def test_list_is_newest_first_and_pages(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0)
    api = Api(session, server)
    ids = [(await api.submit([request("a", "q")]))["id"] for _ in range(3)]
    status, page = await api.call("GET", "/v1/batches", params={"limit": "2"})
    assert status == 200
    assert page["object"] == "list"
    assert page["has_more"] is True
    assert [b["id"] for b in page["data"]] == [ids[2], ids[1]]
    assert all(b["status"] == "completed" for b in page["data"])
    assert (page["first_id"], page["last_id"]) == (ids[2], ids[1])
    status, rest = await api.call("GET", "/v1/batches", params={"limit": "2", "after": ids[1]})
    assert [b["id"] for b in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    status, whole = await api.call("GET", "/v1/batches")
    assert [b["id"] for b in whole["data"]] == ids[::-1]
    assert whole["has_more"] is False
    assert (await api.call("GET", "/v1/batches", params={"limit": "0"}))[0] == 400
    assert server.stats().batches_created == 3
    assert server.stats().requests_by_route["batches.list"] == 4


async def test_auth_and_reset(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock(api_key="sk-mock", batch_latency_s=0)
    api = Api(session, server)
    data = jsonl([request("a", "q")])
    assert (await api.upload(data))[0] == 401
    assert (await api.call("GET", "/v1/batches"))[0] == 401
    assert (await api.call("GET", "/v1/files/file-x/content"))[0] == 401
    assert server.stats().auth_failures == 3
    auth = {"Authorization": "Bearer sk-mock"}
    status, f = await api.upload(data, headers=auth)
    assert status == 200
    body = {"input_file_id": f["id"], "endpoint": CHAT, "completion_window": "24h"}
    assert (await api.call("POST", "/v1/batches", json=body))[0] == 401
    status, batch = await api.call("POST", "/v1/batches", json=body, headers=auth)
    assert status == 200

    async with session.post(server.url + "/mock/reset") as r:
        assert r.status == 200
    stats = server.stats()
    assert (stats.files_uploaded, stats.batches_created, stats.batch_lines) == (0, 0, 0)
    assert (await api.call("GET", f"/v1/batches/{batch['id']}", headers=auth))[0] == 404
    assert (await api.call("POST", "/v1/batches", json=body, headers=auth))[0] == 404


async def test_configure_keeps_batches_and_each_runs_under_its_own_config(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="expired")
    api = Api(session, server)
    first = await api.submit([request("a", "q"), request("b", "q")])
    server.configure(MockConfig(batch_latency_s=0))
    second = await api.submit([request("a", "q"), request("b", "q")])
    assert (await api.wait(first["id"]))[0]["status"] == "expired"
    assert (await api.wait(second["id"]))[0]["status"] == "completed"
    assert server.stats().batch_lines == 3


async def test_openai_sdk_round_trip(start_mock: StartMock) -> None:
    openai = pytest.importorskip("openai")
    server = await start_mock(api_key="sk-mock", batch_latency_s=0)
    client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="sk-mock", max_retries=0)
    try:
        data = jsonl([request("a", "Why do cats purr?"), request("b", "Rate it. [[rating]]")])
        f = await client.files.create(file=("in.jsonl", data), purpose="batch")
        batch = await client.batches.create(
            input_file_id=f.id, endpoint=CHAT, completion_window="24h", metadata={"k": "v"}
        )
        with anyio.fail_after(10):
            while batch.status not in FINAL:
                await anyio.sleep(0.01)
                batch = await client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        assert batch.output_file_id is not None
        assert batch.request_counts is not None
        assert batch.request_counts.completed == 2
        out = lines_of((await client.files.content(batch.output_file_id)).content)
        assert [x["custom_id"] for x in out] == ["a", "b"]
        assert [b.id async for b in client.batches.list(limit=1)] == [batch.id]
        with pytest.raises(openai.NotFoundError):
            await client.batches.retrieve("batch_nope")
    finally:
        await client.close()


def test_config_fields_and_cli_flag() -> None:
    assert build_config(parser().parse_args(["--batch-latency-s", "1.5"])).batch_latency_s == 1.5
    config = MockConfig()
    assert (config.batch_latency_s, config.batch_line_failure_rate) == (0.2, 0.0)
    assert config.batch_outcome == "completed"
    for bad in ({"batch_latency_s": -1}, {"batch_line_failure_rate": 1.5}, {"batch_outcome": "x"}):
        with pytest.raises(ValidationError):
            MockConfig.model_validate(bad)


async def test_openai_sdk_pages_batches_with_their_metadata_and_deletes_files(
    start_mock: StartMock,
) -> None:
    """What the `openai-batch` backend's lookup of an in-doubt submission relies on, through the
    SDK: `batches.list` pages newest first (`after` = `last_id`, while `has_more`), metadata
    round-trips, and a deleted input file cannot start a batch."""
    openai = pytest.importorskip("openai")
    server = await start_mock(api_key="sk-mock", batch_latency_s=3600)
    client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="sk-mock", max_retries=0)
    try:
        ids = []
        for n in range(5):
            f = await client.files.create(file=("in.jsonl", jsonl([request("a", "q")])),
                                          purpose="batch")
            batch = await client.batches.create(
                input_file_id=f.id, endpoint=CHAT, completion_window="24h",
                metadata={"evolagents_submission": f"s{n}"},
            )
            ids.append(batch.id)
        listed = [b async for b in client.batches.list(limit=2)]
        assert [b.id for b in listed] == ids[::-1]
        assert [(b.metadata or {}).get("evolagents_submission") for b in listed] == [
            "s4", "s3", "s2", "s1", "s0",
        ]  # fmt: skip
        page = await client.batches.list(limit=2)
        assert (page.has_more, page.last_id) == (True, ids[3])
        assert server.stats().requests_by_route["batches.list"] == 3 + 1

        orphan = await client.files.create(file=("in.jsonl", jsonl([request("a", "q")])),
                                           purpose="batch")
        deleted = await client.files.delete(orphan.id)
        assert (deleted.id, deleted.deleted) == (orphan.id, True)
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(
                input_file_id=orphan.id, endpoint=CHAT, completion_window="24h"
            )
        with pytest.raises(openai.NotFoundError):
            await client.files.delete(orphan.id)
        assert server.stats().batches_created == 5
    finally:
        await client.close()
