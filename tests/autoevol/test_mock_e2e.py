"""Auto Evol-Instruct end to end against the mock LLM server over HTTP, on real GSM8K questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.llm.mock import MockConfig, MockLLMServer
from runtime.config import load_config
from runtime.run import execute
from runtime.store import STORE_FILE, RunStore

REPO = Path(__file__).resolve().parents[2]
GSM8K = REPO.parent / "shared" / "data" / "gsm8k_train.jsonl"


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not GSM8K.is_file(), reason=f"{GSM8K} not present")
async def test_auto_evol_on_gsm8k_against_the_mock(tmp_path: Path) -> None:
    async with MockLLMServer(MockConfig(seed=3)) as server:
        endpoints = f'["{server.openai_url}"]'
        config = load_config(
            REPO / "configs" / "auto_evol.toml",
            [
                f"llm.evol.endpoints={endpoints}",
                f"llm.optimizer.endpoints={endpoints}",
                f'run.inputs=[{{ path = "{GSM8K}", mapping = {{ instruction = "question", '
                'output = "answer" }, limit = 250 }]',
                "agents.optimizer.params.patience=3",  # run all T = 3 steps
            ],
        )
        run_dir = tmp_path / "run"
        outcome = await execute(config, run_dir, handle_signals=False, show_progress=False)
        stats = server.stats()
    assert outcome.status == "completed", outcome.errors
    assert outcome.dead_letters == 0

    store = RunStore(run_dir / STORE_FILE)
    try:
        saved = dict(store.records("autoevol"))
    finally:
        store.close()
    dev, pool = saved["split"]["dev"], saved["split"]["pool"]
    assert (len(dev), len(pool)) == (50, 200)
    assert not set(dev) & set(pool)
    steps = [saved[f"step-{t:03d}"] for t in (1, 2, 3)]
    for step in steps:
        assert len(step["candidates"]) == 3  # m = 3, all parsed from the mock's <method> blocks
        assert all(len(t["steps"]) == 3 for t in step["trajectories"])  # l = 2 evolutions
        assert step["feedback"]["parseable"]
    assert saved["final"]["steps_run"] == 3

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rows"] == {"done": 200}  # the remaining pool, evolved with e*
    assert len(summary["autoevol"]["lambda_curve"]) == 4
    dataset = [json.loads(x) for x in (run_dir / "dataset.alpaca.jsonl").read_text().splitlines()]
    assert not {row["seed_id"] for row in dataset} & set(dev)
    assert {row["round"] for row in dataset} == {0, 1}
    assert json.loads((run_dir / "methods.json").read_text())["final"]["method_id"]
    assert (run_dir / "final_method.txt").read_text().strip()
    assert stats.replies_by_kind.get("autoevol_analysis", 0) == 3
    assert stats.replies_by_kind.get("autoevol_optimize", 0) >= 1
