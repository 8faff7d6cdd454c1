"""The circuit breaker of one managed client: stop calling a backend that cannot answer anyone.

A *backend fault* is an attempt failing because of the backend, not the request: no connection
(refused, DNS), 401/403, 404 (model or URL) — `LLMError.backend_fault`. `threshold` such
attempts in a row, with no success between them (other failures neither count nor reset),
open the circuit: it stays open for the life of the client, every call then fails at once with
`CircuitOpenError`, and the listeners are called once (the runtime stops the run gracefully;
`resume` continues it once the backend is fixed). `threshold = 0` disables it.

Synchronous and cheap; the `opened` event lets waiting callers (back-off sleeps) give up at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import BaseModel

from agents.llm.errors import CircuitOpenError, LLMError
from agents.llm.redact import redact_text

__all__ = ["BreakerStatistics", "CircuitBreaker"]

log = logging.getLogger(__name__)


class BreakerStatistics(BaseModel):
    threshold: int
    consecutive_faults: int
    open: bool
    reason: str | None = None


class CircuitBreaker:
    """Counts consecutive backend faults of one backend; see the module docstring."""

    def __init__(self, name: str, threshold: int) -> None:
        self.name = name
        self.threshold = threshold
        self.consecutive = 0
        self.reason: str | None = None
        self.opened = asyncio.Event()
        self._listeners: list[Callable[[CircuitOpenError], None]] = []

    @property
    def is_open(self) -> bool:
        return self.reason is not None

    def add_listener(self, listener: Callable[[CircuitOpenError], None]) -> None:
        """Call `listener(error)` when the circuit opens (at once if it is open already)."""
        self._listeners.append(listener)
        if self.reason is not None:
            listener(self.error())

    def error(self) -> CircuitOpenError:
        """A fresh `CircuitOpenError` for a caller (one instance per raise)."""
        return CircuitOpenError(self.reason or f"LLM backend {self.name!r}: circuit open")

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, exc: LLMError, endpoint: str) -> None:
        """Record a failed attempt at `endpoint` (already redacted); may open the circuit."""
        if not exc.backend_fault or isinstance(exc, CircuitOpenError) or self.threshold <= 0:
            return
        self.consecutive += 1
        if self.consecutive < self.threshold or self.reason is not None:
            return
        where = "" if endpoint in str(exc) else f" at {endpoint}"
        self.reason = redact_text(
            f"LLM backend {self.name!r} stopped: {self.consecutive} consecutive attempts failed "
            f"with a backend fault (unreachable, rejected key, unknown model); the last{where}: "
            f"{exc.kind}: {exc}"
        )
        self.opened.set()
        for listener in self._listeners:
            try:
                listener(self.error())
            except Exception:  # a listener must not break the call that tripped the breaker
                log.exception("circuit breaker listener failed")

    def statistics(self) -> BreakerStatistics:
        return BreakerStatistics(
            threshold=self.threshold,
            consecutive_faults=self.consecutive,
            open=self.is_open,
            reason=self.reason,
        )
