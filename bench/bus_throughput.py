"""Bus throughput: messages through a chain of pass-through agents on the in-process bus.

    python bench/bus_throughput.py [--messages 200000] [--agents 6] [--concurrency 1]

Prints deliveries per second and CPU microseconds per delivery (process time / deliveries).
Target (issue 2): at least 100,000 deliveries/s on one core — the bus is never the bottleneck.
"""

from __future__ import annotations

import argparse
import time
from typing import Literal

import anyio

from bus import AgentEndpoint, InProcessBus, Message, Route


class Token(Message):
    kind: Literal["bench.token"] = "bench.token"
    n: int


async def bench(messages: int, agents: int, concurrency: int, mailbox: int) -> dict[str, float]:
    done = anyio.Event()
    received = 0

    async with InProcessBus() as bus:

        def relay(next_topic: str):  # type: ignore[no-untyped-def]
            async def forward(message: Token) -> None:
                await bus.publish(message, topic=next_topic)

            return forward

        async def sink(message: Token) -> None:
            nonlocal received
            received += 1
            if received == messages:
                done.set()

        for index in range(agents):
            bus.attach(
                AgentEndpoint(
                    f"relay{index}",
                    [Route(Token, relay(f"s{index + 1}"), topic=f"s{index}")],
                    concurrency=concurrency,
                    mailbox_size=mailbox,
                )
            )
        bus.attach(
            AgentEndpoint("sink", [Route(Token, sink, topic=f"s{agents}")], mailbox_size=mailbox)
        )
        tokens = [Token(n=i) for i in range(messages)]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for token in tokens:
            await bus.publish(token, topic="s0")
        await done.wait()
        await bus.drain()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    deliveries = messages * (agents + 1)
    return {
        "deliveries": deliveries,
        "wall_s": wall,
        "deliveries_per_s": deliveries / wall,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--mailbox", type=int, default=1024)
    args = parser.parse_args()
    result = anyio.run(bench, args.messages, args.agents, args.concurrency, args.mailbox)
    target = 100_000
    print(
        f"chain of {args.agents} pass-through agents + sink, {args.messages:,} messages, "
        f"concurrency {args.concurrency}, mailbox {args.mailbox}"
    )
    print(f"deliveries:            {result['deliveries']:,.0f} in {result['wall_s']:.2f} s")
    print(
        f"deliveries/s:          {result['deliveries_per_s']:,.0f}  "
        f"({result['deliveries_per_s'] / target:.2f}x the 100,000/s target)"
    )
    print(f"CPU per delivery:      {result['cpu_us_per_delivery']:.2f} µs")


if __name__ == "__main__":
    main()
