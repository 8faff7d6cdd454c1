"""Behaviour of the in-process bus. Synchronisation by events and wait_all_tasks_blocked only."""

from __future__ import annotations

from typing import Literal

import anyio
import pytest

from bus import (
    AgentEndpoint,
    DeadLetter,
    Envelope,
    InProcessBus,
    Message,
    NoReplyError,
    NoSubscriberError,
    RequestFailedError,
    RequestTimeoutError,
    Route,
)
from bus.errors import BusClosedError, DuplicateSubscriptionError


class Ping(Message):
    kind: Literal["test.ping"] = "test.ping"
    n: int = 0


class Animal(Message):
    abstract = True
    name: str = ""


class Dog(Animal):
    kind: Literal["test.dog"] = "test.dog"


class Cat(Animal):
    kind: Literal["test.cat"] = "test.cat"


class Pong(Message):
    kind: Literal["test.pong"] = "test.pong"
    n: int = 0


def collector(into: list[Message]):  # type: ignore[no-untyped-def]
    async def handle(message: Message) -> None:
        into.append(message)

    return handle


async def test_full_mailbox_makes_publish_wait() -> None:
    release = anyio.Event()
    seen: list[Message] = []

    async def slow(message: Message) -> None:
        await release.wait()
        seen.append(message)

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("slow", [Route(Ping, slow)], mailbox_size=2))
        published: list[int] = []

        async def producer() -> None:
            for n in range(5):
                await bus.publish(Ping(n=n))
                published.append(n)

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            await anyio.wait_all_tasks_blocked()
            # one message is held by the handler, two fill the mailbox, the 4th publish waits
            assert published == [0, 1, 2]
            stats = bus.statistics().agents["slow"]
            assert stats.queued == 2
            assert stats.in_flight == 1
            assert stats.waiting_publishers == 1
            release.set()
        await bus.drain()
    assert [m.n for m in seen if isinstance(m, Ping)] == [0, 1, 2, 3, 4]


async def test_concurrency_one_keeps_fifo_order() -> None:
    order: list[int] = []

    async def handle(message: Ping) -> None:
        await anyio.lowlevel.checkpoint()
        order.append(message.n)

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("fifo", [Route(Ping, handle)], concurrency=1))
        for n in range(200):
            await bus.publish(Ping(n=n))
        await bus.drain()
    assert order == list(range(200))


async def test_concurrency_n_runs_n_handlers_at_once() -> None:
    release = anyio.Event()
    started = 0

    async def handle(message: Ping) -> None:
        nonlocal started
        started += 1
        await release.wait()

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("wide", [Route(Ping, handle)], concurrency=4))
        for n in range(10):
            await bus.publish(Ping(n=n))
        await anyio.wait_all_tasks_blocked()
        assert started == 4
        assert bus.statistics().agents["wide"].in_flight == 4
        release.set()
        await bus.drain()
        stats = bus.statistics().agents["wide"]
    assert stats.peak_in_flight == 4
    assert stats.delivered == 10


async def test_base_type_handler_receives_subclasses_and_most_specific_wins() -> None:
    generic: list[Message] = []
    dogs: list[Message] = []
    zoo: list[Message] = []
    async with InProcessBus() as bus:
        bus.attach(
            AgentEndpoint(
                "keeper", [Route(Animal, collector(generic)), Route(Dog, collector(dogs))]
            )
        )
        bus.attach(AgentEndpoint("zoo", [Route(Message, collector(zoo))]))
        await bus.publish(Dog(name="rex"))
        await bus.publish(Cat(name="tom"))
        await bus.drain()
    assert [m.kind for m in dogs] == ["test.dog"]
    assert [m.kind for m in generic] == ["test.cat"]
    assert sorted(m.kind for m in zoo) == ["test.cat", "test.dog"]


async def test_topic_subscription_only_sees_its_topic() -> None:
    plain: list[Message] = []
    red: list[Message] = []
    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("plain", [Route(Ping, collector(plain))]))
        bus.attach(AgentEndpoint("red", [Route(Ping, collector(red), topic="red")]))
        await bus.publish(Ping(n=1))
        await bus.publish(Ping(n=2), topic="red")
        with pytest.raises(NoSubscriberError, match="topic 'blue'"):
            await bus.publish(Ping(n=3), topic="blue")
        await bus.drain()
    assert [m.n for m in plain if isinstance(m, Ping)] == [1]
    assert [m.n for m in red if isinstance(m, Ping)] == [2]


async def test_publishing_an_unhandled_kind_is_an_error() -> None:
    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("pings", [Route(Ping, collector([]))]))
        with pytest.raises(NoSubscriberError, match=r"test\.pong"):
            await bus.publish(Pong())
        assert bus.statistics().published == 0


