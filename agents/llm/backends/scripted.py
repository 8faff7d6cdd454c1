"""The `scripted` backend: deterministic replies from rules, a callable or the mock's generator.

For tests and dry runs (the httpx `MockTransport` idea). Options (`[llm.<name>.options]`):

- `rules`: list of `{pattern = "regex", reply = "text"}`; the first whose regex matches the
  prompt (all message contents joined by newlines) wins; `reply` may use `\\1`-style groups.
- `handler`: `"module:function"`, called as `f(messages, params)` (sync or async) returning a
  `str` or a `Completion`; used when no rule matches.
- `plausible`: true → otherwise reply like the mock LLM server would (evolved instructions,
  answers, verdicts), without HTTP.
- `default`: the reply when nothing else applies (default `"OK"`).
- `failures`: list of `{error = "rate_limited"|"overloaded"|"timeout"|"unavailable"|
  "unreachable"|"malformed"|"bad_request"|"auth"|"not_found"|"context_too_long", times = N,
  pattern = "regex"?, retry_after_s = x?}`:
  the first N calls (matching `pattern`, if given) raise that typed error — to exercise retries.

`calls` counts attempts; `requests` keeps every (messages, params) seen.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agents.llm.config import BackendConfig
from agents.llm.errors import (
    AuthenticationError,
    BadRequestError,
    ContextTooLongError,
    LLMError,
    LLMTimeoutError,
    MalformedResponseError,
    NotFoundError,
    OverloadedError,
    RateLimitedError,
    UnavailableError,
    UnreachableError,
)
from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["Failure", "ScriptedTransport", "create_transport", "make_error"]

Handler = Callable[[Sequence[ChatMessage], GenerationParams], Any]

_ERRORS: dict[str, type[LLMError]] = {
    "rate_limited": RateLimitedError,
    "overloaded": OverloadedError,
    "timeout": LLMTimeoutError,
    "unavailable": UnavailableError,
    "unreachable": UnreachableError,
    "malformed": MalformedResponseError,
    "bad_request": BadRequestError,
    "auth": AuthenticationError,
    "not_found": NotFoundError,
    "context_too_long": ContextTooLongError,
}


def make_error(kind: str, message: str, retry_after_s: float | None = None) -> LLMError:
    """The typed error for a stable error `kind` label."""
    cls = _ERRORS.get(kind)
    if cls is None:
        raise ValueError(f"unknown error kind {kind!r}; one of {sorted(_ERRORS)}")
    if cls in (RateLimitedError, OverloadedError):
        return cls(message, retry_after_s)
    return cls(message)


@dataclass
class Failure:
    """Raise `error` for the next `times` calls whose prompt matches `pattern`."""

    error: str
    times: int = 1
    pattern: str | None = None
    retry_after_s: float | None = None


def _load_handler(spec: str) -> Handler:
    module, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"scripted handler {spec!r} must look like 'package.module:function'")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise ValueError(f"scripted handler {spec!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class ScriptedTransport:
    """A deterministic in-memory transport. Never sleeps; raises only the failures scripted."""

    backend = "scripted"

    def __init__(
        self,
        *,
        model: str = "scripted",
        rules: Sequence[tuple[str, str]] = (),
        handler: Handler | None = None,
        plausible: bool = False,
        default: str = "OK",
        failures: Sequence[Failure] = (),
        seed: int = 0,
    ) -> None:
        self.model = model
        self._rules = [(re.compile(p, re.S), r) for p, r in rules]
        self._handler = handler
        self._plausible = plausible
        self._default = default
        self._failures = [(re.compile(f.pattern, re.S) if f.pattern else None, f) for f in failures]
        self._left = [f.times for f in failures]
        self._seed = seed
        self.calls = 0
        self.requests: list[tuple[Sequence[ChatMessage], GenerationParams]] = []

    @classmethod
    def from_config(cls, config: BackendConfig) -> ScriptedTransport:
        opts = dict(config.options)
        rules = [(str(r["pattern"]), str(r["reply"])) for r in opts.pop("rules", [])]
        handler = opts.pop("handler", None)
        failures = [Failure(**f) for f in opts.pop("failures", [])]
        transport = cls(
            model=config.model or "scripted",
            rules=rules,
            handler=_load_handler(handler) if isinstance(handler, str) else None,
            plausible=bool(opts.pop("plausible", False)),
            default=str(opts.pop("default", "OK")),
            failures=failures,
            seed=int(opts.pop("seed", 0)),
        )
        if opts:
            raise ValueError(f"unknown scripted options: {sorted(opts)}")
        return transport

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion:
        self.calls += 1
        self.requests.append((messages, params))
        prompt = "\n".join(m.content for m in messages)
        for i, (pattern, failure) in enumerate(self._failures):
            if self._left[i] > 0 and (pattern is None or pattern.search(prompt)):
                self._left[i] -= 1
                raise make_error(failure.error, "scripted failure", failure.retry_after_s)
        text = await self._reply(messages, params, prompt)
        if isinstance(text, Completion):
            return text
        return Completion(
            text=text,
            prompt_tokens=_tokens(prompt),
            completion_tokens=_tokens(text),
            backend=self.backend,
            model=self.model,
            latency_s=1e-6,
        )

    async def _reply(
        self, messages: Sequence[ChatMessage], params: GenerationParams, prompt: str
    ) -> str | Completion:
        for pattern, reply in self._rules:
            m = pattern.search(prompt)
            if m:
                return m.expand(reply)
        if self._handler is not None:
            out = self._handler(messages, params)
            if inspect.isawaitable(out):
                out = await out
            if not isinstance(out, str | Completion):
                raise MalformedResponseError(f"scripted handler returned {type(out).__name__}")
            return out
        if self._plausible:
            from agents.llm.mock.replies import generate_reply

            plausible: str = generate_reply(
                messages, seed=self._seed, sample_seed=params.seed
            ).text
            return plausible
        return self._default

    async def aclose(self) -> None:
        return None


def create_transport(config: BackendConfig, endpoint: str | None = None) -> ScriptedTransport:
    """Factory hook (endpoints are ignored: the script runs in-process)."""
    return ScriptedTransport.from_config(config)
