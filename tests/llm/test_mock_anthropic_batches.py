"""The mock server's Anthropic Message Batches: create, poll, results, failures, expiry, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import anyio
import pytest

from agents.llm.mock import MockConfig, MockLLMServer
from tests.llm.conftest import StartMock

BATCHES = "/v1/messages/batches"
BATCH_KEYS = {
    "id", "type", "processing_status", "request_counts", "ended_at", "created_at", "expires_at",
    "archived_at", "cancel_initiated_at", "results_url",
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


def request(cid: str, prompt: str, **params: Any) -> Json:
    params = {
        "model": "mock-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
        **params,
    }
    return {"custom_id": cid, "params": params}


def counts(**nonzero: int) -> Json:
    return {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0, **nonzero}


def parse_time(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp)


class Api:
    """A small client for the mock's Message Batches routes: `(status, JSON)` per call."""

    def __init__(
        self, session: aiohttp.ClientSession, server: MockLLMServer, key: str | None = None
    ) -> None:
        self.s = session
        self.base = server.url
        self.headers = {"x-api-key": key} if key else {}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        kw["headers"] = {**self.headers, **kw.get("headers", {})}
        async with self.s.request(method, self.base + path, **kw) as r:
            return r.status, await r.json(content_type=None)

    async def create(self, requests: list[Json]) -> Json:
        status, batch = await self.call("POST", BATCHES, json={"requests": requests})
        assert status == 200, batch
        return dict(batch)

    async def results(self, batch_id: str) -> list[Json]:
        headers = self.headers
        async with self.s.get(f"{self.base}{BATCHES}/{batch_id}/results", headers=headers) as r:
            assert r.status == 200, await r.text()
            return [json.loads(line) for line in (await r.read()).splitlines()]

    async def wait(self, batch_id: str) -> tuple[Json, list[str]]:
        """Poll until the batch has ended: (the batch, the statuses seen, repeats dropped)."""
        seen: list[str] = []
        with anyio.fail_after(10):
            while True:
                status, batch = await self.call("GET", f"{BATCHES}/{batch_id}")
                assert status == 200, batch
                if not seen or seen[-1] != batch["processing_status"]:
                    seen.append(batch["processing_status"])
                if batch["processing_status"] == "ended":
                    return batch, seen
                await anyio.sleep(0.01)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _strip(message: Json) -> Json:
    return {k: v for k, v in message.items() if k != "id"}


async def test_round_trip_answers_as_messages_does(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, content_faults={"sorry": 0.4}, seed=4)
    api = Api(session, server)
    reqs = [request(f"r{i}", p) for i, p in enumerate(PROMPTS)]
    reqs.append(request("short", "Explain volcanoes in depth.", max_tokens=5))
    reqs.append(request("stopped", "Why is the sky blue?", stop_sequences=[" "]))
    reqs.append(request("sys", "Hello?", system="Be brief.", temperature=0.2, top_p=0.9))
    reqs.append(request("blocks", "x", messages=[{"role": "user", "content": [
        {"type": "text", "text": "Why is snow white?"}]}]))  # fmt: skip
    created = await api.create(reqs)
    assert set(created) == BATCH_KEYS
    assert created["id"].startswith("msgbatch_")
    assert created["type"] == "message_batch"
    assert created["processing_status"] == "in_progress"
    assert created["request_counts"] == counts(processing=10)
    for key in ("ended_at", "archived_at", "cancel_initiated_at", "results_url"):
        assert created[key] is None
    made = parse_time(created["created_at"])
    assert parse_time(created["expires_at"]) - made == timedelta(hours=24)
    assert server.stats().batch_lines == 0  # results are computed when first looked at

    batch, _ = await api.wait(created["id"])
    assert set(batch) == BATCH_KEYS
    assert batch["request_counts"] == counts(succeeded=10)
    assert parse_time(batch["ended_at"]) >= made
    assert batch["results_url"] == f"{server.url}{BATCHES}/{created['id']}/results"
    assert batch["cancel_initiated_at"] is None
    lines = await api.results(created["id"])
    out = {line["custom_id"]: line for line in lines}
    assert list(out) == [r["custom_id"] for r in reqs]
    batch_stats = server.stats()
    assert batch_stats.batches_created == 1
    assert batch_stats.batch_lines == 10
    assert batch_stats.completed == 0

    server.reset()
    for r in reqs:
        got = out[r["custom_id"]]
        assert set(got) == {"custom_id", "result"}
        assert set(got["result"]) == {"type", "message"}
        assert got["result"]["type"] == "succeeded"
        message = got["result"]["message"]
        assert message["id"].startswith("msg_")
        status, direct = await api.call("POST", "/v1/messages", json=r["params"])
        assert status == 200
        assert _strip(message) == _strip(direct)
    assert out["short"]["result"]["message"]["stop_reason"] == "max_tokens"
    assert out["stopped"]["result"]["message"]["stop_reason"] == "stop_sequence"
    direct_stats = server.stats()
    assert batch_stats.replies_by_kind == direct_stats.replies_by_kind
    assert batch_stats.content_faults == direct_stats.content_faults
    assert batch_stats.content_faults.get("sorry", 0) > 0
    assert batch_stats.prompt_tokens == direct_stats.prompt_tokens
    assert batch_stats.completion_tokens == direct_stats.completion_tokens