async def test_handler_exception_becomes_dead_letter_and_agent_keeps_going() -> None:
    handled: list[int] = []
    letters: list[Message] = []

    async def flaky(message: Ping) -> None:
        if message.n == 1:
            raise RuntimeError("boom on one")
        handled.append(message.n)

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("flaky", [Route(Ping, flaky)]))
        bus.attach(AgentEndpoint("morgue", [Route(DeadLetter, collector(letters))]))
        for n in range(3):
            await bus.publish(Ping(n=n))
        await bus.drain()
        stats = bus.statistics()
    assert handled == [0, 2]
    assert stats.dead_letters == 1
    assert stats.agents["flaky"].failed == 1
    assert stats.agents["flaky"].delivered == 2
    (dead,) = bus.dead_letters
    assert dead.agent == "flaky"
    assert dead.error_type == "RuntimeError"
    assert "boom on one" in dead.traceback
    assert dead.message["n"] == 1
    assert [m.kind for m in letters] == ["dead_letter"]


async def test_drain_returns_after_failures_and_when_idle() -> None:
    async def always_fails(message: Ping) -> None:
        raise ValueError("nope")

    async with InProcessBus() as bus:
        await bus.drain()  # idle bus: returns at once
        bus.attach(AgentEndpoint("bad", [Route(Ping, always_fails)], concurrency=3))
        for n in range(50):
            await bus.publish(Ping(n=n))
        with anyio.fail_after(5):
            await bus.drain()
        assert bus.statistics().pending == 0
        assert bus.dead_letter_count == 50


async def test_request_gets_the_handler_reply() -> None:
    async def double(message: Ping) -> Pong:
        return Pong.caused_by(message, n=message.n * 2)

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("doubler", [Route(Ping, double)]))
        request = Ping(n=21)
        reply = await bus.request(request, timeout=5)
    assert isinstance(reply, Pong)
    assert reply.n == 42
    assert reply.causation_id == request.id
    assert reply.correlation_id == request.correlation_id


async def test_request_times_out_when_nobody_answers_in_time() -> None:
    never = anyio.Event()

    async def hang(message: Ping) -> Pong:
        await never.wait()
        return Pong()

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("hang", [Route(Ping, hang)]))
        with pytest.raises(RequestTimeoutError, match=r"within 0\.05s"):
            await bus.request(Ping(), timeout=0.05)
        never.set()


async def test_request_errors_are_typed() -> None:
    async def silent(message: Ping) -> None:
        return None

    async def raises(message: Dog) -> None:
        raise KeyError("x")

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("silent", [Route(Ping, silent), Route(Dog, raises)]))
        with pytest.raises(NoReplyError):
            await bus.request(Ping(), timeout=5)
        with pytest.raises(RequestFailedError) as caught:
            await bus.request(Dog(), timeout=5)
        assert isinstance(caught.value.__cause__, KeyError)
        with pytest.raises(NoSubscriberError):
            await bus.request(Pong(), timeout=5)


async def test_observer_sees_every_publish_delivery_and_failure() -> None:
    events: list[str] = []

    class Recorder:
        async def on_publish(self, envelope: Envelope) -> None:
            events.append(f"publish {envelope.message.kind}")

        async def on_handled(
            self, envelope: Envelope, agent: str, error: BaseException | None
        ) -> None:
            events.append(f"handled {agent} {envelope.message.kind} {type(error).__name__}")

        async def on_dead_letter(self, dead_letter: DeadLetter) -> None:
            events.append(f"dead {dead_letter.message_kind}")

    async def fail_dogs(message: Dog) -> None:
        raise ValueError("no dogs")

    async with InProcessBus() as bus:
        bus.add_observer(Recorder())
        bus.attach(AgentEndpoint("a", [Route(Ping, collector([])), Route(Dog, fail_dogs)]))
        await bus.publish(Ping())
        await bus.drain()
        await bus.publish(Dog())
        await bus.drain()
    assert events == [
        "publish test.ping",
        "handled a test.ping NoneType",
        "publish test.dog",
        "dead test.dog",
        "handled a test.dog ValueError",
    ]


async def test_duplicate_agent_name_and_publish_after_close_are_errors() -> None:
    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("one", [Route(Ping, collector([]))]))
        with pytest.raises(DuplicateSubscriptionError):
            bus.attach(AgentEndpoint("one", [Route(Ping, collector([]))]))
        await bus.close()
        with pytest.raises(BusClosedError):
            await bus.publish(Ping())


async def test_close_lets_queued_messages_finish() -> None:
    seen: list[Message] = []
    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("c", [Route(Ping, collector(seen))], mailbox_size=10))
        for n in range(5):
            await bus.publish(Ping(n=n))
        await bus.close()
    assert len(seen) == 5
