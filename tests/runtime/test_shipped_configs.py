"""Every topology shipped in configs/ validates (implementations, params, LLM references)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def test_configs_are_shipped() -> None:
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path) -> None:
    config = load_config(path)
    assert any(agent.enabled for agent in config.agents.values())


def test_the_batch_config_runs_its_documented_dry_run_against_the_mock(tmp_path: Path) -> None:
    """configs/evol_instruct_batch.toml with the overrides its header gives, on a few seeds."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(
        json.dumps({"instruction": f"Describe tool number {i}.", "output": f"Tool {i}."}) + "\n"
        for i in range(12)
    ), encoding="utf-8")
    mock = subprocess.Popen([sys.executable, "-m", "runtime", "mock-llm", "--batch-latency-s",
                             "0.2"], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        assert mock.stdout is not None
        url = mock.stdout.readline().strip().partition("=")[2]
        assert url.startswith("http://127.0.0.1:"), url
        done = subprocess.run(
            [sys.executable, "-m", "runtime", str(repo / "configs" / "evol_instruct_batch.toml"),
             "--set", f'llm.main.endpoints=["{url}/v1"]',
             "--set", "llm.main.options={window_s = 0.2, poll_s = 0.1}",
             "--set", f'run.inputs=[{{path = "{seeds}"}}]',
             "--set", "agents.pool.params.rounds=2",
             "--run-dir", str(tmp_path / "run"), "--no-progress", "--log-console", "off"],
            cwd=repo, env={**os.environ, "OPENAI_API_KEY": "mock"}, capture_output=True,
            text=True, timeout=120, check=False,
        )
    finally:
        mock.kill()
        mock.wait(timeout=10)
        if mock.stdout is not None:
            mock.stdout.close()
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["rows"] == {"done": 12}
    assert summary["llm_usage"]["total"]["calls"] > 12
    assert (tmp_path / "run" / "llm_batches.main.sqlite").is_file()
    assert (tmp_path / "run" / "dataset_hf" / "README.md").is_file()
