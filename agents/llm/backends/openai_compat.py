"""The `openai-compatible` backend: a lean aiohttp client for OpenAI-compatible servers.

For `vllm serve`, SGLang, llama.cpp's server and the like at high concurrency, where the official
SDK's per-call CPU cost makes the client the bottleneck. One `aiohttp.ClientSession` per endpoint
(created on the first call, inside the running loop), its connector sized above the backend's
concurrency cap; request bodies built with `json.dumps`, responses parsed with `json.loads` into
plain dicts — no per-call model objects besides the returned `Completion`.

POSTs `{endpoint}/chat/completions`; `endpoint` is the base URL including `/v1`.

Options: `repeat_penalty_field` (default `repetition_penalty`), the body field for
`GenerationParams.repeat_penalty`; `guided_choice_field` (e.g. `guided_choice` for vLLM), the
body field that constrains the answer to `GenerationParams.choices` — unset, choices are not sent
(servers reject fields they do not know) and the caller parses the free answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from agents.llm.backends._http import (
    connection_error,
    endpoint_url,
    error_from_status,
    first_token_logprobs,
    openai_request_kwargs,
    resolve_api_key,
    scrub,
)
from agents.llm.config import BackendConfig
from agents.llm.errors import LLMTimeoutError, MalformedResponseError, UnavailableError
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["OpenAICompatTransport", "create_transport"]


class OpenAICompatTransport:
    """One attempt as one HTTP POST over a reused keep-alive session."""

    backend = "openai-compatible"

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint
        self._config = config
        self._url = endpoint_url(endpoint, "chat/completions")
        self._headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            self._headers["Authorization"] = f"Bearer {resolve_api_key(config)}"
        self._limit = max(config.concurrency + 8, 64)
        self._repeat_key = str(config.options.get("repeat_penalty_field", "repetition_penalty"))
        choice_key = config.options.get("guided_choice_field")
        self._choice_key = str(choice_key) if choice_key else None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UnavailableError(self._where("the transport is closed"))
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=self._limit)
            session = aiohttp.ClientSession(connector=connector, headers=self._headers)
            self._session = session
        return session

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        t = self._timeouts.get(seconds)
        if t is None:
            if len(self._timeouts) > 64:
                self._timeouts.clear()
            t = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return t

    def _where(self, what: str) -> str:
        return scrub(f"LLM backend 'openai-compatible' at {self.endpoint}: {what}", self._config)

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        body.update(openai_request_kwargs(params))
        if params.repeat_penalty is not None:
            body[self._repeat_key] = params.repeat_penalty
        if params.choices and self._choice_key is not None:
            body[self._choice_key] = list(params.choices)
        session = self._get_session()
        t0 = time.perf_counter()
        try:
            async with session.post(
                self._url, data=json.dumps(body), timeout=self._timeout(timeout_s)
            ) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise LLMTimeoutError(self._where(f"no answer within {timeout_s:g}s")) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise connection_error(exc, self._where) from None
        if status != 200:
            raise error_from_status(
                status, _error_message(raw), headers, config=self._config, url=self.endpoint
            )
        return self._completion(raw, time.perf_counter() - t0)

    def _completion(self, raw: bytes, latency_s: float) -> Completion:
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MalformedResponseError(
                self._where(f"unreadable response ({type(exc).__name__}: {exc})")
            ) from None
        if not text or not isinstance(text, str):
            raise MalformedResponseError(self._where("empty completion content"))
        return Completion(
            text=text,
            finish_reason=str(choice.get("finish_reason") or "stop"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            backend=self.backend,
            model=str(data.get("model") or self.model),
            latency_s=latency_s,
            first_token_logprobs=first_token_logprobs(choice),
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(data)[:300]


def create_transport(config: BackendConfig, endpoint: str) -> OpenAICompatTransport:
    return OpenAICompatTransport(config, endpoint)