async def test_status_advances_with_time_and_results_wait_for_the_end(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0.5)
    api = Api(session, server)
    created = await api.create([request("a", "Hi?")])
    path = f"{BATCHES}/{created['id']}/results"
    status, err = await api.call("GET", path)
    assert status == 400
    assert err == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": err["error"]["message"]},
    }
    assert "batch has not ended" in err["error"]["message"]
    batch, seen = await api.wait(created["id"])
    assert seen[-1] == "ended"
    assert set(seen[:-1]) <= {"in_progress"}  # the 400 above showed it in progress
    assert batch["request_counts"] == counts(succeeded=1)
    assert [x["result"]["type"] for x in await api.results(created["id"])] == ["succeeded"]
    assert server.stats().batch_lines == 1


async def test_results_url_follows_the_request_host(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0)
    api = Api(session, server)
    created = await api.create([request("a", "Hi?")])
    status, batch = await api.call(
        "GET", f"{BATCHES}/{created['id']}", headers={"Host": f"mock.test:{server.port}"}
    )
    assert status == 200
    assert (
        batch["results_url"] == f"http://mock.test:{server.port}{BATCHES}/{created['id']}/results"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param([1], "the body must be a JSON object", id="not-object"),
        pytest.param({}, "requests: must be a non-empty list", id="missing"),
        pytest.param({"requests": []}, "requests: must be a non-empty list", id="empty"),
        pytest.param({"requests": [request("a", "q"), 5]}, "requests.1: expected an object"),
        pytest.param(
            {"requests": [request("a", "q"), request("b", "q"), request("c d", "q")]},
            "requests.2.custom_id: must match",
            id="space",
        ),
        pytest.param({"requests": [request("x" * 65, "q")]}, "requests.0.custom_id", id="too-long"),
        pytest.param({"requests": [{"params": {"messages": []}}]}, "requests.0.custom_id"),
        pytest.param({"requests": [request("", "q")]}, "requests.0.custom_id", id="blank"),
        pytest.param(
            {"requests": [request("a", "q"), request("b", "q"), request("a", "q")]},
            "requests.2.custom_id: duplicate 'a' (first at requests.0)",
            id="duplicate",
        ),
        pytest.param({"requests": [{"custom_id": "a"}]}, "requests.0.params", id="no-params"),
        pytest.param(
            {"requests": [request("a", "q"), {"custom_id": "b", "params": {"model": "m"}}]},
            "requests.1.params: must be an object with a `messages` list",
            id="no-messages",
        ),
    ],
)
async def test_invalid_requests_are_rejected_naming_the_index(
    body: Any, message: str, start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    api = Api(session, server)
    status, err = await api.call("POST", BATCHES, json=body)
    assert status == 400
    assert err["type"] == "error"
    assert err["error"]["type"] == "invalid_request_error"
    assert message in err["error"]["message"]
    assert server.stats().batches_created == 0


async def test_a_body_that_is_not_json_is_a_400(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock()
    api = Api(session, server)
    for data in (b"{nope", b"\xff\xfe"):
        status, err = await api.call("POST", BATCHES, data=data)
        assert status == 400
        assert err["error"]["type"] == "invalid_request_error"
    ok = "a-Z_09" + "x" * 58  # 64 characters of the allowed alphabet
    assert (await api.create([request(ok, "q")]))["request_counts"] == counts(processing=1)


async def test_line_failures_are_errored_reproducibly(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_line_failure_rate=0.5, seed=3)
    api = Api(session, server)
    reqs = [request(f"r{i}", f"Question number {i}?") for i in range(20)]

    async def run() -> tuple[Json, list[Json]]:
        batch, _ = await api.wait((await api.create(reqs))["id"])
        return batch, await api.results(batch["id"])

    batch, lines = await run()
    assert [x["custom_id"] for x in lines] == [r["custom_id"] for r in reqs]
    errored = [x for x in lines if x["result"]["type"] == "errored"]
    succeeded = [x for x in lines if x["result"]["type"] == "succeeded"]
    assert len(errored) + len(succeeded) == 20
    assert errored
    assert succeeded
    assert batch["request_counts"] == counts(succeeded=len(succeeded), errored=len(errored))
    for e in errored:
        assert e["result"] == {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": "api_error", "message": "mock batch line failure"},
            },
        }
    stats = server.stats()
    assert stats.batch_lines == 20
    assert sum(stats.replies_by_kind.values()) == len(succeeded)

    server.reset()
    _, again = await run()
    assert [x["custom_id"] for x in again if x["result"]["type"] == "errored"] == [
        e["custom_id"] for e in errored
    ]


async def test_params_the_messages_route_rejects_are_errored(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0)
    api = Api(session, server)
    bad = request("bad", "q")
    bad["params"]["messages"][0]["content"] = 5
    batch, _ = await api.wait((await api.create([request("ok", "q"), bad]))["id"])
    assert batch["request_counts"] == counts(succeeded=1, errored=1)
    ok, err = await api.results(batch["id"])
    assert (ok["custom_id"], err["custom_id"]) == ("ok", "bad")
    assert err["result"]["type"] == "errored"
    assert err["result"]["error"]["type"] == "error"
    assert err["result"]["error"]["error"]["type"] == "invalid_request_error"
    assert server.stats().batch_lines == 2


async def test_expired_batch_answers_the_first_half(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="expired")
    api = Api(session, server)
    reqs = [request(f"r{i}", f"Q{i}?") for i in range(5)]
    batch, _ = await api.wait((await api.create(reqs))["id"])
    assert batch["request_counts"] == counts(succeeded=2, expired=3)
    lines = await api.results(batch["id"])
    assert [x["custom_id"] for x in lines] == [f"r{i}" for i in range(5)]
    assert [x["result"]["type"] for x in lines] == ["succeeded"] * 2 + ["expired"] * 3
    assert lines[4]["result"] == {"type": "expired"}
    assert server.stats().batch_lines == 2


async def test_failed_outcome_errors_every_line(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="failed")
    api = Api(session, server)
    batch, _ = await api.wait((await api.create([request("a", "q"), request("b", "q")]))["id"])
    assert batch["processing_status"] == "ended"
    assert batch["request_counts"] == counts(errored=2)
    lines = await api.results(batch["id"])
    assert [x["custom_id"] for x in lines] == ["a", "b"]
    for x in lines:
        assert x["result"]["type"] == "errored"
        assert x["result"]["error"]["error"]["type"] == "api_error"
    stats = server.stats()
    assert stats.batch_lines == 0  # nothing was answered
    assert stats.replies_by_kind == {}


async def test_cancel(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock(batch_latency_s=3600)
    api = Api(session, server)
    created = await api.create([request("a", "q"), request("b", "q")])
    path = f"{BATCHES}/{created['id']}"
    status, canceling = await api.call("POST", path + "/cancel")
    assert status == 200
    assert canceling["processing_status"] == "canceling"
    assert canceling["request_counts"] == counts(processing=2)
    assert canceling["results_url"] is None
    initiated = parse_time(canceling["cancel_initiated_at"])
    batch, seen = await api.wait(created["id"])
    assert seen == ["ended"]
    assert batch["request_counts"] == counts(canceled=2)
    assert parse_time(batch["ended_at"]) >= initiated
    assert batch["cancel_initiated_at"] == canceling["cancel_initiated_at"]
    lines = await api.results(created["id"])
    assert lines == [{"custom_id": c, "result": {"type": "canceled"}} for c in ("a", "b")]
    status, again = await api.call("POST", path + "/cancel")
    assert (status, again["processing_status"]) == (200, "ended")

    server.configure(MockConfig(batch_latency_s=0))
    done, _ = await api.wait((await api.create([request("a", "q")]))["id"])
    status, err = await api.call("POST", f"{BATCHES}/{done['id']}/cancel")
    assert status == 400
    assert err["error"]["type"] == "invalid_request_error"
    assert "ended" in err["error"]["message"]
    assert server.stats().batch_lines == 1


async def test_unknown_ids_are_404(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock()
    api = Api(session, server)
    for method, path in [
        ("GET", f"{BATCHES}/msgbatch_nope"),
        ("GET", f"{BATCHES}/msgbatch_nope/results"),
        ("POST", f"{BATCHES}/msgbatch_nope/cancel"),
    ]:
        status, err = await api.call(method, path)
        assert status == 404, path
        assert err["type"] == "error"
        assert err["error"]["type"] == "not_found_error"
        assert "msgbatch_nope" in err["error"]["message"]


async def test_list_is_newest_first_and_pages(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0)
    api = Api(session, server)
    ids = [(await api.create([request("a", "q")]))["id"] for _ in range(3)]
    status, page = await api.call("GET", BATCHES, params={"limit": "2"})
    assert status == 200
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert page["has_more"] is True
    assert [b["id"] for b in page["data"]] == [ids[2], ids[1]]
    assert all(b["processing_status"] == "ended" for b in page["data"])
    assert all(b["results_url"] for b in page["data"])
    assert (page["first_id"], page["last_id"]) == (ids[2], ids[1])
    status, rest = await api.call("GET", BATCHES, params={"limit": "2", "after_id": ids[1]})
    assert [b["id"] for b in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    status, newer = await api.call("GET", BATCHES, params={"limit": "1", "before_id": ids[0]})
    assert [b["id"] for b in newer["data"]] == [ids[1]]
    assert newer["has_more"] is True
    status, whole = await api.call("GET", BATCHES)
    assert [b["id"] for b in whole["data"]] == ids[::-1]
    assert whole["has_more"] is False
    for bad in ({"limit": "0"}, {"limit": "x"}, {"after_id": "msgbatch_nope"}):
        status, err = await api.call("GET", BATCHES, params=bad)
        assert status == 400
        assert err["error"]["type"] == "invalid_request_error"
    stats = server.stats()
    assert stats.batches_created == 3
    assert stats.requests_by_route["messages.batches.list"] == 7
    assert stats.requests_by_route["messages.batches.create"] == 3


async def test_auth_and_reset(start_mock: StartMock, session: aiohttp.ClientSession) -> None:
    server = await start_mock(api_key="sk-mock", batch_latency_s=0)
    anonymous = Api(session, server)
    for method, path in [
        ("POST", BATCHES),
        ("GET", BATCHES),
        ("GET", f"{BATCHES}/msgbatch_x"),
        ("GET", f"{BATCHES}/msgbatch_x/results"),
        ("POST", f"{BATCHES}/msgbatch_x/cancel"),
    ]:
        status, err = await anonymous.call(method, path, json={"requests": [request("a", "q")]})
        assert status == 401, path
        assert err == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid API key"},
        }
    assert (await Api(session, server, "wrong").call("GET", BATCHES))[0] == 401
    assert server.stats().auth_failures == 6
    assert server.stats().batches_created == 0

    api = Api(session, server, "sk-mock")
    batch, _ = await api.wait((await api.create([request("a", "q")]))["id"])
    assert batch["request_counts"] == counts(succeeded=1)
    async with session.post(server.url + "/mock/reset") as r:
        assert r.status == 200
    stats = server.stats()
    assert (stats.batches_created, stats.batch_lines) == (0, 0)
    assert (await api.call("GET", f"{BATCHES}/{batch['id']}"))[0] == 404
    assert (await api.call("GET", BATCHES))[1]["data"] == []


async def test_configure_keeps_batches_and_each_runs_under_its_own_config(
    start_mock: StartMock, session: aiohttp.ClientSession
) -> None:
    server = await start_mock(batch_latency_s=0, batch_outcome="expired")
    api = Api(session, server)
    first = await api.create([request("a", "q"), request("b", "q")])
    async with session.post(server.url + "/mock/config", json={"batch_latency_s": 0}) as r:
        assert r.status == 200
    second = await api.create([request("a", "q"), request("b", "q")])
    assert (await api.wait(first["id"]))[0]["request_counts"] == counts(succeeded=1, expired=1)
    assert (await api.wait(second["id"]))[0]["request_counts"] == counts(succeeded=2)
    stats = server.stats()
    assert (stats.batches_created, stats.batch_lines) == (1, 3)  # counters restart on configure


async def test_anthropic_sdk_round_trip(start_mock: StartMock) -> None:
    anthropic = pytest.importorskip("anthropic")
    server = await start_mock(api_key="sk-mock", batch_latency_s=0, batch_outcome="expired")
    client = anthropic.AsyncAnthropic(
        base_url=server.anthropic_url, api_key="sk-mock", max_retries=0
    )
    try:
        params = {"model": "mock-model", "max_tokens": 64, "system": "Be brief."}
        reqs = [
            {"custom_id": c, "params": {**params, "messages": [{"role": "user", "content": q}]}}
            for c, q in [("a", "Why do cats purr?"), ("b", "Rate it. [[rating]]"), ("c", "Hm?")]
        ]
        batch = await client.messages.batches.create(requests=reqs)
        assert batch.processing_status == "in_progress"
        assert batch.request_counts.processing == 3
        assert batch.expires_at - batch.created_at == timedelta(hours=24)
        with anyio.fail_after(10):
            while batch.processing_status != "ended":
                await anyio.sleep(0.01)
                batch = await client.messages.batches.retrieve(batch.id)
        assert batch.ended_at is not None
        assert batch.results_url == f"{server.url}{BATCHES}/{batch.id}/results"
        assert batch.request_counts.succeeded == 1
        assert batch.request_counts.expired == 2
        results = [r async for r in await client.messages.batches.results(batch.id)]
        assert [r.custom_id for r in results] == ["a", "b", "c"]
        assert [r.result.type for r in results] == ["succeeded", "expired", "expired"]
        message = results[0].result.message
        direct = await client.messages.create(**reqs[0]["params"])
        assert message.model_dump(exclude={"id"}) == direct.model_dump(exclude={"id"})
        assert message.content[0].text

        server.configure(MockConfig(api_key="sk-mock", batch_latency_s=3600))
        second = await client.messages.batches.create(requests=reqs[:1])
        canceled = await client.messages.batches.cancel(second.id)
        assert canceled.processing_status == "canceling"
        assert canceled.cancel_initiated_at is not None
        assert [b.id async for b in client.messages.batches.list(limit=1)] == [
            second.id, batch.id,
        ]  # fmt: skip
        assert (await client.messages.batches.retrieve(second.id)).request_counts.canceled == 1
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.batches.retrieve("msgbatch_nope")
    finally:
        await client.close()


async def test_anthropic_sdk_pages_batches_both_ways(start_mock: StartMock) -> None:
    """What the `anthropic-batch` backend's lookup of an in-doubt submission relies on, through
    the SDK: `messages.batches.list` pages newest first (`after_id` = `last_id`, while
    `has_more`), or towards newer batches from `before_id` (= `first_id`); each batch shows its
    `created_at` and request counts that add up to its size."""
    anthropic = pytest.importorskip("anthropic")
    server = await start_mock(api_key="sk-mock", batch_latency_s=3600)
    client = anthropic.AsyncAnthropic(
        base_url=server.anthropic_url, api_key="sk-mock", max_retries=0
    )
    try:
        ids = []
        for n in range(1, 6):  # batches of 1..5 requests
            reqs = [request(f"r{i}", "q") for i in range(n)]
            ids.append((await client.messages.batches.create(requests=reqs)).id)
        listed = [b async for b in client.messages.batches.list(limit=2)]
        assert [b.id for b in listed] == ids[::-1]
        sizes = [sum(b.request_counts.model_dump().values()) for b in listed]
        assert sizes == [5, 4, 3, 2, 1]
        stamps = [b.created_at for b in listed]
        assert stamps == sorted(stamps, reverse=True)
        newer = [b.id async for b in client.messages.batches.list(limit=2, before_id=ids[0])]
        assert newer == [ids[2], ids[1], ids[4], ids[3]]  # page by page, each page newest first
        assert server.stats().requests_by_route["messages.batches.list"] == 3 + 2
    finally:
        await client.close()
