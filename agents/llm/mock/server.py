"""The mock LLM server: OpenAI- and Anthropic-compatible HTTP on aiohttp, with fault injection.

Routes: `POST /v1/chat/completions`, `GET /v1/models` (OpenAI), `POST /v1/messages` (Anthropic),
the OpenAI Batch API subset in `batches` (`/v1/files`, `/v1/batches`), Anthropic's Message
Batches in `anthropic_batches` (`/v1/messages/batches`), `GET /mock/stats`,
`POST /mock/reset` (zero the counters, reseed the RNGs, forget files and batches),
`POST /mock/config` (replace the `MockConfig`, then reset as `/mock/reset` does but keep the files
and batches: a batch runs under the config it was created with).

Per request, in order: auth (when `api_key` is set) → the server-side concurrency cap (reject with
429 or queue) → one transport-fault draw from the seeded RNG (429 with Retry-After, 500, 503/529,
hang, malformed body, empty content) → the reply (deterministic in the request content, see
`replies`) → latency (the distribution, plus completion tokens / `tokens_per_s`) → the JSON answer.
`peak_in_flight` counts requests received concurrently (what a client's cap must bound).
Handlers are cancelled when the client disconnects, so a hung or timed-out request stops counting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from agents.llm.mock.anthropic_batches import MessageBatchStore
from agents.llm.mock.batches import BatchStore, Handler
from agents.llm.mock.config import TRANSPORT_FAULTS, MockConfig
from agents.llm.mock.replies import Reply, generate_reply
from agents.llm.types import ChatMessage

__all__ = ["MockLLMServer", "MockStats", "build_app"]

Api = Literal["openai", "anthropic"]


class MockStats(BaseModel):
    """What the mock has seen since start or the last reset."""

    requests: int = 0
    requests_by_route: dict[str, int] = Field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    completed: int = 0
    replies_by_kind: dict[str, int] = Field(default_factory=dict)
    content_faults: dict[str, int] = Field(default_factory=dict)
    content_faults_distinct: dict[str, int] = Field(default_factory=dict)
    """Distinct request contents per content fault (a repeated request counts once)."""
    transport_faults: dict[str, int] = Field(default_factory=dict)
    rejected_overflow: int = 0
    auth_failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    process_cpu_s: float = 0.0
    """CPU seconds used by the server's process since start (for benchmarks)."""
    files_uploaded: int = 0
    batches_created: int = 0
    """OpenAI batches and Anthropic Message Batches created."""
    batch_lines: int = 0
    """Batch lines (both APIs) answered or failed by a line failure (their replies also count in
    `replies_by_kind`, `content_faults` and the token totals, as direct requests do)."""


