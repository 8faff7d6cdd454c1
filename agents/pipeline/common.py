"""Small helpers shared by the pipeline agents: deterministic randomness and LLM slots.

Determinism is what makes resume exact: every random choice (operation, sampling seed) is derived
from the run seed and the row/round it is for — never from a shared generator whose state depends
on message order.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Literal

from agents.base import Agent
from agents.llm.types import LLMClient

__all__ = ["ProfileSetting", "derive_int", "derive_rng", "llm_for", "profile_of"]

ProfileSetting = Literal["auto", "full", "compact"]


def derive_int(run_seed: int, *parts: object) -> int:
    """A 31-bit integer that depends only on the run seed and ``parts``."""
    digest = hashlib.sha256(repr((run_seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def derive_rng(run_seed: int, *parts: object) -> random.Random:
    """A generator seeded by the run seed and ``parts`` (same inputs, same draws)."""
    return random.Random(derive_int(run_seed, *parts))


def llm_for(agent: Agent[Any], slot: str = "default") -> LLMClient:
    """The LLM bound to ``slot`` in the agent's config; a clear error if the config binds none."""
    try:
        return agent.context.llms[slot]
    except KeyError:
        bound = ", ".join(sorted(agent.context.llms)) or "none"
        raise LookupError(
            f"agent {agent.name!r} needs an LLM in slot {slot!r} "
            f"(set `llm = \"...\"` or `llms = {{ {slot} = \"...\" }}` in its config; "
            f"bound: {bound})"
        ) from None


def profile_of(client: LLMClient, setting: ProfileSetting) -> Literal["full", "compact"]:
    """The prompt profile to use: the agent's setting, or the backend's ``prompt_profile``."""
    if setting != "auto":
        return setting
    config = getattr(client, "config", None)
    profile = getattr(config, "prompt_profile", "full")
    return "compact" if profile == "compact" else "full"
