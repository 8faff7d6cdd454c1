"""Translate between our types and llama.cpp's OpenAI-style chat request/stream.

`build_body` maps `GenerationParams` onto the request llama.cpp's server understands (it applies
the model's own chat template). `to_completion` turns a streamed `ChatResult` into a `Completion`
or raises the matching `agents.llm.errors` type; it never returns a partial answer as success.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.llm.embedded._engine import ChatResult
from agents.llm.errors import (
    BadRequestError,
    ContextTooLongError,
    LLMTimeoutError,
    MalformedResponseError,
    OverloadedError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["build_body", "choice_grammar", "to_completion"]


def build_body(
    messages: Sequence[ChatMessage], params: GenerationParams, default_max_tokens: int
) -> dict[str, Any]:
    """The chat request for `messages`/`params`; `None` params keep llama.cpp's defaults.

    Raises `BadRequestError` for requests this backend cannot serve: no messages, or `n > 1`
    (one call yields one `Completion`; ask again with another `sample` for more).
    """
    if not messages:
        raise BadRequestError("embedded: a chat request needs at least one message")
    if params.n != 1:
        raise BadRequestError(f"embedded: n={params.n} is not supported; send n=1 per call")
    body: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "max_tokens": params.max_tokens if params.max_tokens is not None else default_max_tokens,
        "stream_options": {"include_usage": True},
    }
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.seed is not None:
        body["seed"] = params.seed
    if params.stop:
        body["stop"] = list(params.stop)
    if params.repeat_penalty is not None:
        body["repeat_penalty"] = params.repeat_penalty
    if params.choices:
        body["grammar"] = choice_grammar(params.choices)
    if params.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = params.top_logprobs
    return body


def choice_grammar(choices: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are `choices` (llama.cpp decodes nothing else)."""
    def literal(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    return "root ::= " + " | ".join(literal(c) for c in choices)


def to_completion(result: ChatResult, *, latency_s: float, model: str) -> Completion:
    """A `Completion` from a finished stream, or the typed error it amounts to."""
    if result.malformed is not None:
        raise MalformedResponseError(
            f"embedded {model}: bad stream from llama.cpp: {result.malformed}"
        )
    if result.error is not None:
        raise _error(result.error, model)
    if result.cancelled:
        raise LLMTimeoutError(f"embedded {model}: generation was cancelled")
    return Completion(
        text=result.text,
        finish_reason=result.finish_reason or "stop",
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        latency_s=latency_s,
        backend="embedded",
        model=model,
        first_token_logprobs=result.first_token_logprobs,
    )


def _error(err: dict[str, Any], model: str) -> Exception:
    code = err.get("code")
    kind = str(err.get("type", ""))
    message = f"embedded {model}: llama.cpp {code} {kind}: {err.get('message', '')}"
    if kind == "exceed_context_size_error":
        return ContextTooLongError(message + " (raise options.ctx_per_slot or shorten the prompt)")
    if code in (400, 404, 422) or kind == "invalid_request_error":
        return BadRequestError(message)
    return OverloadedError(message)