class _State:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.batches = BatchStore(self.openai_completion, config)
        self.message_batches = MessageBatchStore(self.anthropic_message, config)
        self.reset()

    def reset(self, *, keep_batches: bool = False) -> None:
        self.fault_rng = random.Random(self.config.seed)
        self.latency_rng = random.Random(self.config.seed + 1)
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.active = 0
        self.completed = 0
        self.kinds: Counter[str] = Counter()
        self.content_faults: Counter[str] = Counter()
        self.fault_digests: dict[str, set[bytes]] = {}
        self.transport_faults: Counter[str] = Counter()
        self.rejected = 0
        self.auth_failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.slots = asyncio.Semaphore(self.config.max_concurrency or 1)
        self.batches.reset(self.config, keep_batches=keep_batches)
        self.message_batches.reset(self.config, keep_batches=keep_batches)

    def stats(self) -> MockStats:
        return MockStats(
            requests=self.requests,
            requests_by_route=dict(self.by_route),
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            completed=self.completed,
            replies_by_kind=dict(self.kinds),
            content_faults=dict(self.content_faults),
            content_faults_distinct={k: len(v) for k, v in self.fault_digests.items()},
            transport_faults=dict(self.transport_faults),
            rejected_overflow=self.rejected,
            auth_failures=self.auth_failures,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            process_cpu_s=time.process_time(),
            files_uploaded=self.batches.files_uploaded,
            batches_created=self.batches.batches_created + self.message_batches.batches_created,
            batch_lines=self.batches.batch_lines + self.message_batches.batch_lines,
        )

    def count(self, c: _Completion, *, content_fault: bool = True) -> None:
        """Count an answered request: its reply kind, content fault (if shown) and tokens."""
        self.kinds[c.reply.kind] += 1
        if c.reply.fault and content_fault:
            self.content_faults[c.reply.fault] += 1
            self.fault_digests.setdefault(c.reply.fault, set()).add(_digest(c.msgs))
        self.prompt_tokens += c.ptok
        self.completion_tokens += c.ctok

    def completion(self, api: Api, body: dict[str, Any], config: MockConfig) -> dict[str, Any]:
        """What the `api`'s route answers for `body` under `config` (`_parse` + `_complete`, as
        the route does), counted in the stats; no transport faults or latency.
        ValueError/TypeError if `body` is bad."""
        msgs, parsed = _parse(api, body)
        done = _complete(config, api, msgs, parsed)
        self.count(done)
        return done.body

    def openai_completion(self, body: dict[str, Any], config: MockConfig) -> dict[str, Any]:
        """The chat.completion object `POST /v1/chat/completions` answers for `body`."""
        return self.completion("openai", body, config)

    def anthropic_message(self, body: dict[str, Any], config: MockConfig) -> dict[str, Any]:
        """The Message object `POST /v1/messages` answers for `body`."""
        return self.completion("anthropic", body, config)

    def draw_fault(self) -> str | None:
        rates = self.config.faults
        u = self.fault_rng.random()
        acc = 0.0
        for kind in TRANSPORT_FAULTS:
            acc += float(getattr(rates, kind))
            if u < acc:
                return kind
        return None


def _error(api: Api, status: int, kind: str, message: str, **headers: str) -> web.Response:
    if api == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "code": kind}}
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _unauthorised(api: Api) -> web.Response:
    kind = "authentication_error" if api == "anthropic" else "invalid_api_key"
    return _error(api, 401, kind, "invalid API key")


def _retry(seconds: float) -> dict[str, str]:
    return {"Retry-After": f"{seconds:g}", "retry-after-ms": f"{seconds * 1000:g}"}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b
        )
    raise ValueError("message content must be a string or a list of text blocks")


def _parse(api: Api, body: Any) -> tuple[list[ChatMessage], dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise ValueError("body must be a JSON object with a `messages` list")
    msgs: list[ChatMessage] = []
    if api == "anthropic" and body.get("system"):
        msgs.append(ChatMessage(role="system", content=_content_text(body["system"])))
    for m in body["messages"]:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        msgs.append(ChatMessage(role=m.get("role"), content=_content_text(m.get("content"))))
    return msgs, body


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


def _shape(text: str, body: dict[str, Any], api: Api) -> tuple[str, str]:
    """Apply stop sequences and max_tokens; return (text, finish reason in the api's words)."""
    stops = body.get("stop_sequences" if api == "anthropic" else "stop") or []
    if isinstance(stops, str):
        stops = [stops]
    for s in stops:
        if s and s in text:
            text = text[: text.index(s)]
            return text, "stop_sequence" if api == "anthropic" else "stop"
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0 and _tokens(text) > max_tokens:
        return text[: max_tokens * 4], "max_tokens" if api == "anthropic" else "length"
    return text, "end_turn" if api == "anthropic" else "stop"


def _reply_body(
    api: Api, model: str, text: str, finish: str, ptok: int, ctok: int
) -> dict[str, Any]:
    if api == "anthropic":
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": finish,
            "stop_sequence": None,
            "usage": {"input_tokens": ptok, "output_tokens": ctok},
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": ptok, "completion_tokens": ctok, "total_tokens": ptok + ctok},
    }


