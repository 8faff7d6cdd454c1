"""One topology: evolve → train (tiny model, child process) → judge fine-tuned vs base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.config import validate_config
from runtime.run import execute
from runtime.store import STORE_FILE, RunStore


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_evolve_train_judge_in_one_run(tmp_path: Path, tiny_model: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("".join(f"Give one tip about topic number {n}.\n" for n in range(12)))
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(
        f'{{"question_id": {n}, "category": "tips", "turns": ["Share a tip about {w}."]}}\n'
        for n, w in enumerate(["sleep", "water", "reading"])
    ))
    scripted = {"backend": "scripted", "options": {"plausible": True}}
    config: dict[str, Any] = {
        "run": {"name": "loop", "seed": 3, "progress": False, "inputs": [{"path": str(seeds)}]},
        "llm": {"s": scripted},
        "agents": {
            "pool": {"impl": "pool.rounds", "params": {"rounds": 1}},
            "evol": {"impl": "evol.wizardlm", "llm": "s", "concurrency": 4},
            "responder": {"impl": "respond.default", "llm": "s", "concurrency": 4},
            "eliminator": {"impl": "eliminate.wizardlm", "llm": "s", "concurrency": 4},
            "trainer": {"impl": "trainer.sft", "params": {
                "model_dir": str(tiny_model), "eval_fraction": 0.0,
                "train": {"preset": "tiny", "max_steps": 4, "max_length": 128}}},
            "evaluate": {"impl": "eval.trained", "params": {
                "base_model_dir": str(tiny_model), "device": "cpu", "max_tokens": 8,
                "questions": {"benchmark": "vicuna", "path": str(questions)}}},
            "pairwise": {"impl": "judge.pairwise", "llm": "s", "params": {"title": "loop"}},
            "results": {"impl": "eval.results"},
        },
    }
    run_dir = tmp_path / "run"
    outcome = await execute(validate_config(config), run_dir, handle_signals=False,
                            show_progress=False)
    assert outcome.status == "completed", outcome.errors
    assert outcome.dead_letters == 0
    store = RunStore(run_dir / STORE_FILE)
    try:
        training = dict(store.records("training"))
        items = dict(store.records("eval_item"))
        results = dict(store.records("eval"))
    finally:
        store.close()
    assert training["training-01"]["status"] == "done"
    assert len(items) == 3  # every question judged, fine-tuned vs base
    assert all(item["judge"] == "pairwise" and item["error"] is None for item in items.values())
    assert any(key.startswith("pairwise:") for key in results)
