"""A trivial three-stage topology (source → relay → sink) that exercises the framework end to end.

It needs no LLM: the source emits numbered items, relays transform them, the sink writes them to
``items.jsonl`` in the run directory. Used by ``configs/demo.toml``, tests and the bus benchmark.
"""

from __future__ import annotations

import json
from typing import IO, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from agents.base import Agent, AgentProgress, NoParams, handles
from agents.registry import register
from bus.message import Message
from bus.protocol import Route

__all__ = ["DemoItem", "DemoRelay", "DemoSink", "DemoSource"]


class DemoItem(Message):
    """A numbered item flowing through the demo topology."""

    kind: Literal["demo.item"] = "demo.item"
    index: int
    text: str
    hops: int = 0


class SourceParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(default=100, ge=0, description="how many items to emit")
    topic: str | None = Field(default=None, description="topic to publish on")
    fail_every: int = Field(default=0, ge=0, description="make every n-th item fail (0: none)")


@register("demo.source")
class DemoSource(Agent[SourceParams]):
    """Emits ``count`` items, then its main task ends; stops early on a graceful stop."""

    role = "source"
    emitted = 0

    async def run(self) -> None:
        params = self.params
        self.log.info("source_started", count=params.count)
        for index in range(params.count):
            if self.context.stopping.is_set():
                self.log.info("source_stopping", emitted=self.emitted)
                return
            failing = params.fail_every and (index + 1) % params.fail_every == 0
            text = "fail" if failing else f"item {index}"
            await self.publish(DemoItem(index=index, text=text), topic=params.topic)
            self.emitted += 1

    def progress(self) -> AgentProgress:
        return AgentProgress(label="emitted", completed=self.emitted, total=self.params.count)


class RelayParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str | None = Field(default=None, description="topic to consume")
    forward: str | None = Field(default=None, description="topic to publish on")
    stall_after: int | None = Field(
        default=None, ge=0, description="after this many items, hang (simulates a stuck call)"
    )


@register("demo.relay")
class DemoRelay(Agent[RelayParams]):
    """Forwards each item (upper-cased text, one more hop); raises on items whose text is 'fail'."""

    role = "relay"
    relayed = 0

    def routes(self) -> list[Route]:
        return [Route(DemoItem, self.relay, self.params.listen)]

    async def relay(self, message: DemoItem) -> None:
        if message.text == "fail":
            raise ValueError(f"demo failure on item {message.index}")
        if self.params.stall_after is not None and self.relayed >= self.params.stall_after:
            self.log.info("relay_stalled", index=message.index)
            await anyio.Event().wait()
        self.relayed += 1
        forwarded = DemoItem.caused_by(
            message, index=message.index, text=message.text.upper(), hops=message.hops + 1
        )
        await self.publish(forwarded, topic=self.params.forward)


@register("demo.sink")
class DemoSink(Agent[NoParams]):
    """Writes every item it receives (no topic) to ``items.jsonl`` in the run directory."""

    role = "sink"
    received = 0
    _file: IO[str] | None = None

    async def on_start(self) -> None:
        self.context.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = (self.context.run_dir / "items.jsonl").open("w", encoding="utf-8")

    async def on_stop(self) -> None:
        if self._file is not None:
            self._file.close()

    @handles
    async def on_item(self, message: DemoItem) -> None:
        assert self._file is not None, "on_start opens the file"
        self._file.write(json.dumps({"index": message.index, "text": message.text}) + "\n")
        self.received += 1

    def progress(self) -> AgentProgress:
        return AgentProgress(label="written", completed=self.received)