@dataclass(frozen=True)
class _Completion:
    body: dict[str, Any]
    """The API's JSON answer."""
    reply: Reply
    msgs: list[ChatMessage]
    ptok: int
    ctok: int


def _complete(
    cfg: MockConfig, api: Api, msgs: list[ChatMessage], body: dict[str, Any], *, empty: bool = False
) -> _Completion:
    """The answer to a parsed request (reply, stop/max_tokens, usage, JSON body); no I/O, no
    fault draws. `empty`: the `empty` transport fault (blank content)."""
    model = str(body.get("model") or cfg.models[0])
    sample_seed = body.get("seed")
    reply = generate_reply(
        msgs,
        seed=cfg.seed,
        content_faults=cfg.content_faults,
        sample_seed=sample_seed if type(sample_seed) is int else None,
    )
    text, finish = _shape(reply.text, body, api)
    if empty:
        text = ""
    ptok = _tokens("\n".join(m.content for m in msgs))
    ctok = _tokens(text)
    return _Completion(_reply_body(api, model, text, finish, ptok, ctok), reply, msgs, ptok, ctok)


class _Handlers:
    def __init__(self, state: _State) -> None:
        self.s = state

    async def openai_chat(self, request: web.Request) -> web.Response:
        return await self._serve(request, "openai", "chat.completions")

    async def anthropic_messages(self, request: web.Request) -> web.Response:
        return await self._serve(request, "anthropic", "messages")

    async def models(self, request: web.Request) -> web.Response:
        s = self.s
        s.by_route["models"] += 1
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "mock"} for m in s.config.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.s.stats().model_dump())

    async def reset(self, request: web.Request) -> web.Response:
        self.s.reset()
        return web.json_response({"ok": True})

    async def configure(self, request: web.Request) -> web.Response:
        try:
            config = MockConfig.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.s.config = config
        self.s.reset(keep_batches=True)
        return web.json_response({"ok": True})

    def guarded(self, route: str, handler: Handler, api: Api = "openai") -> Handler:
        """`handler` behind the `api` routes' API-key check, counted in `requests_by_route`."""

        async def serve(request: web.Request) -> web.StreamResponse:
            self.s.by_route[route] += 1
            if not self._authorised(request, api):
                self.s.auth_failures += 1
                return _unauthorised(api)
            return await handler(request)

        return serve

    def _authorised(self, request: web.Request, api: Api) -> bool:
        key = self.s.config.api_key
        if key is None:
            return True
        # Anthropic clients send x-api-key (older SDKs) or a Bearer token; accept both anywhere
        return (
            request.headers.get("Authorization") == f"Bearer {key}"
            or request.headers.get("x-api-key") == key
        )

    async def _serve(self, request: web.Request, api: Api, route: str) -> web.Response:
        s = self.s
        s.requests += 1
        s.by_route[route] += 1
        s.in_flight += 1
        s.peak_in_flight = max(s.peak_in_flight, s.in_flight)
        try:
            if not self._authorised(request, api):
                s.auth_failures += 1
                return _unauthorised(api)
            cap = s.config.max_concurrency
            if cap is None:
                return await self._answer(request, api)
            if s.active >= cap and s.config.overflow == "reject":
                s.rejected += 1
                s.transport_faults["overflow"] += 1
                ra = _retry(s.config.overflow_retry_after_s)
                return _error(api, 429, "rate_limit_error", "too many concurrent requests", **ra)
            async with s.slots:
                s.active += 1
                try:
                    return await self._answer(request, api)
                finally:
                    s.active -= 1
        finally:
            s.in_flight -= 1

    async def _answer(self, request: web.Request, api: Api) -> web.Response:
        s = self.s
        cfg = s.config
        try:
            msgs, body = _parse(api, json.loads(await request.read()))
        except (ValueError, TypeError, ValidationError) as exc:
            return _error(api, 400, "invalid_request_error", f"bad request: {exc}")
        if cfg.strict_models and body.get("model") not in cfg.models:
            kind = "not_found_error" if api == "anthropic" else "model_not_found"
            return _error(api, 404, kind, f"The model `{body.get('model')}` does not exist.")
        fault = s.draw_fault()
        if fault is not None:
            s.transport_faults[fault] += 1
        f = cfg.faults
        if fault == "rate_limited":
            return _error(
                api, 429, "rate_limit_error", "rate limit reached", **_retry(f.retry_after_s)
            )
        if fault == "server_error":
            return _error(api, 500, "api_error", "internal server error")
        if fault == "overloaded":
            status = 529 if api == "anthropic" else 503
            return _error(api, status, "overloaded_error", "server overloaded")
        if fault == "hang":
            await asyncio.sleep(f.hang_s)
        done = _complete(cfg, api, msgs, body, empty=fault == "empty")
        delay = cfg.latency.draw(s.latency_rng)
        if cfg.tokens_per_s:
            delay += done.ctok / cfg.tokens_per_s
        if delay > 0:
            await asyncio.sleep(delay)
        if fault == "malformed":
            return web.Response(
                status=200, text='{"id": "x", "choices": [{"message": {"content": "tru',
                content_type="application/json",
            )  # fmt: skip
        s.completed += 1
        s.count(done, content_fault=fault != "empty")
        return web.Response(text=json.dumps(done.body), content_type="application/json")


