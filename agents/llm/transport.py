"""The raw, single-attempt side of a backend.

A `Transport` makes exactly one attempt at one call: no retries, no rate limiting, no cache.
It must honour `timeout_s` (raise `LLMTimeoutError` past it) and translate every failure into an
`agents.llm.errors.LLMError` subclass. The managed client wraps a transport with the concurrency
cap, rate limits, the one retry layer, the response cache and usage accounting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agents.llm.types import ChatMessage, Completion, GenerationParams

__all__ = ["Transport"]


class Transport(Protocol):
    """One attempt at one completion against one endpoint."""

    backend: str
    model: str

    async def send(
        self, messages: Sequence[ChatMessage], params: GenerationParams, *, timeout_s: float
    ) -> Completion: ...

    async def aclose(self) -> None: ...
