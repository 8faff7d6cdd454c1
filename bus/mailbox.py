"""A bounded FIFO mailbox: the per-agent queue of the in-process bus.

Contract (like trio's memory channels, but cheaper on the fast path):
- `put` appends without yielding while there is room; when the mailbox is full it **waits**
  until a consumer takes an item (backpressure). Items keep FIFO order.
- `get` returns the oldest item, waiting while the mailbox is empty.
- `close()` wakes every waiter: `put` then raises `BusClosedError`; `get` drains what is left and
  then raises `MailboxClosed`.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import anyio

from bus.errors import BusClosedError

__all__ = ["Mailbox", "MailboxClosed"]

T = TypeVar("T")


class MailboxClosed(Exception):
    """Raised by `Mailbox.get` once the mailbox is closed and empty."""


class Mailbox(Generic[T]):
    """Bounded FIFO queue with backpressure. Not thread-safe; one event loop only."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("mailbox capacity must be >= 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._not_empty: anyio.Event | None = None
        self._not_full: anyio.Event | None = None
        self._closed = False
        self.waiting_putters = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, item: T) -> None:
        """Append ``item``; wait while full. Raises BusClosedError once closed."""
        while len(self._items) >= self.capacity:
            if self._closed:
                raise BusClosedError("mailbox closed")
            if self._not_full is None:
                self._not_full = anyio.Event()
            event = self._not_full
            self.waiting_putters += 1
            try:
                await event.wait()
            finally:
                self.waiting_putters -= 1
        if self._closed:
            raise BusClosedError("mailbox closed")
        self._items.append(item)
        if self._not_empty is not None:
            self._not_empty.set()
            self._not_empty = None

    async def get(self) -> T:
        """Pop the oldest item; wait while empty. Raises MailboxClosed when closed and empty."""
        while not self._items:
            if self._closed:
                raise MailboxClosed
            if self._not_empty is None:
                self._not_empty = anyio.Event()
            await self._not_empty.wait()
        item = self._items.popleft()
        if self._not_full is not None:
            self._not_full.set()
            self._not_full = None
        return item

    def close(self) -> None:
        """Refuse further puts and wake every waiter."""
        self._closed = True
        for event in (self._not_empty, self._not_full):
            if event is not None:
                event.set()
        self._not_empty = None
        self._not_full = None
