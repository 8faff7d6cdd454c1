"""The NATS JetStream Bus: the same `Bus` protocol, with agents spread over processes and machines.

Use it like the in-process bus; every process of a topology opens one on the same stream::

    async with NatsBus("nats://host:4222", stream="evol-run") as bus:
        bus.attach(local_agent.endpoint())      # handled in this process
        bus.declare(remote_agent.endpoint())    # handled elsewhere: known for routing only
        await bus.publish(msg)

Layout: one stream per topology run (interest retention: a message stays until every consumer it
matched acked it), one subject per message kind and topic (see `bus.nats._subjects`), and one
**durable pull consumer per agent name**, shared by every replica of that agent in any process —
work-queue semantics: each message reaches one replica of each subscribed agent.

Delivery contract (what differs from `InProcessBus` is marked *)
- *At least once.* A message is acked only after its handler returned or its dead
  letter was published. A replica that dies holding a message has it redelivered to another one
  after ``ack_wait_s``; handlers send in-progress heartbeats while they run, so a slow LLM call is
  never redelivered. Handlers must therefore be idempotent (the run store and the LLM cache are).
- *Publishes are de-duplicated by the broker* (``Nats-Msg-Id``, within ``duplicate_window_s``):
  outside a handler the id is the message id; inside one it is derived from (the message being
  handled, the agent, the n-th publish of that handler), so a redelivered handler that publishes
  the same sequence again adds nothing to the stream.
- Backpressure: each consumer has at most ``max_ack_pending`` messages in flight over all its
  replicas and each replica fetches only as many as its free handler slots (``concurrency``).
  *The stream holds at most ``max_messages``; while it is full, `publish` waits (polling the
  broker, 10 ms to 200 ms apart) — there are no per-agent mailboxes.*
- A message kind no agent (attached or declared) handles raises `NoSubscriberError`.
- A handler that raises produces a `DeadLetter` (kept, counted, published so that the agents
  subscribed to dead letters and the monitor see it) and its message is acked: no retry loop.
  *A message delivered more than ``max_deliveries`` times without an ack (it keeps killing its
  process) is dead-lettered without running the handler.*
- Observers: *``on_handled`` runs in the process that ran the handler. ``on_publish`` and
  ``on_dead_letter`` run only on the bus opened with ``monitor=True`` (the coordinator): a
  durable consumer of the whole stream feeds them in stream order, then calls the observer's
  ``flush()`` if it has one, then acks — an acked message is durably persisted. The order holds
  across a coordinator crash or a lost ack too: the monitor then waits out ``ack_wait_s`` so the
  unacked batch is redelivered before anything newer. The monitor may see a message after the
  agent that handles it did.*
- *`close()` stops fetching and waits for the handlers in flight, which may still publish (a
  worker finishes what it holds); publishing from outside a handler after `close()` raises
  `BusClosedError`.*
- `drain()` returns when every consumer of the stream (the monitor included) has nothing pending
  or unacked, nothing runs here, and the stream's last sequence did not move while it looked.
- Broker or leader failures: publishes and fetches are retried (publishes are de-duplicated, so
  a retry never doubles a message) for up to ``publish_timeout_s``; then `BusError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import nats
import nats.errors
import nats.js.errors
import structlog
from anyio.abc import TaskGroup
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.client import JetStreamContext

from bus._accounting import PendingCounter, log_observer_failure
from bus.errors import (
    BusClosedError,
    BusError,
    DuplicateSubscriptionError,
    NoReplyError,
    NoSubscriberError,
    RequestFailedError,
    RequestTimeoutError,
)
from bus.message import DeadLetter, Message
from bus.nats._subjects import (
    HEADER_KIND,
    HEADER_MSG_ID,
    HEADER_REPLY,
    HEADER_TOPIC,
    check_stream_name,
    consumer_name,
    control_subject,
    decode,
    dedupe_id,
    encode,
    filter_subjects,
    message_subject,
    orphan_dead_letter_subject,
    stream_subjects,
)
from bus.protocol import (
    AgentEndpoint,
    AgentStatistics,
    BusObserver,
    BusStatistics,
    Envelope,
    Handler,
)

__all__ = ["MONITOR_CONSUMER", "NatsBus", "RemoteHandlerError"]

_log = structlog.get_logger("bus.nats")

MONITOR_CONSUMER = "monitor"
#: How often the monitor refreshes the consumers' backlogs for `statistics()`.
STATISTICS_INTERVAL_S = 1.0
#: A batch fetch waits to fill its batch until this timeout: keep the monitor's short.
_MONITOR_FETCH_S = 0.1
_DONE = b"done"

#: Errors that mean "the broker is (briefly) unavailable": retried until the deadline.
_TRANSIENT: tuple[type[BaseException], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.StaleConnectionError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    TimeoutError,
    OSError,
)


class RemoteHandlerError(BusError):
    """The handler of a request raised in another process; ``error_type`` names its class."""

    def __init__(self, message: str, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass(slots=True)
class _DeliveryScope:
    """The delivery a handler task is running: publishes inside it get derived dedupe ids."""

    cause_id: str
    agent: str
    attempt: int
    published: int = 0

    def next_id(self) -> str:
        self.published += 1
        return dedupe_id(self.cause_id, self.agent, self.published)


_SCOPE: contextvars.ContextVar[_DeliveryScope | None] = contextvars.ContextVar(
    "evolagents_nats_delivery", default=None
)


@dataclass(slots=True)
class _AgentSlot:
    endpoint: AgentEndpoint
    local: bool
    consumer: str
    subjects: list[str]
    handlers: dict[tuple[type[Message], str | None], Handler | None] = field(default_factory=dict)
    in_flight: int = 0
    peak_in_flight: int = 0
    delivered: int = 0
    failed: int = 0
    redelivered: int = 0
    queued: int = 0
    unacked: int = 0
    started: bool = False
    holding: dict[int, Msg] = field(default_factory=dict)

    def handler_for(self, message_type: type[Message], topic: str | None) -> Handler | None:
        key = (message_type, topic)
        if key not in self.handlers:
            best: tuple[int, Handler] | None = None
            mro = message_type.__mro__
            for route in self.endpoint.routes:
                if route.topic != topic or not issubclass(message_type, route.message_type):
                    continue
                distance = mro.index(route.message_type)
                if best is None or distance < best[0]:
                    best = (distance, route.handler)
            self.handlers[key] = best[1] if best is not None else None
        return self.handlers[key]

    def statistics(self) -> AgentStatistics:
        return AgentStatistics(
            name=self.endpoint.name,
            concurrency=self.endpoint.concurrency,
            mailbox_size=self.endpoint.mailbox_size,
            queued=self.queued,
            waiting_publishers=0,
            in_flight=self.in_flight,
            peak_in_flight=self.peak_in_flight,
            delivered=self.delivered,
            failed=self.failed,
        )


class NatsBus:
    """A Bus on NATS JetStream. See the module docstring for the contract.

    ``servers``: one URL or several (a cluster; the client reconnects to any). ``monitor``: feed
    this bus's observers from a consumer of the whole stream — exactly one process of a topology
    (the coordinator) sets it. ``replicas``: stream/consumer replicas in a JetStream cluster.
    """

    def __init__(
        self,
        servers: str | Sequence[str],
        *,
        stream: str,
        monitor: bool = False,
        ack_wait_s: float = 30.0,
        max_deliveries: int = 5,
        max_ack_pending: int = 1024,
        max_messages: int = 100_000,
        duplicate_window_s: float = 600.0,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
        publish_timeout_s: float = 60.0,
        fetch_timeout_s: float = 1.0,
        drain_poll_s: float = 0.05,
        keep_dead_letters: int = 10_000,
        client_name: str | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be >= 1")
        if ack_wait_s <= 0 or fetch_timeout_s <= 0:
            raise ValueError("ack_wait_s and fetch_timeout_s must be > 0")
        self._servers = [servers] if isinstance(servers, str) else list(servers)
        self._stream = check_stream_name(stream)
        self._monitor = monitor
        self._ack_wait_s = ack_wait_s
        self._max_deliveries = max_deliveries
        self._max_ack_pending = max_ack_pending
        self._max_messages = max_messages
        self._duplicate_window_s = duplicate_window_s
        self._replicas = replicas
        self._storage = StorageType.FILE if storage == "file" else StorageType.MEMORY
        self._publish_timeout_s = publish_timeout_s
        self._fetch_timeout_s = fetch_timeout_s
        self._drain_poll_s = drain_poll_s
        self._client_name = client_name

        self._agents: dict[str, _AgentSlot] = {}
        self._unprovisioned: list[_AgentSlot] = []
        self._provision_lock = anyio.Lock()
        self._observers: list[BusObserver] = []
        self._dead_letters: deque[DeadLetter] = deque(maxlen=keep_dead_letters)
        self._dead_letter_count = 0
        self._observer_errors = 0
        self._published = 0
        self._duplicates = 0
        self._waiting_publishers = 0
        self._reconnects = 0
        self._monitored = 0
        self._local = PendingCounter()
        self._loops = 0
        self._loops_done = anyio.Event()
        self._cancel_on_close: set[anyio.CancelScope] = set()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._task_group: TaskGroup | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        """Connect, create (or update) the stream, start consuming. Raises BusError when the
        broker cannot be reached within ``publish_timeout_s``."""
        try:
            self._nc = await nats.connect(
                servers=self._servers,
                name=self._client_name,
                connect_timeout=min(self._publish_timeout_s, 5.0),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                error_cb=self._on_client_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            raise BusError(f"cannot connect to NATS at {', '.join(self._servers)}: {exc}") from exc
        self._js = self._nc.jetstream(timeout=5.0)
        try:
            await self._retrying("create stream", self._ensure_stream)
        except BaseException:
            await self._close_connection()
            raise
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for slot in self._agents.values():
            self._start_consuming(slot)
        if self._monitor:
            self._start_loop(self._monitor_loop, name="nats-monitor")
            self._start_loop(self._refresh_statistics, name="nats-statistics")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            if exc_type is None:
                await self.close()
            else:
                self._closed = True
                assert self._task_group is not None
                self._task_group.cancel_scope.cancel()
            assert self._task_group is not None
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            await self._close_connection()

    async def _close_connection(self) -> None:
        """Close the client (at most 5 s, shielded). A connection the broker already dropped
        raises from nats-py's flush; that is no error here and must not mask the run's own."""
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            try:
                await nc.close()
            except Exception as exc:
                _log.debug("nats_close_failed", error=f"{type(exc).__name__}: {exc}")

    def attach(self, endpoint: AgentEndpoint) -> None:
        """Run ``endpoint``'s handlers in this process, as one replica of its consumer."""
        slot = self._add(endpoint, local=True)
        if self._task_group is not None:
            self._start_consuming(slot)

    def declare(self, endpoint: AgentEndpoint) -> None:
        """Make an agent that runs in another process known: publishes route to it (its consumer
        is created here too, so no message published before it starts is lost)."""
        self._add(endpoint, local=False)

    def _add(self, endpoint: AgentEndpoint, *, local: bool) -> _AgentSlot:
        if endpoint.name in self._agents:
            raise DuplicateSubscriptionError(
                f"an agent named {endpoint.name!r} is attached already"
            )
        if endpoint.concurrency < 1:
            raise ValueError(f"agent {endpoint.name!r}: concurrency must be >= 1")
        routes = [(route.message_type, route.topic) for route in endpoint.routes]
        slot = _AgentSlot(
            endpoint,
            local=local,
            consumer=consumer_name(endpoint.name),
            subjects=filter_subjects(self._stream, routes),
        )
        self._agents[endpoint.name] = slot
        if slot.subjects:
            self._unprovisioned.append(slot)
        else:
            _log.warning("agent_without_subjects", agent=endpoint.name)
        return slot

    def add_observer(self, observer: BusObserver) -> None:
        self._observers.append(observer)

    async def close(self) -> None:
        """Stop fetching; wait for the handlers in flight here (they may still publish).

        Pull requests waiting for a message are cancelled: a message the broker sends to one
        of them anyway is not acked, so it is redelivered elsewhere after ``ack_wait_s``.
        """
        self._closed = True
        for scope in list(self._cancel_on_close):
            scope.cancel()
        if self._loops:
            await self._loops_done.wait()
        await self._local.wait_idle()

    # -- broker setup ----------------------------------------------------------------------
    async def _ensure_stream(self) -> None:
        js = self._require_js()
        config = StreamConfig(
            name=self._stream,
            subjects=stream_subjects(self._stream),
            retention=RetentionPolicy.INTEREST,
            max_msgs=self._max_messages,
            discard=DiscardPolicy.NEW,
            storage=self._storage,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window_s,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)

    async def _provision(self) -> None:
        """Create every known agent's durable consumer (idempotent); publishes wait for it."""
        if not self._unprovisioned:
            return
        async with self._provision_lock:
            while self._unprovisioned:
                slot = self._unprovisioned[0]
                await self._retrying(f"create consumer {slot.consumer}", self._add_consumer,
                                     slot.consumer, slot.subjects, self._max_ack_pending)
                self._unprovisioned.pop(0)

    async def _add_consumer(self, name: str, subjects: list[str], max_ack_pending: int) -> None:
        await self._require_js().add_consumer(
            self._stream,
            ConsumerConfig(
                durable_name=name,
                filter_subjects=subjects,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,  # we dead-letter ourselves after max_deliveries
                max_ack_pending=max_ack_pending,
                num_replicas=self._replicas,
            ),
        )

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, message: Message, *, topic: str | None = None) -> None:
        """Store ``message`` in the stream once (de-duplicated); waits while the stream is full.

        Raises NoSubscriberError when no agent handles it, BusClosedError after close() (from
        outside a handler), BusError when the broker stays unavailable past publish_timeout_s.
        """
        self._targets_for(type(message), topic, message)
        await self._publish(message, topic, {})

    async def request(
        self, message: Message, *, timeout: float, topic: str | None = None
    ) -> Message:
        """Publish and wait for the first reply from any replica of the handling agents.

        Raises as `Bus.request` says; a handler that raised elsewhere is a RequestFailedError
        caused by a RemoteHandlerError. A redelivered request may be handled twice: the first
        reply wins.
        """
        targets = self._targets_for(type(message), topic, message)
        nc = self._require_nc()
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox)
        none_from: set[str] = set()
        try:
            with anyio.move_on_after(timeout):
                await self._publish(message, topic, {HEADER_REPLY: inbox})
                while True:
                    try:
                        raw = await subscription.next_msg(timeout=None)
                    except nats.errors.TimeoutError:
                        continue
                    reply = json.loads(raw.data)
                    if reply.get("error") is not None:
                        cause = RemoteHandlerError(reply["error"], reply["error_type"])
                        raise RequestFailedError(
                            f"the handler of {message.kind} {message.id} in {reply['agent']} "
                            f"raised {reply['error_type']}: {reply['error']}"
                        ) from cause
                    if reply.get("message") is not None:
                        return decode(reply["kind"], json.dumps(reply["message"]).encode())
                    none_from.add(reply["agent"])
                    if len(none_from) >= len(targets):
                        raise NoReplyError(
                            f"every handler of {message.kind} {message.id} returned no reply"
                        )
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()
        raise RequestTimeoutError(f"no reply to {message.kind} {message.id} within {timeout:g}s")

    def _targets_for(
        self, message_type: type[Message], topic: str | None, message: Message
    ) -> list[_AgentSlot]:
        targets = [
            slot for slot in self._agents.values() if slot.handler_for(message_type, topic)
        ]
        if not targets:
            on_topic = f" on topic {topic!r}" if topic is not None else ""
            raise NoSubscriberError(
                f"no agent handles message kind {message.kind!r}{on_topic} "
                f"(id {message.id}); add a subscriber or stop publishing it"
            )
        return targets

    async def _publish(
        self,
        message: Message,
        topic: str | None,
        headers: dict[str, str],
        *,
        subject: str | None = None,
        msg_id: str | None = None,
        internal: bool = False,
    ) -> None:
        scope = _SCOPE.get()
        if self._closed and scope is None and not internal:
            raise BusClosedError(f"bus closed: cannot publish {message.kind}")
        await self._provision()
        if msg_id is None:
            msg_id = scope.next_id() if scope is not None else message.id
        headers = {**headers, HEADER_MSG_ID: msg_id, HEADER_KIND: message.kind}
        if topic is not None:
            headers[HEADER_TOPIC] = topic
        subject = subject or message_subject(self._stream, message.kind, topic)
        data = encode(message)
        js = self._require_js()
        delay = 0.01
        deadline = time.monotonic() + self._publish_timeout_s
        waiting = False
        try:
            while True:
                try:
                    ack = await js.publish(subject, data, headers=headers)
                except nats.js.errors.APIError as exc:
                    if not _is_stream_full(exc):
                        if not isinstance(exc, _TRANSIENT) and not _is_duplicate_in_process(exc):
                            raise BusError(f"publish {message.kind}: {exc}") from exc
                        self._check_deadline(deadline, f"publish {message.kind}", exc)
                    elif not waiting:  # backpressure: wait with no deadline, as on a mailbox
                        waiting = True
                        self._waiting_publishers += 1
                except _TRANSIENT as exc:
                    self._check_deadline(deadline, f"publish {message.kind}", exc)
                else:
                    self._published += 1
                    if ack.duplicate:
                        self._duplicates += 1
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.2)
        finally:
            if waiting:
                self._waiting_publishers -= 1

    def _check_deadline(self, deadline: float, what: str, exc: BaseException) -> None:
        if time.monotonic() > deadline:
            raise BusError(
                f"{what}: NATS unavailable for {self._publish_timeout_s:g}s: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _log.warning("nats_retry", action=what, error=f"{type(exc).__name__}: {exc}")

    # -- consuming -------------------------------------------------------------------------
    def _start_loop(self, loop: Callable[..., Awaitable[None]], *args: Any, name: str) -> None:
        assert self._task_group is not None
        if self._loops == 0:
            self._loops_done = anyio.Event()
        self._loops += 1

        async def run() -> None:
            try:
                await loop(*args)
            finally:
                self._loops -= 1
                if self._loops == 0:
                    self._loops_done.set()

        self._task_group.start_soon(run, name=name)

    def _start_consuming(self, slot: _AgentSlot) -> None:
        if not slot.local or slot.started or not slot.subjects:
            return
        slot.started = True
        self._start_loop(self._consume, slot, name=f"nats-consume-{slot.endpoint.name}")

    async def _consume(self, slot: _AgentSlot) -> None:
        """``concurrency`` fetchers, each with its own pull request (``fetch(1)`` returns as soon
        as one message is there; a batch fetch would wait to fill the batch), plus one
        heartbeat loop for the messages in flight."""
        await self._provision()
        async with anyio.create_task_group() as fetchers:
            fetchers.start_soon(self._heartbeats, slot)
            async with anyio.create_task_group() as handlers:
                for index in range(slot.endpoint.concurrency):
                    handlers.start_soon(self._fetcher, slot, name=f"{slot.consumer}#{index}")
            fetchers.cancel_scope.cancel()

    async def _fetcher(self, slot: _AgentSlot) -> None:
        js = self._require_js()
        subscription = await self._retrying(
            f"bind {slot.consumer}", js.pull_subscribe_bind, slot.consumer, self._stream
        )
        try:
            while not self._closed:
                messages = []
                try:
                    with anyio.CancelScope() as waiting:
                        self._cancel_on_close.add(waiting)
                        try:
                            messages = await subscription.fetch(1, timeout=self._fetch_timeout_s)
                        finally:
                            self._cancel_on_close.discard(waiting)
                except TimeoutError:  # no message (nats-py raises its own or the builtin)
                    continue
                except _TRANSIENT as exc:
                    _log.warning("nats_fetch_failed", agent=slot.endpoint.name,
                                 error=f"{type(exc).__name__}: {exc}")
                    await anyio.sleep(0.2)
                    continue
                for raw in messages:
                    self._local.begin()
                    slot.holding[id(raw)] = raw
                    try:
                        await self._deliver(slot, raw)
                    finally:
                        slot.holding.pop(id(raw), None)
                        self._local.end()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await subscription.unsubscribe()

    async def _heartbeats(self, slot: _AgentSlot) -> None:
        """Tell the broker the handlers still work on what they hold: no redelivery while a
        slow handler (an LLM call) runs; a dead process stops sending, so its messages are
        redelivered after ``ack_wait_s``."""
        while True:
            await anyio.sleep(self._ack_wait_s / 3)
            for raw in list(slot.holding.values()):
                with contextlib.suppress(*_TRANSIENT):
                    await raw.in_progress()

    async def _deliver(self, slot: _AgentSlot, raw: Msg) -> None:
        headers = raw.headers or {}
        attempt = raw.metadata.num_delivered
        if attempt > 1:
            slot.redelivered += 1
        topic = headers.get(HEADER_TOPIC)
        reply_to = headers.get(HEADER_REPLY)
        try:
            message = decode(headers.get(HEADER_KIND, ""), raw.data)
        except Exception as exc:
            slot.failed += 1
            _log.error("undecodable_message", agent=slot.endpoint.name, subject=raw.subject,
                       error=f"{type(exc).__name__}: {exc}")
            await self._ack(raw)
            return
        envelope = Envelope(message, topic, attempt=attempt)
        handler = slot.handler_for(type(message), topic)
        error: Exception | None = None
        reply: Message | None = None
        if handler is None:
            _log.error("no_local_handler", agent=slot.endpoint.name, message_kind=message.kind)
            await self._ack(raw)
            return
        if attempt > self._max_deliveries:
            error = BusError(
                f"delivered {attempt - 1} times without an ack (max_deliveries="
                f"{self._max_deliveries}); the handler keeps dying on it"
            )
        else:
            error, reply = await self._run_handler(slot, envelope, handler)
        if error is None:
            slot.delivered += 1
        else:
            slot.failed += 1
            await self._dead_letter(slot, envelope, error)
        for observer in self._observers:
            try:
                await observer.on_handled(envelope, slot.endpoint.name, error)
            except Exception:
                self._observer_failed("on_handled", message)
        if reply_to is not None:
            await self._send_reply(reply_to, slot.endpoint.name, reply, error)
        await self._ack(raw)

    async def _run_handler(
        self, slot: _AgentSlot, envelope: Envelope, handler: Handler
    ) -> tuple[Exception | None, Message | None]:
        slot.in_flight += 1
        slot.peak_in_flight = max(slot.peak_in_flight, slot.in_flight)
        token = _SCOPE.set(_DeliveryScope(envelope.message.id, slot.endpoint.name,
                                          envelope.attempt))
        try:
            return None, await handler(envelope.message)
        except Exception as exc:
            return exc, None
        finally:
            _SCOPE.reset(token)
            slot.in_flight -= 1

    async def _ack(self, raw: Msg) -> None:
        try:
            await raw.ack()
        except _TRANSIENT as exc:
            # Not fatal: the message will be redelivered, and handlers are idempotent.
            _log.warning("nats_ack_failed", subject=raw.subject,
                         error=f"{type(exc).__name__}: {exc}")

    async def _send_reply(
        self, inbox: str, agent: str, reply: Message | None, error: BaseException | None
    ) -> None:
        body: dict[str, Any] = {"agent": agent, "kind": None, "message": None, "error": None,
                                "error_type": None}
        if error is not None:
            body["error"] = str(error)
            body["error_type"] = type(error).__name__
        elif reply is not None:
            body["kind"] = reply.kind
            body["message"] = reply.model_dump(mode="json")
        try:
            await self._require_nc().publish(inbox, json.dumps(body).encode())
        except _TRANSIENT as exc:
            _log.warning("nats_reply_failed", agent=agent, error=str(exc))

    async def _dead_letter(self, slot: _AgentSlot, envelope: Envelope, error: Exception) -> None:
        message = envelope.message
        dead = DeadLetter.of(message, slot.endpoint.name, error, envelope.attempt)
        if not self._monitor:  # the monitor counts every dead letter from the stream
            self._keep_dead_letter(dead)
        _log.error(
            "handler_failed",
            agent=slot.endpoint.name,
            message_kind=message.kind,
            message_id=message.id,
            correlation_id=message.correlation_id,
            attempt=envelope.attempt,
            error_type=dead.error_type,
            error=dead.error,
        )
        # Agents subscribed to dead letters get it, except for a dead letter's own failure.
        orphan = isinstance(message, DeadLetter)
        await self._publish(
            dead,
            None,
            {},
            subject=orphan_dead_letter_subject(self._stream) if orphan else None,
            msg_id=dedupe_id("dead", message.id, slot.endpoint.name),
            internal=True,  # a handler that failed while the bus closes still leaves its letter
        )

    def _keep_dead_letter(self, dead: DeadLetter) -> None:
        self._dead_letters.append(dead)
        self._dead_letter_count += 1

    # -- the monitor -----------------------------------------------------------------------
    async def _monitor_loop(self) -> None:
        await self._retrying(
            "create monitor consumer", self._add_consumer, MONITOR_CONSUMER,
            stream_subjects(self._stream), 4096,
        )
        js = self._require_js()
        await self._await_predecessor_batch()
        subscription = await self._retrying(
            "bind monitor", js.pull_subscribe_bind, MONITOR_CONSUMER, self._stream
        )
        try:
            while not self._closed:
                try:
                    batch = await subscription.fetch(256, timeout=_MONITOR_FETCH_S)
                except TimeoutError:  # no message (nats-py raises its own or the builtin)
                    continue
                except _TRANSIENT as exc:
                    _log.warning("nats_fetch_failed", agent=MONITOR_CONSUMER, error=str(exc))
                    await anyio.sleep(0.2)
                    continue
                self._local.begin()
                try:
                    in_order = await self._observe(batch)
                finally:
                    self._local.end()
                if not in_order:  # part of the batch comes back: let it come before newer ones
                    await self._wait_out_redelivery("batch not fully acked", len(batch))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await subscription.unsubscribe()

    async def _await_predecessor_batch(self) -> None:
        """Keep the monitor in stream order after a coordinator crash.

        The dead monitor's last batch is unacked; JetStream redelivers it only after
        ``ack_wait_s``, and would meanwhile hand newer messages to us — an older ``Answered``
        stored after a newer ``Accepted`` would regress a step. Expired messages are redelivered
        before new ones, so: if the consumer has unacked messages, wait out ``ack_wait_s``
        before the first fetch.
        """
        info = await self._retrying(
            "monitor info", self._require_js().consumer_info, self._stream, MONITOR_CONSUMER
        )
        pending = int(info.num_ack_pending or 0)
        if pending:
            await self._wait_out_redelivery("a previous monitor left a batch unacked", pending)

    async def _wait_out_redelivery(self, reason: str, unacked: int) -> None:
        wait_s = self._ack_wait_s * 1.1 + 0.5
        _log.warning("monitor_waits_for_redelivery", reason=reason, unacked=unacked,
                     wait_s=round(wait_s, 1))
        with anyio.CancelScope() as waiting:
            self._cancel_on_close.add(waiting)
            try:
                await anyio.sleep(wait_s)
            finally:
                self._cancel_on_close.discard(waiting)

    async def _observe(self, batch: list[Msg]) -> bool:
        """Feed a batch to the observers, flush them, ack it. False when some of it may not be
        acked (so it will be redelivered): the caller then keeps newer messages waiting."""
        for raw in batch:
            headers = raw.headers or {}
            try:
                message = decode(headers.get(HEADER_KIND, ""), raw.data)
            except Exception as exc:
                _log.error("undecodable_message", agent=MONITOR_CONSUMER, subject=raw.subject,
                           error=f"{type(exc).__name__}: {exc}")
                continue
            self._monitored += 1
            envelope = Envelope(message, headers.get(HEADER_TOPIC),
                                attempt=raw.metadata.num_delivered)
            for observer in self._observers:
                try:
                    await observer.on_publish(envelope)
                except Exception:
                    self._observer_failed("on_publish", message)
            if isinstance(message, DeadLetter):
                self._keep_dead_letter(message)
                for observer in self._observers:
                    try:
                        await observer.on_dead_letter(message)
                    except Exception:
                        self._observer_failed("on_dead_letter", message)
        for observer in self._observers:
            flush = getattr(observer, "flush", None)
            if callable(flush):
                try:
                    result = flush()
                    if isinstance(result, Awaitable):
                        await result
                except Exception:
                    # Not acked: the batch comes again and the observer sees it again.
                    _log.exception("observer_flush_failed")
                    return False
        # Acks on one connection are processed in order: confirming the last one confirms the
        # batch, unless the connection changed in between.
        reconnects = self._reconnects
        acked = True
        for index, raw in enumerate(batch):
            try:
                if index == len(batch) - 1:
                    await raw.ack_sync(timeout=5.0)
                else:
                    await raw.ack()
            except _TRANSIENT as exc:
                acked = False
                _log.warning("nats_ack_failed", subject=raw.subject, error=str(exc))
        return acked and reconnects == self._reconnects

    def _observer_failed(self, hook: str, message: Message) -> None:
        self._observer_errors += 1
        log_observer_failure(_log, hook, message)

    # -- draining and accounting -----------------------------------------------------------
    async def drain(self) -> None:
        """Return once the whole topology is idle (see the module docstring); polls the broker
        every ``drain_poll_s``. Raises BusError when the broker stays unavailable."""
        await self._provision()
        while True:
            before = await self._retrying("stream info", self._last_sequence)
            busy = await self._retrying("consumer info", self._poll_consumers)
            if not busy and self._local.count == 0:
                after = await self._retrying("stream info", self._last_sequence)
                if after == before and self._local.count == 0:
                    return
            await anyio.sleep(self._drain_poll_s)

    async def _refresh_statistics(self) -> None:
        """On the monitor: poll every consumer's backlog each ``STATISTICS_INTERVAL_S`` so that
        `statistics()` (the progress display) shows queue depths while the run goes."""
        while not self._closed:
            with anyio.CancelScope() as waiting:
                self._cancel_on_close.add(waiting)
                try:
                    await anyio.sleep(STATISTICS_INTERVAL_S)
                finally:
                    self._cancel_on_close.discard(waiting)
            if self._closed:
                return
            try:
                await self._poll_consumers()
            except Exception as exc:  # statistics are best effort
                _log.debug("nats_statistics_failed", error=f"{type(exc).__name__}: {exc}")

    async def _last_sequence(self) -> int:
        info = await self._require_js().stream_info(self._stream)
        return int(info.state.last_seq)

    async def _poll_consumers(self) -> bool:
        js = self._require_js()
        busy = False
        names = [slot.consumer for slot in self._agents.values() if slot.subjects]
        if self._monitor:
            names.append(MONITOR_CONSUMER)
        slots = {slot.consumer: slot for slot in self._agents.values()}
        for name in names:
            try:
                info = await js.consumer_info(self._stream, name)
            except nats.js.errors.NotFoundError:
                busy = True  # the monitor consumer is being created
                continue
            pending = int(info.num_pending or 0)
            unacked = int(info.num_ack_pending or 0)
            slot = slots.get(name)
            if slot is not None:
                slot.queued, slot.unacked = pending, unacked
            if pending or unacked:
                busy = True
        return busy

    async def wait_done(self) -> None:
        """Return when a coordinator announces the end of the run (`announce_done`)."""
        nc = self._require_nc()
        subscription = await nc.subscribe(control_subject(self._stream))
        try:
            while True:
                try:
                    message = await subscription.next_msg(timeout=None)
                except nats.errors.TimeoutError:
                    continue
                if message.data == _DONE:
                    return
        finally:
            with anyio.CancelScope(shield=True):
                await subscription.unsubscribe()

    async def announce_done(self) -> None:
        """Tell every worker listening (`wait_done`) that the run is over."""
        nc = self._require_nc()
        await nc.publish(control_subject(self._stream), _DONE)
        await nc.flush()

    async def stored_messages(self) -> int:
        """How many messages the stream holds now (not yet acked by every consumer)."""
        info = await self._retrying("stream info", self._require_js().stream_info, self._stream)
        return int(info.state.messages)

    @property
    def dead_letters(self) -> Sequence[DeadLetter]:
        return tuple(self._dead_letters)

    @property
    def dead_letter_count(self) -> int:
        """Dead letters of the whole run on the monitor; of this process's handlers elsewhere."""
        return self._dead_letter_count

    @property
    def stream(self) -> str:
        return self._stream

    def statistics(self) -> BusStatistics:
        """Local counters; ``queued`` is each consumer's backlog as last polled (every
        ``STATISTICS_INTERVAL_S`` on the monitor, and by `drain`)."""
        agents = {name: slot.statistics() for name, slot in self._agents.items()}
        backlog = sum(slot.queued for slot in self._agents.values())
        return BusStatistics(
            published=self._published,
            pending=self._local.count + backlog,
            dead_letters=self._dead_letter_count,
            agents=agents,
        )

    def broker_statistics(self) -> dict[str, int]:
        """Counters beyond the protocol's: de-duplicated publishes, redeliveries, messages the
        monitor observed, publishers waiting on a full stream."""
        return {
            "waiting_publishers": self._waiting_publishers,
            "duplicates_dropped": self._duplicates,
            "redelivered": sum(slot.redelivered for slot in self._agents.values()),
            "monitored": self._monitored,
            "observer_errors": self._observer_errors,
        }

    # -- helpers ---------------------------------------------------------------------------
    def _require_nc(self) -> NatsClient:
        if self._nc is None:
            raise BusError("the NATS bus is not open: use `async with NatsBus(...)`")
        return self._nc

    def _require_js(self) -> JetStreamContext:
        if self._js is None:
            raise BusError("the NATS bus is not open: use `async with NatsBus(...)`")
        return self._js

    async def _retrying(self, what: str, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        deadline = time.monotonic() + self._publish_timeout_s
        delay = 0.05
        while True:
            try:
                return await call(*args)
            except _TRANSIENT as exc:
                self._check_deadline(deadline, what, exc)
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _on_client_error(self, exc: Exception) -> None:
        _log.warning("nats_client_error", error=f"{type(exc).__name__}: {exc}")

    async def _on_disconnected(self) -> None:
        if not self._closed:
            _log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        self._reconnects += 1
        nc = self._nc
        _log.warning("nats_reconnected", server=str(nc.connected_url) if nc else None)


def _is_duplicate_in_process(exc: nats.js.errors.APIError) -> bool:
    """409 "duplicate message id is in process": our earlier attempt of this publish (same
    Nats-Msg-Id) is still being stored — seen after a stream leader failover. Retry: the answer
    becomes a duplicate ack once the first attempt is stored, or a fresh store if it was lost."""
    return exc.err_code == 10158 or "duplicate message id is in process" in (
        exc.description or ""
    ).lower()


def _is_stream_full(exc: nats.js.errors.APIError) -> bool:
    description = (exc.description or "").lower()
    return exc.err_code in (10077, 10078) or "maximum messages" in description or (
        "maximum bytes" in description
    )
