"""The Bus protocol: what agents and the runtime may rely on, whatever carries the messages.

The in-process implementation (`bus.inprocess.InProcessBus`) is the default; a broker-backed one
implements the same protocol so that agent code never changes.

Delivery contract
- `publish` routes a message to every *agent* with a matching subscription (one delivery per agent:
  its most specific handler). A subscription for a base type matches subclasses; a subscription
  with a topic matches only messages published on that topic; one without a topic matches
  messages published with no topic.
- Each agent has a bounded mailbox; `publish` waits while a target mailbox is full (backpressure).
  Topologies with cycles must bound the work they admit (see docs/architecture.md).
- A message no agent handles raises `NoSubscriberError` (never a silent drop).
- A handler that raises produces a `DeadLetter` (counted, kept, observed); the bus keeps going.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from bus.message import DeadLetter, Message

__all__ = [
    "AgentEndpoint",
    "AgentStatistics",
    "Bus",
    "BusObserver",
    "BusStatistics",
    "Envelope",
    "Handler",
    "Route",
]

Handler = Callable[[Any], Awaitable[Message | None]]
"""A bound handler taking the routed Message subtype. Its return value is the reply when the
message was sent with `request`; handlers of plain publishes return None."""


@dataclass(frozen=True, slots=True)
class Route:
    """One subscription: messages of ``message_type`` (and subclasses), optionally on ``topic``."""

    message_type: type[Message]
    handler: Handler
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class AgentEndpoint:
    """How an agent attaches to a bus: a unique name, its routes, mailbox size and concurrency.

    ``concurrency`` handlers run at once (1 keeps FIFO order); ``mailbox_size`` bounds the queue.
    """

    name: str
    routes: Sequence[Route]
    concurrency: int = 1
    mailbox_size: int = 1024


@dataclass(slots=True)
class Envelope:
    """A message in transit with its routing data. Created by the bus, not by agents."""

    message: Message
    topic: str | None = None
    reply: Callable[[Message | None, BaseException | None], None] | None = None
    attempt: int = 1
    extra: dict[str, str] = field(default_factory=dict)


class AgentStatistics(BaseModel):
    """A snapshot of one agent's mailbox and handlers."""

    model_config = ConfigDict(frozen=True)

    name: str
    concurrency: int
    mailbox_size: int
    queued: int
    waiting_publishers: int
    in_flight: int
    peak_in_flight: int
    delivered: int
    failed: int


class BusStatistics(BaseModel):
    """A snapshot of the whole bus."""

    model_config = ConfigDict(frozen=True)

    published: int
    pending: int
    dead_letters: int
    agents: dict[str, AgentStatistics]


class BusObserver(Protocol):
    """Sees every message that flows. Methods are awaited inline: keep them fast.

    `on_publish` is called once per published message, before it is queued (so a store that
    persists here has the message before any handler can act on it); `on_handled` after each
    delivery to an agent, with the error if the handler raised; `on_dead_letter` for each failure.
    An observer that raises is logged and counted, and does not stop the delivery.
    """

    async def on_publish(self, envelope: Envelope) -> None: ...

    async def on_handled(
        self, envelope: Envelope, agent: str, error: BaseException | None
    ) -> None: ...

    async def on_dead_letter(self, dead_letter: DeadLetter) -> None: ...


class Bus(Protocol):
    """The message bus as agents and the runtime see it."""

    def attach(self, endpoint: AgentEndpoint) -> None:
        """Register an agent. Raises DuplicateSubscriptionError for a name already attached."""
        ...

    async def publish(self, message: Message, *, topic: str | None = None) -> None:
        """Deliver to every subscribed agent; waits on full mailboxes.

        Raises NoSubscriberError when nobody handles the message and BusClosedError after close().
        """
        ...

    async def request(
        self, message: Message, *, timeout: float, topic: str | None = None
    ) -> Message:
        """Publish and wait for the first reply (a handler's return value).

        Raises RequestTimeoutError past ``timeout`` seconds, NoSubscriberError when nobody handles
        it, NoReplyError when every handler finished without replying, and RequestFailedError
        when a handler raised.
        """
        ...

    async def drain(self) -> None:
        """Return once every mailbox is empty and no handler runs (a failure counts as done)."""
        ...

    async def close(self) -> None:
        """Stop accepting messages; in-flight handlers finish; workers exit."""
        ...

    def statistics(self) -> BusStatistics: ...

    def add_observer(self, observer: BusObserver) -> None: ...

    @property
    def dead_letters(self) -> Sequence[DeadLetter]: ...
