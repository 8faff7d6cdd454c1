"""The `openai` backend: the official SDK (`AsyncOpenAI`) against one endpoint.

One SDK client per endpoint, created once and reused for every call; `max_retries=0` (the managed
client is the only retry layer); the per-attempt timeout is passed on every call and also bounds
the whole attempt. SDK exceptions are mapped to `agents.llm.errors` types.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import openai

from agents.llm.backends._http import (
    connection_error,
    error_from_status,
    openai_request_kwargs,
    resolve_api_key,
    scrub,
    sdk_error_message,
)
from agents.llm.config import BackendConfig
from agents.llm.errors import (
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["OpenAITransport", "create_transport"]


class OpenAITransport:
    """One attempt through `AsyncOpenAI.chat.completions.create`."""

    backend = "openai"

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint
        self._config = config
        # newer OpenAI models take `max_completion_tokens` instead of `max_tokens`
        self._max_tokens_field = str(config.options.get("max_tokens_field", "max_tokens"))
        self._client = openai.AsyncOpenAI(
            api_key=resolve_api_key(config),
            base_url=endpoint,
            max_retries=0,
            timeout=config.timeout_s,
        )

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        kw = openai_request_kwargs(params)
        if self._max_tokens_field != "max_tokens" and "max_tokens" in kw:
            kw[self._max_tokens_field] = kw.pop("max_tokens")
        if params.repeat_penalty is not None:
            kw["extra_body"] = {"repetition_penalty": params.repeat_penalty}
        msgs: Any = [{"role": m.role, "content": m.content} for m in messages]
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._client.chat.completions.create(
                    model=self.model, messages=msgs, timeout=timeout_s, **kw
                )
        except TimeoutError:
            raise LLMTimeoutError(self._where(f"no answer within {timeout_s:g}s")) from None
        except openai.APITimeoutError:
            raise LLMTimeoutError(self._where(f"no answer within {timeout_s:g}s")) from None
        except openai.APIConnectionError as exc:
            raise connection_error(exc, self._where) from None
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            raise MalformedResponseError(self._where(f"unreadable response: {exc}")) from None
        except openai.OpenAIError as exc:
            raise MalformedResponseError(self._where(f"{type(exc).__name__}: {exc}")) from None
        return self._completion(resp, time.perf_counter() - t0)

    def _where(self, what: str) -> str:
        return scrub(f"LLM backend 'openai' at {self.endpoint}: {what}", self._config)

    def _status_error(self, exc: openai.APIStatusError) -> LLMError:
        message = sdk_error_message(exc.message, exc.body)
        return error_from_status(
            exc.status_code,
            message,
            exc.response.headers,
            config=self._config,
            url=self.endpoint,
        )

    def _completion(self, resp: Any, latency_s: float) -> Completion:
        try:
            choice = resp.choices[0]
            text = choice.message.content
            finish = choice.finish_reason or "stop"
        except (AttributeError, IndexError, TypeError) as exc:
            raise MalformedResponseError(self._where(f"response without choices: {exc}")) from None
        if not text:
            raise MalformedResponseError(self._where("empty completion content"))
        usage = getattr(resp, "usage", None)
        return Completion(
            text=text,
            finish_reason=str(finish),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            backend=self.backend,
            model=str(getattr(resp, "model", "") or self.model),
            latency_s=latency_s,
        )

    async def aclose(self) -> None:
        await self._client.close()


def create_transport(config: BackendConfig, endpoint: str) -> OpenAITransport:
    return OpenAITransport(config, endpoint)