def _digest(msgs: list[ChatMessage]) -> bytes:
    h = hashlib.sha256()
    for m in msgs:
        h.update(m.role.encode() + b"\x00" + m.content.encode() + b"\x01")
    return h.digest()


def build_app(config: MockConfig) -> tuple[web.Application, _State]:
    """The aiohttp application and its state (for embedding in another server)."""
    state = _State(config)
    h = _Handlers(state)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", h.openai_chat)
    app.router.add_get("/v1/models", h.models)
    app.router.add_post("/v1/messages", h.anthropic_messages)
    app.router.add_get("/mock/stats", h.stats)
    app.router.add_post("/mock/reset", h.reset)
    app.router.add_post("/mock/config", h.configure)
    for method, path, route, handler in state.batches.routes():
        app.router.add_route(method, path, h.guarded(route, handler))
    for method, path, route, handler in state.message_batches.routes():
        app.router.add_route(method, path, h.guarded(route, handler, "anthropic"))
    return app, state


class MockLLMServer:
    """The mock server inside the current event loop, on `host`, port 0 by default.

    `async with MockLLMServer(config) as server:` — then `server.url` (`http://127.0.0.1:PORT`),
    `server.openai_url` (`…/v1`, the OpenAI SDK's base URL), `server.anthropic_url` (the Anthropic
    SDK's base URL), `server.stats()`, `server.reset()` and `server.configure(config)`.
    Exiting closes the listener and cancels in-flight handlers.
    """

    def __init__(
        self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config or MockConfig()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._state: _State | None = None
        self.port = 0
        #: how long `stop()` lets in-flight (e.g. hanging) requests finish before cancelling them
        self.shutdown_timeout_s = 1.0

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("MockLLMServer is not started")
        return f"http://{self._host}:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def _st(self) -> _State:
        if self._state is None:
            raise RuntimeError("MockLLMServer is not started")
        return self._state

    def stats(self) -> MockStats:
        return self._st().stats()

    def reset(self) -> None:
        self._st().reset()

    def configure(self, config: MockConfig) -> None:
        """Replace the configuration (faults, latency, …); counters and RNGs restart. Files and
        batches stay (each batch runs under the configuration it was created with)."""
        st = self._st()
        st.config = config
        st.reset(keep_batches=True)

    async def start(self) -> None:
        app, self._state = build_app(self._config)
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self.shutdown_timeout_s,
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        site = web.SockSite(runner, sock, backlog=1024)
        await site.start()
        self.port = int(sock.getsockname()[1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MockLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
