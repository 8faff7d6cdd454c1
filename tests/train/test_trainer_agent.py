"""The TrainerAgent inside a real pipeline run: shards, a child process, notices, and survival."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime.config import validate_config
from runtime.run import execute
from runtime.store import STORE_FILE, RunStore


def topology(tmp_path: Path, model_dir: Path, **trainer: Any) -> dict[str, Any]:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"Describe the colour of object number {n}.\n" for n in range(16)))
    return {
        "run": {"name": "train", "seed": 5, "progress": False, "inputs": [{"path": str(seeds)}]},
        "llm": {"s": {"backend": "scripted", "options": {"plausible": True}}},
        "agents": {
            "pool": {"impl": "pool.rounds", "params": {"rounds": 1}},
            "evol": {"impl": "evol.wizardlm", "llm": "s", "concurrency": 4},
            "responder": {"impl": "respond.default", "llm": "s", "concurrency": 4},
            "eliminator": {"impl": "eliminate.wizardlm", "llm": "s", "concurrency": 4},
            "trainer": {
                "impl": "trainer.sft",
                "params": {
                    "model_dir": str(model_dir),
                    "eval_fraction": 0.2,
                    "train": {
                        "max_steps": 6,
                        "per_device_batch_size": 4,
                        "max_length": 128,
                        "learning_rate": 1e-3,
                        "save_steps": None,
                    },
                    **trainer,
                },
            },
        },
    }


def training_records(run_dir: Path) -> dict[str, Any]:
    store = RunStore(run_dir / STORE_FILE)
    try:
        return dict(store.records("training"))
    finally:
        store.close()


def notices(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in (run_dir / "run.log").read_text().splitlines()]
    return [e for e in events if e.get("event") == "notice" and e.get("kind") == kind]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_trainer_fine_tunes_on_accepted_rows_after_the_run(
    tmp_path: Path, tiny_model: Path
) -> None:
    from runtime.logging import close_logging, configure_logging

    run_dir = tmp_path / "run"
    configure_logging(run_dir=run_dir, console="off")
    try:
        config = validate_config(topology(tmp_path, tiny_model))
        outcome = await execute(config, run_dir, handle_signals=False, show_progress=False)
    finally:
        close_logging()
    assert outcome.status == "completed", outcome.errors
    rows = (run_dir / "training" / "accepted.jsonl").read_text().splitlines()
    assert len(rows) >= 16  # every seed (round 0) plus the accepted evolutions
    record = training_records(run_dir)["training-01"]
    assert record["status"] == "done"
    assert record["steps"] == 6
    model_dir = Path(record["output_dir"])
    assert (model_dir / "config.json").is_file()
    progress = notices(run_dir, "training.progress")
    assert [p["step"] for p in progress if p.get("loss") is not None] == [1, 2, 3, 4, 5, 6]
    assert notices(run_dir, "training.done")
    train_files = list((run_dir / "training" / "training-01" / "data").glob("train-*.jsonl"))
    assert train_files


@pytest.mark.timeout(300)
async def test_a_crashing_trainer_yields_training_failed_and_the_run_survives(
    tmp_path: Path,
) -> None:
    from runtime.logging import close_logging, configure_logging

    run_dir = tmp_path / "run"
    configure_logging(run_dir=run_dir, console="off")
    try:
        config = validate_config(topology(tmp_path, tmp_path / "no-such-model"))
        outcome = await execute(config, run_dir, handle_signals=False, show_progress=False)
    finally:
        close_logging()
    assert outcome.status == "completed", outcome.errors
    assert outcome.exit_code == 0
    record = training_records(run_dir)["training-01"]
    assert record["status"] == "failed"
    assert record["returncode"] != 0
    assert record["stderr_tail"] or record["error"]
    failed = notices(run_dir, "training.failed")
    assert failed
    assert "no-such-model" in json.dumps(failed[0])
    assert (run_dir / "dataset.alpaca.jsonl").is_file()  # the evolution's output is kept
