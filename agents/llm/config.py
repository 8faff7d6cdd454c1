"""Validated configuration of one LLM backend: a topology TOML's `[llm.<name>]` table.

The runtime embeds `dict[str, BackendConfig]` in its topology model, so every field here is
validated by pydantic with `extra="forbid"` and errors carry clean locations
(`llm.main.rpm: Input should be greater than 0`) — `defaults` (a `GenerationParams`) and
`options` (per backend, `agents.llm.options`) included. Secrets never appear here: `api_key_env`
names an environment variable, read only when a transport is built (a value that looks like a
key itself is refused, without being echoed); a credential in `options` is refused; endpoint
URLs may carry credentials, which everything that writes them masks (`agents.llm.redact`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.llm.redact import looks_like_secret, redact_url
from agents.llm.types import GenerationParams

__all__ = [
    "BackendConfig",
    "BackendName",
    "BackoffConfig",
    "EndpointPolicy",
    "Prices",
    "PromptProfile",
]

BackendName = Literal[
    "openai",
    "openai-compatible",
    "openai-batch",
    "anthropic",
    "anthropic-batch",
    "vllm",
    "transformers",
    "scripted",
    "embedded",
]
PromptProfile = Literal["full", "compact"]

#: Backends that talk HTTP to one or more endpoints (base URLs).
HTTP_BACKENDS: frozenset[str] = frozenset(
    {"openai", "openai-compatible", "openai-batch", "anthropic", "anthropic-batch"}
)

_DEFAULT_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "openai-batch": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "anthropic-batch": "https://api.anthropic.com",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffConfig(_Strict):
    """Exponential back-off between attempts: `base_s * multiplier**(attempt-1)`, capped at
    `max_s`, with `jitter` (a fraction, 0..1) of the delay drawn at random. A server's
    Retry-After is a floor: we never retry sooner than it asked."""

    base_s: float = Field(default=0.5, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.5, ge=0, le=1)


class Prices(_Strict):
    """USD per one million tokens, for the cost estimate in usage reports."""

    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / 1e6


class EndpointPolicy(_Strict):
    """Health policy of the endpoints behind one backend name.

    After `failures_to_cool` consecutive retryable failures (timeouts, refused connections,
    5xx) an endpoint rests for `cooldown_s` (doubling on each further failure, up to
    `max_cooldown_s`); the balancer sends to the least busy endpoint that is not resting.
    """

    failures_to_cool: int = Field(default=2, ge=1)
    cooldown_s: float = Field(default=5.0, ge=0)
    max_cooldown_s: float = Field(default=60.0, ge=0)


class BackendConfig(_Strict):
    """One named LLM backend.

    `concurrency` caps requests in flight (the adaptive limit decreases below it on sustained
    overload and climbs back to it, never above). `rpm`/`tpm` hold over any sliding
    `rate_window_s` window (60 s by default), their budgets scaled to it.
    `timeout_s` bounds each attempt; `deadline_s` (optional) bounds the whole call, queueing
    and retries included. `max_attempts` counts the first try: 1 means no retry.
    `breaker_after` consecutive attempts failing with a backend fault (unreachable, 401/403,
    404) open the circuit: the client fails every call with `CircuitOpenError` and the run
    stops, resumable (0: never).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    backend: BackendName
    model: str = Field(default="", description="model name sent to the server / loaded locally")
    endpoints: list[str] = Field(default_factory=list)
    api_key_env: str | None = Field(default=None, description="env var NAME, not the key")
    concurrency: int = Field(default=16, ge=1)
    min_concurrency: int = Field(default=1, ge=1)
    adaptive: bool = True
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    rate_window_s: float = Field(default=60.0, gt=0, le=60)
    """RPM/TPM hold over any sliding window of this length, with the budget scaled to it
    (`rpm * rate_window_s / 60`). 60: a minute's budget may go at once; 1-10: smoother."""
    timeout_s: float = Field(default=120.0, gt=0)
    deadline_s: float | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    breaker_after: int = Field(
        default=10, ge=0, description="consecutive backend faults that stop the run (0: never)"
    )
    backoff: BackoffConfig = Field(default_factory=BackoffConfig)
    endpoint_policy: EndpointPolicy = Field(default_factory=EndpointPolicy)
    prices: Prices = Field(default_factory=Prices)
    defaults: GenerationParams = Field(default_factory=GenerationParams)
    prompt_profile: PromptProfile = "full"
    cache: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or looks_like_secret(value)
        ):
            raise ValueError(
                "must be the NAME of an environment variable that holds the key (like "
                "OPENAI_API_KEY), not the key itself; the value given is not shown — if it was "
                "a key, remove it from the config and consider rotating it"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> BackendConfig:
        if self.min_concurrency > self.concurrency:
            raise ValueError("min_concurrency must not exceed concurrency")
        if self.backend == "openai-compatible" and not self.endpoints:
            raise ValueError("backend 'openai-compatible' needs at least one URL in `endpoints`")
        if self.backend in HTTP_BACKENDS and not self.model:
            raise ValueError(f"backend {self.backend!r} needs `model`")
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"endpoint {redact_url(url)!r} must start with http:// or https://")
        from agents.llm.options import SecretInOptionsError, check_options

        try:
            check_options(self.backend, self.options)
        except SecretInOptionsError as exc:
            raise ValueError(f"options.{'.'.join(exc.path)}: {exc}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
            raise ValueError(f"options.{where}: {what} (backend {self.backend!r})") from None
        return self

    def resolved_endpoints(self) -> list[str]:
        """The base URLs to use: the configured ones, or the provider's default."""
        if self.endpoints:
            return [u.rstrip("/") for u in self.endpoints]
        default = _DEFAULT_ENDPOINTS.get(self.backend)
        return [default] if default else []
