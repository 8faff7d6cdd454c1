"""Exports read the run store: every accepted step with lineage, in seed then round order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.pipeline.messages import Accepted, Rejected, Step, step_id_for
from bus.protocol import Envelope
from runtime.export import ExportSettings, export_dataset, summarize
from runtime.store import RunStore


class Seed:
    def __init__(self, n: int) -> None:
        self.id = f"s{n:03d}"
        self.instruction = f"Instruction {n}"
        self.input = "some input" if n % 2 else ""
        self.output = f"Reference {n}"


def step(seed: Seed, round_: int, text: str) -> Step:
    return Step(seed_id=seed.id, round=round_, step_id=step_id_for(seed.id, round_),
                instruction=text, input=seed.input, operation="deepen" if round_ else "seed",
                response=f"Answer to {text}")


async def fill(store: RunStore, seeds: int = 10) -> None:
    for n in range(seeds):
        seed = Seed(n)
        store.start_row(seed, n)
        await store.on_publish(Envelope(Accepted(seed_id=seed.id, round=0,
                                                 step=step(seed, 0, seed.instruction))))
        await store.on_publish(Envelope(Accepted(seed_id=seed.id, round=1,
                                                 step=step(seed, 1, f"Harder {n}"))))
        await store.on_publish(Envelope(Rejected(seed_id=seed.id, round=2, rule="sorry",
                                                 reason="apology", step=step(seed, 2, "x"))))
        store.finish_row(seed.id, "done")


async def test_alpaca_and_chat_exports_carry_lineage(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    await fill(store)
    files = export_dataset(store, tmp_path, ExportSettings())
    alpaca = [json.loads(x) for x in files["alpaca"].read_text().splitlines()]
    chat = [json.loads(x) for x in files["chat"].read_text().splitlines()]
    assert len(alpaca) == len(chat) == 20  # rounds 0 and 1 of 10 seeds; round 2 was rejected
    assert [(r["seed_id"], r["round"]) for r in alpaca[:3]] == [("s000", 0), ("s000", 1),
                                                                 ("s001", 0)]
    assert alpaca[3]["input"] == "some input"
    assert chat[3]["messages"][0]["content"] == "Harder 1\n\nsome input"
    assert chat[3]["messages"][1] == {"role": "assistant", "content": "Answer to Harder 1"}
    assert chat[3]["operation"] == "deepen"
    summary = summarize(store)
    assert summary["rows"] == {"done": 10}
    assert summary["rejected_by_rule"] == {"sorry": 10}
    assert not list(tmp_path.glob("*.tmp"))
    store.close()


async def test_sample_mixes_all_rounds_deterministically(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    await fill(store, seeds=50)
    settings = ExportSettings(formats=("alpaca",), sample=15)
    first = export_dataset(store, tmp_path / "a", settings, seed=3)["alpaca"].read_text()
    again = export_dataset(store, tmp_path / "b", settings, seed=3)["alpaca"].read_text()
    other = export_dataset(store, tmp_path / "c", settings, seed=4)["alpaca"].read_text()
    assert first == again
    assert first != other
    rows = [json.loads(x) for x in first.splitlines()]
    assert len(rows) == 15
    assert {r["round"] for r in rows} == {0, 1}
    store.close()


async def test_parquet_export(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    store = RunStore(tmp_path / "run.sqlite")
    await fill(store, seeds=4)
    path = export_dataset(store, tmp_path, ExportSettings(formats=("parquet",)))["parquet"]
    table = pq.read_table(path)
    assert table.num_rows == 8
    assert {"instruction", "output", "seed_id", "round", "operation"} <= set(table.column_names)
    store.close()
