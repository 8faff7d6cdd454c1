"""The NATS bus keeps the Bus contract across processes: routing, work queues, dead letters,
redelivery, de-duplication, backpressure, request/reply, the monitor and drain.

Replicas are separate `NatsBus` connections (as separate processes would be); a replica "dies"
when its bus is torn down by cancellation: nothing it held is acked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal

import anyio
import pytest

from bus.errors import (
    BusClosedError,
    NoReplyError,
    NoSubscriberError,
    RequestFailedError,
    RequestTimeoutError,
)
from bus.message import DeadLetter, Message
from tests.distributed._support import require_nats

require_nats()

from bus.nats import NatsBus, NatsServer, RemoteHandlerError  # noqa: E402
from bus.protocol import AgentEndpoint, Envelope, Route  # noqa: E402

pytestmark = pytest.mark.timeout(60)


class Job(Message):
    kind: Literal["test.nats.job"] = "test.nats.job"
    n: int


class Done(Message):
    kind: Literal["test.nats.done"] = "test.nats.done"
    n: int


class Question(Message):
    kind: Literal["test.nats.question"] = "test.nats.question"
    text: str


class Answer(Message):
    kind: Literal["test.nats.answer"] = "test.nats.answer"
    text: str


class Recorder:
    """An observer that records what the monitor feeds it (and when it is flushed)."""

    def __init__(self) -> None:
        self.published: list[Message] = []
        self.dead: list[DeadLetter] = []
        self.flushes = 0

    async def on_publish(self, envelope: Envelope) -> None:
        self.published.append(envelope.message)

    async def on_handled(self, envelope: Envelope, agent: str, error: BaseException | None) -> None:
        return None

    async def on_dead_letter(self, dead_letter: DeadLetter) -> None:
        self.dead.append(dead_letter)

    def flush(self) -> None:
        self.flushes += 1


MakeBus = Callable[..., NatsBus]


@asynccontextmanager
async def buses(server: NatsServer) -> AsyncIterator[Callable[..., Any]]:
    """``await open_bus(**options)`` → an open NatsBus on the test stream, closed on exit.

    A context manager inside the test (not an async fixture): anyio task groups must be entered
    and exited by the same task.
    """
    async with AsyncExitStack() as stack:

        async def open_(**options: Any) -> NatsBus:
            options.setdefault("stream", "t")
            options.setdefault("ack_wait_s", 1.0)
            options.setdefault("fetch_timeout_s", 0.2)
            return await stack.enter_async_context(NatsBus(server.url, **options))

        yield open_


def job_sink(name: str, seen: list[int], *, concurrency: int = 1) -> AgentEndpoint:
    async def on_job(job: Job) -> None:
        seen.append(job.n)

    return AgentEndpoint(name, [Route(Job, on_job)], concurrency=concurrency)


async def test_each_agent_gets_every_message_once_and_replicas_share_the_work(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        first, second, audit = [], [], []
        replica_a = await open_bus()
        replica_b = await open_bus()
        replica_a.attach(job_sink("worker", first))
        replica_b.attach(job_sink("worker", second))
        replica_a.attach(job_sink("audit", audit))
        replica_b.declare(job_sink("audit", audit))
        for n in range(200):
            await replica_b.publish(Job(n=n))
        await replica_b.drain()
        assert sorted(first + second) == list(range(200))  # work queue: once over the replicas
        assert sorted(audit) == list(range(200))  # every agent gets its own copy
        assert first
        assert second


async def test_a_kind_nobody_handles_raises_no_subscriber(nats_server: NatsServer) -> None:
    async with buses(nats_server) as open_bus:
        bus = await open_bus()
        bus.attach(job_sink("worker", []))
        with pytest.raises(NoSubscriberError, match=r"test\.nats\.done"):
            await bus.publish(Done(n=1))


async def test_handler_error_is_dead_lettered_once_and_not_redelivered(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        recorder = Recorder()
        calls: list[int] = []
        letters: list[DeadLetter] = []

        async def explode(job: Job) -> None:
            calls.append(job.n)
            raise ValueError(f"bad job {job.n}")

        async def on_dead(dead: DeadLetter) -> None:
            letters.append(dead)

        coordinator = await open_bus(monitor=True)
        coordinator.add_observer(recorder)
        coordinator.attach(AgentEndpoint("keeper", [Route(DeadLetter, on_dead)]))
        worker = await open_bus()
        worker.declare(AgentEndpoint("keeper", [Route(DeadLetter, on_dead)]))
        worker.attach(AgentEndpoint("worker", [Route(Job, explode)]))
        coordinator.declare(AgentEndpoint("worker", [Route(Job, explode)]))
        await coordinator.publish(Job(n=7))
        await coordinator.drain()
        assert calls == [7]  # acked after the dead letter: no retry loop
        assert [dead.error for dead in letters] == ["bad job 7"]
        assert worker.dead_letter_count == 1
        assert coordinator.dead_letter_count == 1  # the monitor counts the run's dead letters
        assert [dead.error_type for dead in recorder.dead] == ["ValueError"]
        assert worker.statistics().agents["worker"].failed == 1


async def test_a_message_held_by_a_dead_replica_is_redelivered_to_another(
    nats_server: NatsServer
) -> None:
    async with buses(nats_server) as open_bus:
        started = anyio.Event()
        attempts: list[int] = []

        async def hang(job: Job) -> None:
            started.set()
            await anyio.sleep_forever()

        survivor = await open_bus()
        seen: list[int] = []

        async def on_job(job: Job) -> None:
            seen.append(job.n)

        class Attempts(Recorder):
            async def on_handled(self, envelope: Envelope, agent: str, error: Any) -> None:
                attempts.append(envelope.attempt)

        survivor.add_observer(Attempts())
        survivor.declare(AgentEndpoint("worker", [Route(Job, on_job)]))
        async with anyio.create_task_group() as tg:

            async def doomed_replica() -> None:
                bus = NatsBus(nats_server.url, stream="t", ack_wait_s=1.0, fetch_timeout_s=0.2)
                async with bus:
                    bus.attach(AgentEndpoint("worker", [Route(Job, hang)]))
                    await anyio.sleep_forever()

            tg.start_soon(doomed_replica)
            await survivor.publish(Job(n=1))
            await started.wait()
            tg.cancel_scope.cancel()  # the replica dies holding the message, unacked
        survivor.attach(AgentEndpoint("worker-b", [Route(Job, on_job)]))  # unrelated consumer
        second = await open_bus()
        second.attach(AgentEndpoint("worker", [Route(Job, on_job)]))
        await survivor.drain()
        assert seen.count(1) == 2  # worker (redelivered) + worker-b (its own copy)
        assert second.statistics().agents["worker"].delivered == 1


async def test_a_redelivered_handler_publishes_nothing_twice(
    nats_server: NatsServer
) -> None:
    async with buses(nats_server) as open_bus:
        published = anyio.Event()
        done: list[int] = []

        async def forward_then_hang(job: Job) -> None:
            await bus_of_doomed.publish(Done(n=job.n))  # a new message id each time
            published.set()
            await anyio.sleep_forever()

        async def forward(job: Job) -> None:
            await replacement.publish(Done(n=job.n))

        async def on_done(message: Done) -> None:
            done.append(message.n)

        sink = await open_bus()
        sink.attach(AgentEndpoint("sink", [Route(Done, on_done)]))
        sink.declare(AgentEndpoint("relay", [Route(Job, forward)]))
        bus_of_doomed = NatsBus(nats_server.url, stream="t", ack_wait_s=1.0, fetch_timeout_s=0.2)
        async with anyio.create_task_group() as tg:

            async def doomed_replica() -> None:
                async with bus_of_doomed:
                    bus_of_doomed.declare(AgentEndpoint("sink", [Route(Done, on_done)]))
                    bus_of_doomed.attach(AgentEndpoint("relay", [Route(Job, forward_then_hang)]))
                    await anyio.sleep_forever()

            tg.start_soon(doomed_replica)
            await sink.publish(Job(n=5))
            await published.wait()
            tg.cancel_scope.cancel()
        replacement = await open_bus()
        replacement.declare(AgentEndpoint("sink", [Route(Done, on_done)]))
        replacement.attach(AgentEndpoint("relay", [Route(Job, forward)]))
        await sink.drain()
        assert done == [5]  # the broker dropped the repeated publish (same derived Nats-Msg-Id)
        assert replacement.broker_statistics()["duplicates_dropped"] == 1


async def test_a_message_that_keeps_killing_replicas_is_dead_lettered(
    nats_server: NatsServer
) -> None:
    async with buses(nats_server) as open_bus:
        started = anyio.Event()
        calls: list[int] = []

        async def hang(job: Job) -> None:
            started.set()
            await anyio.sleep_forever()

        async def on_job(job: Job) -> None:
            calls.append(job.n)

        coordinator = await open_bus(monitor=True, max_deliveries=1)
        coordinator.declare(AgentEndpoint("worker", [Route(Job, on_job)]))
        async with anyio.create_task_group() as tg:

            async def doomed_replica() -> None:
                bus = NatsBus(nats_server.url, stream="t", ack_wait_s=1.0, fetch_timeout_s=0.2,
                              max_deliveries=1)
                async with bus:
                    bus.attach(AgentEndpoint("worker", [Route(Job, hang)]))
                    await anyio.sleep_forever()

            tg.start_soon(doomed_replica)
            await coordinator.publish(Job(n=3))
            await started.wait()
            tg.cancel_scope.cancel()
        survivor = await open_bus(max_deliveries=1)
        survivor.attach(AgentEndpoint("worker", [Route(Job, on_job)]))
        await coordinator.drain()
        assert calls == []  # second delivery > max_deliveries: dead-lettered, handler not run
        assert [(d.message_id, d.attempt) for d in coordinator.dead_letters] == [
            (coordinator.dead_letters[0].message_id, 2)
        ]
        assert "without an ack" in coordinator.dead_letters[0].error


async def test_a_full_stream_makes_publish_wait_until_consumers_catch_up(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        seen: list[int] = []
        producer = await open_bus(max_messages=3)
        producer.declare(job_sink("worker", seen))
        for n in range(3):
            await producer.publish(Job(n=n))
        finished = anyio.Event()
        consumer = await open_bus(max_messages=3)  # attaches (starts consuming) later

        async def publish_fourth() -> None:
            await producer.publish(Job(n=3))
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish_fourth)
            with anyio.fail_after(10):
                while producer.broker_statistics()["waiting_publishers"] == 0:  # noqa: ASYNC110
                    await anyio.sleep(0.01)  # polls the broker-side condition, no timing
            assert not finished.is_set()
            consumer.attach(job_sink("worker", seen))
            await finished.wait()
        await producer.drain()
        assert sorted(seen) == [0, 1, 2, 3]


async def test_request_gets_the_reply_of_a_handler_in_another_process(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        async def answer(question: Question) -> Message | None:
            if question.text == "fail":
                raise RuntimeError("cannot answer")
            if question.text == "silent":
                return None
            return Answer.caused_by(question, text=question.text.upper())

        server = await open_bus()
        server.attach(AgentEndpoint("oracle", [Route(Question, answer)]))
        client = await open_bus()
        client.declare(AgentEndpoint("oracle", [Route(Question, answer)]))
        reply = await client.request(Question(text="hi"), timeout=10)
        assert isinstance(reply, Answer)
        assert reply.text == "HI"
        with pytest.raises(RequestFailedError, match="cannot answer") as failed:
            await client.request(Question(text="fail"), timeout=10)
        assert isinstance(failed.value.__cause__, RemoteHandlerError)
        with pytest.raises(NoReplyError):
            await client.request(Question(text="silent"), timeout=10)


async def test_request_times_out_when_no_replica_runs(nats_server: NatsServer) -> None:
    async with buses(nats_server) as open_bus:
        client = await open_bus()
        client.declare(job_sink("nobody-home", []))
        with pytest.raises(RequestTimeoutError):
            await client.request(Job(n=1), timeout=0.5)


async def test_the_monitor_observes_every_message_and_flushes_before_acking(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        recorder = Recorder()
        coordinator = await open_bus(monitor=True)
        coordinator.add_observer(recorder)
        coordinator.declare(job_sink("worker", []))
        worker = await open_bus()
        seen: list[int] = []
        worker.attach(job_sink("worker", seen, concurrency=4))
        for n in range(50):
            await worker.publish(Job(n=n), topic=None)
        await coordinator.drain()
        assert sorted(m.n for m in recorder.published if isinstance(m, Job)) == list(range(50))
        assert recorder.flushes >= 1
        assert sorted(seen) == list(range(50))
        stats = worker.statistics().agents["worker"]
        assert stats.delivered == 50
        assert stats.peak_in_flight <= 4


async def test_close_stops_fetching_but_lets_handlers_in_flight_finish_and_publish(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        started, release = anyio.Event(), anyio.Event()
        done: list[int] = []

        async def slow_relay(job: Job) -> None:
            started.set()
            await release.wait()
            await worker.publish(Done(n=job.n))  # after close(): allowed inside a handler

        async def on_done(message: Done) -> None:
            done.append(message.n)

        relay = AgentEndpoint("relay", [Route(Job, slow_relay)])
        sink_endpoint = AgentEndpoint("sink", [Route(Done, on_done)])
        sink = await open_bus()
        sink.attach(sink_endpoint)
        sink.declare(relay)
        worker = await open_bus()
        worker.declare(sink_endpoint)
        worker.attach(relay)
        await sink.publish(Job(n=9))
        await started.wait()
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.close)  # a graceful worker stop while the handler runs
            release.set()
        await sink.drain()
        assert done == [9]
        with pytest.raises(BusClosedError):
            await worker.publish(Job(n=10))


async def test_the_monitor_reports_each_agents_backlog_while_the_run_goes(
    nats_server: NatsServer,
) -> None:
    async with buses(nats_server) as open_bus:
        coordinator = await open_bus(monitor=True)
        coordinator.declare(job_sink("worker", []))  # no replica runs yet
        for n in range(5):
            await coordinator.publish(Job(n=n))
        with anyio.fail_after(10):
            while coordinator.statistics().agents["worker"].queued != 5:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # the statistics refresh polls the broker
        assert coordinator.statistics().pending >= 5


async def test_a_publish_the_broker_still_holds_as_in_process_is_retried_not_failed(
    nats_server: NatsServer,
) -> None:
    """After a stream leader failover the broker may answer a retried publish with 409
    "duplicate message id is in process" (err_code 10158): our first attempt is still being
    stored. That is transient, not a failed handler (it dead-lettered a row in a cluster test)."""
    import nats.js.errors

    async with buses(nats_server) as open_bus:
        received: list[int] = []
        bus = await open_bus()
        bus.attach(job_sink("worker", received))
        await bus.publish(Job(n=0))  # provisions the stream and consumer
        js = bus._js
        assert js is not None
        real_publish = js.publish
        answers = iter([nats.js.errors.APIError(
            code=409, err_code=10158, description="duplicate message id is in process")])

        async def flaky_publish(*args: Any, **kwargs: Any) -> Any:
            error = next(answers, None)
            if error is not None:
                raise error
            return await real_publish(*args, **kwargs)

        js.publish = flaky_publish  # type: ignore[method-assign]
        await bus.publish(Job(n=1))
        await bus.drain()
        assert sorted(received) == [0, 1]
