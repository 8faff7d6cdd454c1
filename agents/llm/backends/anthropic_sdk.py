"""The `anthropic` backend: the official SDK (`AsyncAnthropic`) against one endpoint.

System messages are joined into Anthropic's top-level `system` parameter; the remaining turns go
in `messages`. `max_tokens` is required by the API: `options.default_max_tokens` (1024) applies
when params leave it unset. One SDK client per endpoint, `max_retries=0`, the per-attempt
timeout on every call. SDK exceptions are mapped to `agents.llm.errors` types (529 → overloaded).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Sequence
from typing import Any

import anthropic

from agents.llm.backends._http import (
    connection_error,
    error_from_status,
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

__all__ = ["AnthropicTransport", "create_transport"]

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicTransport:
    """One attempt through `AsyncAnthropic.messages.create`."""

    backend = "anthropic"

    def __init__(self, config: BackendConfig, endpoint: str) -> None:
        self.model = config.model
        self.endpoint = endpoint
        self._config = config
        self._default_max_tokens = int(config.options.get("default_max_tokens", 1024))
        self._sampling_kwargs = "temperature" in inspect.signature(
            anthropic.resources.messages.AsyncMessages.create
        ).parameters
        self._client = anthropic.AsyncAnthropic(
            api_key=resolve_api_key(config),
            base_url=endpoint,
            max_retries=0,
            timeout=config.timeout_s,
        )

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns: Any = [
            {"role": m.role, "content": m.content} for m in messages if m.role != "system"
        ]
        kw: dict[str, Any] = {}
        if system:
            kw["system"] = system
        sampling: dict[str, Any] = {}
        if params.temperature is not None:
            sampling["temperature"] = params.temperature
        if params.top_p is not None:
            sampling["top_p"] = params.top_p
        if sampling and self._sampling_kwargs:
            kw.update(sampling)
        elif sampling:
            # SDKs from 2.x take no sampling arguments: send them as request fields, so a server
            # that reads them gets them and one that refuses them says so (a 400, not a TypeError)
            kw["extra_body"] = sampling
        if params.stop:
            kw["stop_sequences"] = list(params.stop)
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._client.messages.create(
                    model=self.model,
                    messages=turns,
                    max_tokens=params.max_tokens or self._default_max_tokens,
                    timeout=timeout_s,
                    **kw,
                )
        except TimeoutError:
            raise LLMTimeoutError(self._where(f"no answer within {timeout_s:g}s")) from None
        except anthropic.APITimeoutError:
            raise LLMTimeoutError(self._where(f"no answer within {timeout_s:g}s")) from None
        except anthropic.APIConnectionError as exc:
            raise connection_error(exc, self._where) from None
        except anthropic.APIStatusError as exc:
            raise self._status_error(exc) from None
        except (anthropic.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
            raise MalformedResponseError(self._where(f"unreadable response: {exc}")) from None
        except anthropic.AnthropicError as exc:
            raise MalformedResponseError(self._where(f"{type(exc).__name__}: {exc}")) from None
        return self._completion(resp, time.perf_counter() - t0)

    def _where(self, what: str) -> str:
        return scrub(f"LLM backend 'anthropic' at {self.endpoint}: {what}", self._config)

    def _status_error(self, exc: anthropic.APIStatusError) -> LLMError:
        message = sdk_error_message(exc.message, exc.body)
        return error_from_status(
            exc.status_code, message, exc.response.headers, config=self._config, url=self.endpoint
        )

    def _completion(self, resp: Any, latency_s: float) -> Completion:
        try:
            parts = [b.text for b in resp.content if getattr(b, "type", "") == "text"]
        except (AttributeError, TypeError) as exc:
            raise MalformedResponseError(self._where(f"response without content: {exc}")) from None
        text = "".join(parts)
        if not text:
            raise MalformedResponseError(self._where("empty completion content"))
        usage = getattr(resp, "usage", None)
        stop = str(getattr(resp, "stop_reason", "") or "end_turn")
        return Completion(
            text=text,
            finish_reason=_FINISH.get(stop, stop),
            prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            backend=self.backend,
            model=str(getattr(resp, "model", "") or self.model),
            latency_s=latency_s,
        )

    async def aclose(self) -> None:
        await self._client.close()


def create_transport(config: BackendConfig, endpoint: str) -> AnthropicTransport:
    return AnthropicTransport(config, endpoint)
