"""At-least-once delivery is safe for the run store: a step seen twice (the monitor's redelivery of
the same message, or a redelivered handler's new message for the same step) is one dataset row.

No broker needed: this is the store's side of the contract the NATS bus relies on.
"""

from __future__ import annotations

from pathlib import Path

from agents.pipeline.messages import Accepted, Answered, Evolved, EvolveRequest, Step
from bus.protocol import Envelope
from runtime.export import ExportSettings, export_dataset
from runtime.inputs import SeedRecord
from runtime.store import RunStore


def step(round_: int, instruction: str, response: str) -> Step:
    return Step(
        seed_id="s1",
        round=round_,
        step_id=f"s1:{round_}",
        parent_step_id=f"s1:{round_ - 1}" if round_ else None,
        instruction=instruction,
        response=response,
        operation="deepen" if round_ else "seed",
    )


def rounds() -> list[EvolveRequest | Evolved | Answered | Accepted]:
    """One row: the seed accepted at round 0, then one evolution accepted at round 1."""
    seed = step(0, "Write a haiku.", "An old pond...")
    child = step(1, "Write a haiku about autumn rain.", "Cold rain on the roof...")
    return [
        Accepted(seed_id="s1", round=0, step=seed, correlation_id="s1"),
        EvolveRequest(seed_id="s1", round=1, parent_step_id="s1:0",
                      instruction=seed.instruction, correlation_id="s1"),
        Evolved(step=child.model_copy(update={"response": None}), correlation_id="s1"),
        Answered(step=child, correlation_id="s1"),
        Accepted(seed_id="s1", round=1, step=child, correlation_id="s1"),
    ]


async def replay(store: RunStore, messages: list[EvolveRequest | Evolved | Answered | Accepted],
                 ) -> None:
    for message in messages:
        await store.on_publish(Envelope(message))


def dataset(store: RunStore, out: Path) -> list[str]:
    seed = SeedRecord(id="s1", instruction="Write a haiku.", source="t", line=1, position=0)
    store.start_row(seed, 0)
    store.finish_row("s1", "done")
    paths = export_dataset(store, out, ExportSettings(formats=("alpaca",)))
    return paths["alpaca"].read_text(encoding="utf-8").splitlines()


async def test_the_same_messages_observed_twice_make_one_row_per_step(tmp_path: Path) -> None:
    once = RunStore(tmp_path / "once" / "run.sqlite")
    twice = RunStore(tmp_path / "twice" / "run.sqlite")
    messages = rounds()
    await replay(once, messages)
    await replay(twice, messages)
    await replay(twice, messages)  # the monitor's batch redelivered after a coordinator crash
    try:
        assert dataset(twice, tmp_path / "twice") == dataset(once, tmp_path / "once")
        assert len(dataset(twice, tmp_path / "twice")) == 2
    finally:
        once.close()
        twice.close()


async def test_a_redelivered_handlers_new_messages_overwrite_the_same_step(tmp_path: Path) -> None:
    once = RunStore(tmp_path / "once" / "run.sqlite")
    again = RunStore(tmp_path / "again" / "run.sqlite")
    await replay(once, rounds())
    # A second replica re-ran round 1 after a crash: new message ids, the same step identity.
    await replay(again, rounds())
    await replay(again, rounds()[1:])
    try:
        assert dataset(again, tmp_path / "again") == dataset(once, tmp_path / "once")
        steps = list(again.query("SELECT step_id, COUNT(*) AS n FROM steps GROUP BY step_id"))
        assert {(row["step_id"], row["n"]) for row in steps} == {("s1:0", 1), ("s1:1", 1)}
    finally:
        once.close()
        again.close()
