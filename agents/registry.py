"""Agent implementations by name, so topology configs can pick and swap them.

A config names an implementation either by its registered short name (``impl = "evol.wizardlm"``)
or by import path (``impl = "mypkg.agents:MyEvol"``). Built-in modules are imported lazily, on the
first lookup, and none of them may need an optional extra at import time.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from agents.base import Agent

__all__ = ["UnknownImplementationError", "available", "register", "resolve"]

A = TypeVar("A", bound=type[Agent[Any]])

# Modules whose import registers the built-in implementations.
BUILTIN_MODULES: tuple[str, ...] = (
    "agents.demo",
    "agents.pool",
    "agents.evol.agent",
    "agents.responder",
    "agents.eliminator.agent",
    "agents.autoevol.analyst",
    "agents.autoevol.judge",
    "agents.autoevol.optimizer",
    "agents.judge.eval_agents",
    "agents.judge.agent",
    "agents.trainer.agent",
    "agents.trainer.evaluate",
)

_IMPLEMENTATIONS: dict[str, type[Agent[Any]]] = {}
_builtins_loaded = False


class UnknownImplementationError(LookupError):
    """No implementation has that name, or an import path does not lead to an Agent class."""


def register(name: str) -> Callable[[A], A]:
    """Class decorator: make an Agent subclass available as ``impl = name``."""

    def decorate(cls: A) -> A:
        existing = _IMPLEMENTATIONS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"agent implementation {name!r} is registered twice")
        cls.impl_name = name
        _IMPLEMENTATIONS[name] = cls
        return cls

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available() -> dict[str, type[Agent[Any]]]:
    """Every registered implementation (built-ins included), by name."""
    _load_builtins()
    return dict(sorted(_IMPLEMENTATIONS.items()))


def resolve(impl: str) -> type[Agent[Any]]:
    """The Agent class for ``impl``; raises UnknownImplementationError with suggestions."""
    if ":" in impl:
        module_name, _, attr = impl.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UnknownImplementationError(
                f"cannot import module {module_name!r}: {exc}"
            ) from exc
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Agent)):
            raise UnknownImplementationError(f"{impl!r} is not an Agent subclass")
        return cls
    _load_builtins()
    try:
        return _IMPLEMENTATIONS[impl]
    except KeyError:
        close = difflib.get_close_matches(impl, list(_IMPLEMENTATIONS), n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownImplementationError(
            f"no agent implementation named {impl!r}{hint} "
            "(list them with `python -m runtime agents`)"
        ) from None
