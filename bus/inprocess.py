"""The in-process Bus: bounded per-agent mailboxes and worker tasks in one anyio task group.

Use it as an async context manager; agents may attach before or after entering::

    async with InProcessBus() as bus:
        bus.attach(endpoint)
        await bus.publish(msg)
        await bus.drain()

Guarantees: FIFO per agent at concurrency 1; `publish` waits on a full mailbox; a handler error
becomes a `DeadLetter` and never stops the agent; `drain()` counts a failed delivery as done, so it
cannot hang on failures. Cancellation (e.g. an abort) propagates; ordinary exceptions never escape
a worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
import structlog
from anyio.abc import TaskGroup

from bus._accounting import PendingCounter, log_observer_failure
from bus.errors import (
    BusClosedError,
    DuplicateSubscriptionError,
    NoReplyError,
    NoSubscriberError,
    RequestFailedError,
    RequestTimeoutError,
)
from bus.mailbox import Mailbox, MailboxClosed
from bus.message import DeadLetter, Message
from bus.protocol import (
    AgentEndpoint,
    AgentStatistics,
    BusObserver,
    BusStatistics,
    Envelope,
    Handler,
)

__all__ = ["InProcessBus"]

_log = structlog.get_logger("bus")

_Target = tuple["_AgentSlot", Handler]


@dataclass(slots=True)
class _AgentSlot:
    endpoint: AgentEndpoint
    mailbox: Mailbox[tuple[Envelope, Handler]]
    in_flight: int = 0
    peak_in_flight: int = 0
    delivered: int = 0
    failed: int = 0
    started: bool = False


@dataclass(slots=True)
class _ReplySlot:
    """Collects the outcome of a request across the agents it was delivered to."""

    remaining: int
    event: anyio.Event = field(default_factory=anyio.Event)
    reply: Message | None = None
    error: BaseException | None = None
    failed_agent: str = ""

    def resolve(self, value: Message | None, error: BaseException | None) -> None:
        if self.event.is_set():
            return
        if error is not None:
            self.error = error
            self.event.set()
        elif value is not None:
            self.reply = value
            self.event.set()
        else:
            self.remaining -= 1
            if self.remaining <= 0:
                self.event.set()


class InProcessBus:
    """The default Bus. See module docstring for the contract."""

    def __init__(self, *, keep_dead_letters: int = 10_000) -> None:
        self._agents: dict[str, _AgentSlot] = {}
        self._routes: dict[tuple[type[Message], str | None], list[_Target]] = {}
        self._observers: list[BusObserver] = []
        self._pending = PendingCounter()
        self._published = 0
        self._dead_letters: deque[DeadLetter] = deque(maxlen=keep_dead_letters)
        self._dead_letter_count = 0
        self._observer_errors = 0
        self._task_group: TaskGroup | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for slot in self._agents.values():
            self._start_workers(slot)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.close()
        assert self._task_group is not None
        return await self._task_group.__aexit__(exc_type, exc, tb)

    def attach(self, endpoint: AgentEndpoint) -> None:
        if endpoint.name in self._agents:
            raise DuplicateSubscriptionError(
                f"an agent named {endpoint.name!r} is attached already"
            )
        if endpoint.concurrency < 1:
            raise ValueError(f"agent {endpoint.name!r}: concurrency must be >= 1")
        slot = _AgentSlot(endpoint, Mailbox(endpoint.mailbox_size))
        self._agents[endpoint.name] = slot
        self._routes.clear()
        if self._task_group is not None:
            self._start_workers(slot)

    def add_observer(self, observer: BusObserver) -> None:
        self._observers.append(observer)

    async def close(self) -> None:
        """Refuse new messages; queued ones are still handled, then the workers exit."""
        self._closed = True
        for slot in self._agents.values():
            slot.mailbox.close()

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, message: Message, *, topic: str | None = None) -> None:
        await self._dispatch(Envelope(message, topic))

    async def request(
        self, message: Message, *, timeout: float, topic: str | None = None
    ) -> Message:
        targets = self._targets_for(type(message), topic, message)
        slot = _ReplySlot(remaining=len(targets))
        envelope = Envelope(message, topic, reply=slot.resolve)
        with anyio.move_on_after(timeout):
            await self._dispatch(envelope, targets)
            await slot.event.wait()
        if not slot.event.is_set():
            raise RequestTimeoutError(
                f"no reply to {message.kind} {message.id} within {timeout:g}s"
            )
        if slot.error is not None:
            raise RequestFailedError(
                f"the handler of {message.kind} {message.id} raised "
                f"{type(slot.error).__name__}: {slot.error}"
            ) from slot.error
        if slot.reply is None:
            raise NoReplyError(f"every handler of {message.kind} {message.id} returned no reply")
        return slot.reply

    async def _dispatch(self, envelope: Envelope, targets: list[_Target] | None = None) -> None:
        if self._closed:
            raise BusClosedError(f"bus closed: cannot publish {envelope.message.kind}")
        message = envelope.message
        if targets is None:
            targets = self._targets_for(type(message), envelope.topic, message)
        self._published += 1
        for observer in self._observers:
            try:
                await observer.on_publish(envelope)
            except Exception:
                self._observer_failed("on_publish", message)
        for slot, handler in targets:
            self._pending.begin()
            try:
                await slot.mailbox.put((envelope, handler))
            except BaseException:
                self._pending.end()
                raise

    def _targets_for(
        self, message_type: type[Message], topic: str | None, message: Message
    ) -> list[_Target]:
        key = (message_type, topic)
        targets = self._routes.get(key)
        if targets is None:
            targets = self._resolve(message_type, topic)
            self._routes[key] = targets
        if not targets:
            on_topic = f" on topic {topic!r}" if topic is not None else ""
            raise NoSubscriberError(
                f"no agent handles message kind {message.kind!r}{on_topic} "
                f"(id {message.id}); add a subscriber or stop publishing it"
            )
        return targets

    def _resolve(self, message_type: type[Message], topic: str | None) -> list[_Target]:
        mro = message_type.__mro__
        targets: list[_Target] = []
        for slot in self._agents.values():
            best: tuple[int, Handler] | None = None
            for route in slot.endpoint.routes:
                if route.topic != topic or not issubclass(message_type, route.message_type):
                    continue
                distance = mro.index(route.message_type)
                if best is None or distance < best[0]:
                    best = (distance, route.handler)
            if best is not None:
                targets.append((slot, best[1]))
        return targets

    # -- delivery --------------------------------------------------------------------------
    def _start_workers(self, slot: _AgentSlot) -> None:
        assert self._task_group is not None
        if slot.started:
            return
        slot.started = True
        for index in range(slot.endpoint.concurrency):
            self._task_group.start_soon(self._worker, slot, name=f"{slot.endpoint.name}#{index}")

    async def _worker(self, slot: _AgentSlot) -> None:
        mailbox = slot.mailbox
        while True:
            try:
                envelope, handler = await mailbox.get()
            except MailboxClosed:
                return
            try:
                await self._deliver(slot, envelope, handler)
            finally:
                self._pending.end()

    async def _deliver(self, slot: _AgentSlot, envelope: Envelope, handler: Handler) -> None:
        slot.in_flight += 1
        if slot.in_flight > slot.peak_in_flight:
            slot.peak_in_flight = slot.in_flight
        error: Exception | None = None
        reply: Message | None = None
        try:
            reply = await handler(envelope.message)
        except Exception as exc:
            error = exc
        finally:
            slot.in_flight -= 1
        if error is None:
            slot.delivered += 1
        else:
            slot.failed += 1
            await self._dead_letter(slot, envelope, error)
        for observer in self._observers:
            try:
                await observer.on_handled(envelope, slot.endpoint.name, error)
            except Exception:
                self._observer_failed("on_handled", envelope.message)
        if envelope.reply is not None:
            envelope.reply(reply, error)

    async def _dead_letter(self, slot: _AgentSlot, envelope: Envelope, error: Exception) -> None:
        message = envelope.message
        dead = DeadLetter.of(message, slot.endpoint.name, error, envelope.attempt)
        self._dead_letters.append(dead)
        self._dead_letter_count += 1
        _log.error(
            "handler_failed",
            agent=slot.endpoint.name,
            message_kind=message.kind,
            message_id=message.id,
            correlation_id=message.correlation_id,
            error_type=dead.error_type,
            error=dead.error,
        )
        for observer in self._observers:
            try:
                await observer.on_dead_letter(dead)
            except Exception:
                self._observer_failed("on_dead_letter", message)
        if isinstance(message, DeadLetter) or self._closed:
            return
        targets = self._resolve(DeadLetter, None)
        if targets:
            await self._dispatch(Envelope(dead), targets)

    def _observer_failed(self, hook: str, message: Message) -> None:
        self._observer_errors += 1
        log_observer_failure(_log, hook, message)

    async def drain(self) -> None:
        await self._pending.wait_idle()

    @property
    def dead_letters(self) -> Sequence[DeadLetter]:
        return tuple(self._dead_letters)

    @property
    def dead_letter_count(self) -> int:
        return self._dead_letter_count

    def statistics(self) -> BusStatistics:
        agents: dict[str, Any] = {}
        for name, slot in self._agents.items():
            agents[name] = AgentStatistics(
                name=name,
                concurrency=slot.endpoint.concurrency,
                mailbox_size=slot.endpoint.mailbox_size,
                queued=len(slot.mailbox),
                waiting_publishers=slot.mailbox.waiting_putters,
                in_flight=slot.in_flight,
                peak_in_flight=slot.peak_in_flight,
                delivered=slot.delivered,
                failed=slot.failed,
            )
        return BusStatistics(
            published=self._published,
            pending=self._pending.count,
            dead_letters=self._dead_letter_count,
            agents=agents,
        )
