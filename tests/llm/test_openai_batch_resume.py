"""A run on the Batch API killed with SIGKILL while its batch is open, then resumed: the resumed
run waits for that batch — no line is submitted twice — and the dataset equals an uninterrupted
run's. Real processes (`python -m runtime`), the mock server in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distributed._support import Processes, dataset_lines, wait_for_event

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "evol_instruct_batch.toml"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def mock_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime", "mock-llm", "--batch-latency-s", "1.0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("MOCK_LLM_URL="), line
        yield line.partition("=")[2]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def batch_lines(url: str) -> int:
    with urllib.request.urlopen(f"{url}/mock/stats", timeout=10) as reply:
        return int(json.loads(reply.read())["batch_lines"])


def overrides(url: str, seeds: Path) -> list[str]:
    return [
        "--set", f'llm.main.endpoints=["{url}/v1"]',
        "--set", "llm.main.options={window_s = 0.3, poll_s = 0.2}",
        "--set", f'run.inputs=[{{path = "{seeds}"}}]',
        "--set", "agents.pool.params.rounds=2",
        "--set", 'run.export={formats = ["alpaca"]}',
    ]


def test_a_killed_batch_run_resumes_without_submitting_any_line_twice(
    tmp_path: Path, mock_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(
        json.dumps({"instruction": f"Explain how a kite number {i} stays up.", "output": "Wind."})
        + "\n" for i in range(12)
    ), encoding="utf-8")
    monkeypatch.setenv("OPENAI_API_KEY", "mock")  # the mock takes any key
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = [sys.executable, "-m", "runtime", str(CONFIG), *overrides(mock_url, seeds),
           "--no-progress"]

    before = batch_lines(mock_url)
    reference = subprocess.run([*run, "--run-dir", str(tmp_path / "reference"),
                                "--log-console", "off"],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                               check=False)
    assert reference.returncode == 0, reference.stderr[-3000:]
    reference_lines = batch_lines(mock_url) - before

    processes = Processes()
    try:
        killed = processes.start(
            [*run, "--run-dir", str(tmp_path / "run"), "--log-console", "json",
             "--set", 'run.log.console_level="info"'],
            stderr=subprocess.PIPE,
        )
        # journaled, open at the API (1 s), and the process dies
        wait_for_event(killed, "llm_batch_submitted")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=10)
    finally:
        processes.kill_all()
    resumed = subprocess.run(
        [sys.executable, "-m", "runtime", "resume", str(tmp_path / "run"), "--no-progress",
         "--log-console", "off"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = [json.loads(line)["event"] for line in
              (tmp_path / "run" / "run.log").read_text(encoding="utf-8").splitlines()
              if line.startswith("{")]
    assert "llm_batch_resumed" in events  # the resumed run polled the killed run's open batch
    assert dataset_lines(tmp_path / "run") == dataset_lines(tmp_path / "reference")
    # every line the killed run had submitted was answered once and waited for, never resubmitted
    assert batch_lines(mock_url) - before - reference_lines == reference_lines
