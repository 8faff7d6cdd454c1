"""Configuration of the mock LLM server (pydantic, `extra="forbid"`)."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONTENT_FAULTS",
    "TRANSPORT_FAULTS",
    "ContentFaultRates",
    "LatencyConfig",
    "MockConfig",
    "TransportFaultRates",
]

#: Transport faults, drawn per attempt (in this order against one uniform draw).
TRANSPORT_FAULTS = ("rate_limited", "server_error", "overloaded", "hang", "malformed", "empty")
#: Content faults, chosen per request content (deterministic: a retry gets the same one).
CONTENT_FAULTS = ("sorry", "stopwords", "copy_prompt", "equal")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyConfig(_Strict):
    """Server think time per request, before the token-streaming time.

    `fixed`: always `value_s`. `uniform`: between `low_s` and `high_s`. `lognormal`: median
    `value_s`, shape `sigma`. Draws come from the server's seeded RNG.
    """

    kind: Literal["fixed", "uniform", "lognormal"] = "fixed"
    value_s: float = Field(default=0.0, ge=0)
    low_s: float = Field(default=0.0, ge=0)
    high_s: float = Field(default=0.0, ge=0)
    sigma: float = Field(default=0.5, ge=0)

    def draw(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.value_s
        if self.kind == "uniform":
            return rng.uniform(self.low_s, max(self.low_s, self.high_s))
        return self.value_s * rng.lognormvariate(0.0, self.sigma) if self.value_s else 0.0


class TransportFaultRates(_Strict):
    """Per-attempt probabilities of transport faults (their sum must stay ≤ 1).

    `rate_limited`: 429 with `Retry-After: retry_after_s`. `server_error`: 500. `overloaded`:
    503 (OpenAI route) or 529 (Anthropic route). `hang`: no answer for `hang_s` (past any sane
    deadline). `malformed`: 200 with a truncated JSON body. `empty`: 200 with empty content.
    """

    rate_limited: float = Field(default=0.0, ge=0, le=1)
    server_error: float = Field(default=0.0, ge=0, le=1)
    overloaded: float = Field(default=0.0, ge=0, le=1)
    hang: float = Field(default=0.0, ge=0, le=1)
    malformed: float = Field(default=0.0, ge=0, le=1)
    empty: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=1.0, ge=0)
    hang_s: float = Field(default=3600.0, ge=0)


class ContentFaultRates(_Strict):
    """Per-request-content probabilities of bad-but-well-formed replies.

    `sorry` / `stopwords`: on answer requests (a short apology; only stop words and
    punctuation). `copy_prompt`: on evolve requests (leaks "#Rewritten Prompt#" etc.).
    `equal`: on equality checks (answers "Equal": no information gain).
    """

    sorry: float = Field(default=0.0, ge=0, le=1)
    stopwords: float = Field(default=0.0, ge=0, le=1)
    copy_prompt: float = Field(default=0.0, ge=0, le=1)
    equal: float = Field(default=0.0, ge=0, le=1)


class MockConfig(_Strict):
    """Everything the mock server does. Defaults: instant, fault-free, unlimited."""

    seed: int = 0
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    tokens_per_s: float | None = Field(default=None, gt=0)
    """When set, each reply also takes completion_tokens / tokens_per_s seconds."""
    max_concurrency: int | None = Field(default=None, ge=1)
    overflow: Literal["reject", "queue"] = "reject"
    """Beyond `max_concurrency`: answer 429 (with `overflow_retry_after_s`) or queue."""
    overflow_retry_after_s: float = Field(default=1.0, ge=0)
    faults: TransportFaultRates = Field(default_factory=TransportFaultRates)
    content_faults: ContentFaultRates = Field(default_factory=ContentFaultRates)
    models: list[str] = Field(default_factory=lambda: ["mock-model"])
    strict_models: bool = False
    """When set, a request naming a model not in `models` is answered 404 `model_not_found`
    (as OpenAI, Anthropic and vLLM do); otherwise any model name is served."""
    api_key: str | None = None
    """When set, requests must carry it (Bearer / x-api-key) or get 401."""
    batch_latency_s: float = Field(default=0.2, ge=0)
    """Batch API: a batch is `validating` for the first half of this, `in_progress` for the
    second, then finished (`batch_outcome`), its results computed on the first look after."""
    batch_line_failure_rate: float = Field(default=0.0, ge=0, le=1)
    """Batch API: the fraction of lines answered 500 into the error file (seeded RNG)."""
    batch_outcome: Literal["completed", "expired", "failed"] = "completed"
    """Batch API: how batches end. `expired`: only the first half of the lines (rounded down)
    are answered; `failed`: no output, `errors` on the batch object."""
