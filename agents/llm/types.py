"""The value types and the protocol every LLM backend implements.

`LLMClient.complete` is the one call agents make. A client owns its own concurrency cap, rate
limits, retries and deadline: callers just await it. It raises only `LLMError` subclasses
(see `agents.llm.errors`), never SDK or transport exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ChatMessage", "Completion", "GenerationParams", "LLMClient", "Role"]

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


class GenerationParams(BaseModel):
    """Sampling parameters. `None` means "the backend's default". Unknown fields are errors
    (a `[llm.<name>.defaults]` table with a typo must not be silently dropped)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = Field(default=1, ge=1)
    repeat_penalty: float | None = None
    #: the answer must be exactly one of these strings: backends that can constrain decoding
    #: (the embedded backend's grammar, a server's guided decoding) do; others are only asked
    choices: tuple[str, ...] = ()
    #: report the `top_logprobs` most likely first tokens with their log-probabilities
    #: (`Completion.first_token_logprobs`), where the backend can
    top_logprobs: int | None = Field(default=None, ge=1, le=20)


class Completion(BaseModel):
    """One LLM answer with its cost."""

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    backend: str = ""
    model: str = ""
    cached: bool = False
    #: the first generated token's most likely alternatives (token text → log-probability), when
    #: `GenerationParams.top_logprobs` asked for them and the backend reports them
    first_token_logprobs: dict[str, float] = Field(default_factory=dict)


@runtime_checkable
class LLMClient(Protocol):
    """What an agent needs from a language model.

    `caller` names the agent for per-agent usage accounting. `sample` distinguishes repeated
    samples of the same request at temperature > 0 (the cache keys on it, so a re-run reproduces
    sample k exactly). Implementations are safe to call from many tasks at once.
    """

    name: str

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        params: GenerationParams,
        *,
        caller: str = "",
        sample: int = 0,
    ) -> Completion: ...

    async def aclose(self) -> None: ...
