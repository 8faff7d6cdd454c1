"""Build a `ManagedClient` from a `BackendConfig`, via a registry of transport factories.

Each backend name maps to a factory named as `"module:function"` and imported lazily, so optional
dependencies (vllm, torch, xllamacpp) are imported only by runs that use them. Two shapes:

- per endpoint (HTTP backends): `factory(config, endpoint_url) -> Transport`, called once per
  URL in `config.endpoints` (one SDK client / HTTP session per endpoint, reused for every call);
- in process (vllm, transformers, scripted, embedded): `factory(config) -> Transport`, once.

`register_backend` adds or replaces an entry (tests, plug-ins). A factory whose module is missing
raises `BackendNotAvailableError` naming what to install; bad `options` raise `ValueError`.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.llm.cache import CompletionCache
from agents.llm.clock import Clock
from agents.llm.config import BackendConfig
from agents.llm.errors import BackendNotAvailableError
from agents.llm.managed import ManagedClient
from agents.llm.transport import Transport
from agents.llm.usage import UsageRecorder

__all__ = ["BackendSpec", "build_client", "create_transports", "register_backend"]


@dataclass(frozen=True)
class BackendSpec:
    """How to make a backend's transports. `target` is a callable or `"module:function"`."""

    target: str | Callable[..., Transport]
    per_endpoint: bool
    install_hint: str = ""


_REGISTRY: dict[str, BackendSpec] = {
    "openai": BackendSpec("agents.llm.backends.openai_sdk:create_transport", True),
    "openai-compatible": BackendSpec("agents.llm.backends.openai_compat:create_transport", True),
    "openai-batch": BackendSpec("agents.llm.backends.openai_batch:create_transport", True),
    "anthropic": BackendSpec("agents.llm.backends.anthropic_sdk:create_transport", True),
    "anthropic-batch": BackendSpec("agents.llm.backends.anthropic_batch:create_transport", True),
    "vllm": BackendSpec(
        "agents.llm.backends.vllm_engine:create_transport",
        False,
        "pip install 'evolagents[vllm]' on a machine with a CUDA GPU",
    ),
    "transformers": BackendSpec(
        "agents.llm.backends.hf_transformers:create_transport",
        False,
        "pip install 'evolagents[train]' (torch + transformers)",
    ),
    "scripted": BackendSpec("agents.llm.backends.scripted:create_transport", False),
    "embedded": BackendSpec(
        "agents.llm.embedded.transport:create_transport",
        False,
        "pip install 'evolagents[embedded]'",
    ),
}


def register_backend(
    name: str, target: str | Callable[..., Transport], *, per_endpoint: bool = False
) -> None:
    """Add or replace the transport factory for backend `name`."""
    _REGISTRY[name] = BackendSpec(target, per_endpoint)


def _resolve(name: str, spec: BackendSpec) -> Callable[..., Transport]:
    if callable(spec.target):
        return spec.target
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        hint = f"; {spec.install_hint}" if spec.install_hint else ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise BackendNotAvailableError(
                f"LLM backend {name!r} is not available in this installation "
                f"(module {module_name} not found){hint}"
            ) from exc
        raise BackendNotAvailableError(
            f"LLM backend {name!r} needs the Python package {missing!r}{hint}"
        ) from exc
    factory: Any = getattr(module, attr, None)
    if not callable(factory):
        raise BackendNotAvailableError(f"LLM backend {name!r}: {spec.target} is not callable")
    return factory  # type: ignore[no-any-return]


def create_transports(config: BackendConfig) -> list[tuple[str, Transport]]:
    """The (endpoint URL, transport) pairs for `config`; in-process backends get one "local"."""
    spec = _REGISTRY.get(config.backend)
    if spec is None:
        raise BackendNotAvailableError(f"no transport registered for backend {config.backend!r}")
    factory = _resolve(config.backend, spec)
    if not spec.per_endpoint:
        return [("local", factory(config))]
    # transports open no connection before their first call, so a failure here leaks nothing
    made = [(url, factory(config, url)) for url in config.resolved_endpoints()]
    if not made:
        raise ValueError(f"backend {config.backend!r} needs at least one endpoint")
    return made


def build_client(
    name: str,
    config: BackendConfig,
    *,
    cache: CompletionCache | None,
    usage: UsageRecorder,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> ManagedClient:
    """A ready `ManagedClient` named `name` (the `[llm.<name>]` key, used in usage reports).

    Raises `BackendNotAvailableError` (optional dependency missing), `AuthenticationError`
    (the env var named by `api_key_env` is unset) or `ValueError` (bad `options`).
    The caller owns `cache` and `usage` and must `await client.aclose()`.
    """
    return ManagedClient(
        name, config, create_transports(config), cache=cache, usage=usage, clock=clock, rng=rng
    )
