"""Bookkeeping shared by the Bus implementations: in-flight counting and observer failures."""

from __future__ import annotations

from typing import Any

import anyio

from bus.message import Message

__all__ = ["PendingCounter", "log_observer_failure"]


class PendingCounter:
    """Counts work begun and not yet ended. ``wait_idle`` returns once the count is zero.

    Every ``begin`` must be paired with an ``end`` (in a ``finally``): that pairing is what lets
    ``drain()`` never hang on a failed delivery. One event loop only.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = anyio.Event()
        self._idle.set()

    def begin(self) -> None:
        if self.count == 0:
            self._idle = anyio.Event()
        self.count += 1

    def end(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.count:
            await self._idle.wait()


def log_observer_failure(log: Any, hook: str, message: Message) -> None:
    """Log an observer that raised in ``hook`` (with the message's ids); the caller counts it."""
    log.exception(
        "observer_failed",
        hook=hook,
        message_kind=message.kind,
        message_id=message.id,
        correlation_id=message.correlation_id,
    )
