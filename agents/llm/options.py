"""What each built-in backend accepts in ``[llm.<name>.options]``, as strict pydantic models.

`check_options(backend, options)` is called by `BackendConfig` (and, first, by the runtime's
config loader, which turns its errors into ``file:line: llm.<name>.options.<key>`` messages):

- a key whose name says it holds a credential (``api_key``, ``token``, ``hf_token``…, at any
  depth) or a value that looks like a key (``sk-…``, a long mixed-case token) raises
  `SecretInOptionsError` naming the key path and never the value — keys come from the
  environment (``api_key_env``), never from the config, which is written to the run directory;
- an unknown key or a bad value raises pydantic's `ValidationError` (location = the key path).

Backends without a model here (a plug-in registered under a new name) are not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.llm.embedded.transport import EmbeddedOptions
from agents.llm.redact import looks_like_secret, secret_key_name

__all__ = ["BACKEND_OPTIONS", "SecretInOptionsError", "check_options"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenAIOptions(_Options):
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


class OpenAICompatibleOptions(_Options):
    repeat_penalty_field: str = "repetition_penalty"
    guided_choice_field: str | None = None
    """The request field for `GenerationParams.choices` (vLLM: ``guided_choice``)."""


class _BatchOptions(_Options):
    batch_size: int = Field(default=5000, ge=1)
    window_s: float = Field(default=30.0, gt=0)
    poll_s: float = Field(default=30.0, gt=0)
    journal: str | None = None


class OpenAIBatchOptions(_BatchOptions):
    completion_window: str = "24h"


class AnthropicOptions(_Options):
    default_max_tokens: int = Field(default=1024, ge=1)


class AnthropicBatchOptions(_BatchOptions):
    default_max_tokens: int = Field(default=1024, ge=1)
    anthropic_version: str = "2023-06-01"


class VLLMOptions(_Options):
    engine_args: dict[str, Any] = Field(default_factory=dict)
    """Passed to vLLM's `AsyncEngineArgs` (its own keys, checked by vLLM)."""


class TransformersOptions(_Options):
    model_path: str | None = None
    device: str | None = None
    dtype: str = "auto"
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_s: float = Field(default=0.005, ge=0)


class _ScriptedRule(_Options):
    pattern: str
    reply: str


class _ScriptedFailure(_Options):
    error: str
    times: int = Field(default=1, ge=0)
    pattern: str | None = None
    retry_after_s: float | None = Field(default=None, ge=0)


class ScriptedOptions(_Options):
    rules: list[_ScriptedRule] = Field(default_factory=list)
    handler: str | None = None
    plausible: bool = False
    default: str = "OK"
    failures: list[_ScriptedFailure] = Field(default_factory=list)
    seed: int = 0


BACKEND_OPTIONS: dict[str, type[BaseModel]] = {
    "openai": OpenAIOptions,
    "openai-compatible": OpenAICompatibleOptions,
    "openai-batch": OpenAIBatchOptions,
    "anthropic": AnthropicOptions,
    "anthropic-batch": AnthropicBatchOptions,
    "vllm": VLLMOptions,
    "transformers": TransformersOptions,
    "scripted": ScriptedOptions,
    "embedded": EmbeddedOptions,
}


class SecretInOptionsError(ValueError):
    """A credential in ``options``. `path` is the key path inside ``options``."""

    def __init__(self, path: tuple[str, ...]) -> None:
        self.path = path
        super().__init__(
            "looks like a credential (not shown); secrets never go in the config, which is "
            "written to the run directory: put the key in an environment variable and name "
            "the variable in api_key_env"
        )


def check_options(backend: str, options: Mapping[str, Any]) -> None:
    """Raise `SecretInOptionsError` or `ValidationError` for ``options`` of ``backend``."""
    path = _secret_path(options, ())
    if path is not None:
        raise SecretInOptionsError(path)
    model = BACKEND_OPTIONS.get(backend)
    if model is not None:
        model.model_validate(dict(options))


def _secret_path(value: Any, path: tuple[str, ...]) -> tuple[str, ...] | None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if secret_key_name(str(key)) and item not in (None, "", False):
                return (*path, str(key))
            found = _secret_path(item, (*path, str(key)))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _secret_path(item, (*path, str(index)))
            if found is not None:
                return found
    elif isinstance(value, str) and looks_like_secret(value):
        return path
    return None
