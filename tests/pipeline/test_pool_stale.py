"""The pool applies the first outcome of a round and ignores a late duplicate of it."""

from __future__ import annotations

from pathlib import Path

from agents.base import AgentContext
from agents.pipeline.messages import Accepted, EvolveRequest, Rejected, Step, step_id_for
from agents.pipeline.store import RowState
from agents.pool import PoolAgent, _Row
from bus import AgentEndpoint, InProcessBus, Message, Route


class Store:
    def __init__(self) -> None:
        self.finished: list[tuple[str, str]] = []

    def row_state(self, seed_id: str) -> RowState | None:
        return None

    def start_row(self, seed: object, position: int) -> None:
        return None

    def finish_row(self, seed_id: str, status: str, error: str | None = None) -> None:
        self.finished.append((seed_id, status))


def step(round_: int, text: str) -> Step:
    return Step(seed_id="s1", round=round_, step_id=step_id_for("s1", round_), instruction=text,
                response="answer")


async def test_a_late_duplicate_outcome_is_ignored(tmp_path: Path) -> None:
    requests: list[Message] = []

    async def collect(message: Message) -> None:
        requests.append(message)

    async with InProcessBus() as bus:
        bus.attach(AgentEndpoint("evol", [Route(EvolveRequest, collect)]))
        store = Store()
        pool = PoolAgent("pool", AgentContext(bus=bus, run_dir=tmp_path,
                                              services={"store": store, "seeds": lambda: iter(())}),
                         {"rounds": 3})
        await pool.on_start()
        pool.active["s1"] = _Row("s1", "seed text", "", None, finished=0)

        await pool.on_outcome(Accepted(seed_id="s1", round=1, step=step(1, "harder")))
        await pool.on_outcome(Rejected(seed_id="s1", round=1, step=step(1, "other"), rule="x",
                                       reason="late duplicate"))
        await bus.drain()
    assert [(m.round, m.instruction) for m in requests if isinstance(m, EvolveRequest)] == [
        (2, "harder")
    ]
    assert pool.active["s1"].instruction == "harder"
    assert store.finished == []
